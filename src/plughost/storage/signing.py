"""HMAC-signed URLs for the local store's presigned PUT and GET.

A signature covers the method, the resource (the URL's path: which upload or which archive)
and the expiry, so a URL whose key, expiry or method is changed no longer matches. The
query values come from the client: anything but a plain ASCII expiry and a hex signature of
the right length is refused as malformed (403) before any arithmetic, never a 500."""

from __future__ import annotations

import hashlib
import hmac
import re
import time

from plughost.errors import ForbiddenError

# an expiry is a Unix time in seconds as the server wrote it: ASCII digits only (str.isdigit()
# also takes "²" and other digits int() refuses), no leading zero (one number, one spelling),
# and few enough of them that int() stays cheap
_EXPIRES = re.compile(r"[1-9][0-9]{0,11}")
_SIGNATURE = re.compile(r"[0-9a-f]{64}")


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
        if (
            not expires
            or not signature
            or not _EXPIRES.fullmatch(expires)
            or not _SIGNATURE.fullmatch(signature)
        ):
            raise ForbiddenError("missing or malformed URL signature")
        expected = self.signature(method, resource, int(expires))
        if not hmac.compare_digest(expected.encode(), signature.encode()):
            raise ForbiddenError("URL signature does not match")
        if int(expires) < int(time.time()):
            raise ForbiddenError("URL has expired")
