"""HMAC-signed URLs for the local store's presigned PUT and GET."""

from __future__ import annotations

import hashlib
import hmac
import time

from plughost.errors import ForbiddenError


class UrlSigner:
    """Signs (method, resource, expiry) with a server secret."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def signature(self, method: str, resource: str, expires: int) -> str:
        msg = f"{method.upper()}\n{resource}\n{expires}".encode()
        return hmac.new(self._secret, msg, hashlib.sha256).hexdigest()

    def verify(
        self, method: str, resource: str, expires: str | None, signature: str | None
    ) -> None:
        """Raise ForbiddenError unless the signature matches and has not expired."""
        if not expires or not signature or not expires.isdigit():
            raise ForbiddenError("missing or malformed URL signature")
        expected = self.signature(method, resource, int(expires))
        if not hmac.compare_digest(expected, signature):
            raise ForbiddenError("URL signature does not match")
        if int(expires) < int(time.time()):
            raise ForbiddenError("URL has expired")
