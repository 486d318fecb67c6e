"""Support for the presigned-URL tests: S3's own check of a SigV4 presigned URL, written out.

moto's standalone server takes a presigned URL without checking its signature or expiry
(it checks the Authorization header of SDK calls only), so the tests cannot learn from it
whether a tampered URL would be refused. :func:`sigv4_problem` is the check S3 (and MinIO)
make of a query-string-signed request: the canonical request from the method, the path (the
object's key), every query parameter but the signature and the signed headers, signed with
a key derived from the secret, and the expiry counted from ``X-Amz-Date``."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

MAX_EXPIRES_S = 7 * 24 * 3600  # S3 refuses a longer presigned URL


def _mac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def _q(text: str) -> str:
    return quote(text, safe="-_.~")


def sigv4_problem(
    url: str, method: str, access_key: str, secret: str, now: datetime | None = None
) -> str | None:
    """None when S3 would take ``method url`` signed with these credentials, else why not."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    params = dict(query)
    signature = params.get("X-Amz-Signature")
    if not signature or params.get("X-Amz-Algorithm") != "AWS4-HMAC-SHA256":
        return "not a SigV4 presigned URL"
    key_id, day, region, service, term = params["X-Amz-Credential"].split("/")
    if key_id != access_key or term != "aws4_request" or service != "s3":
        return "unknown credential"
    amz_date = params["X-Amz-Date"]
    expires = int(params["X-Amz-Expires"])
    if not amz_date.startswith(day):
        return "credential day and date differ"
    if expires > MAX_EXPIRES_S:
        return "expiry longer than S3 allows"
    signed_at = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    if (now or datetime.now(UTC)) > signed_at + timedelta(seconds=expires):
        return "expired"
    headers = {"host": parts.netloc}
    signed = params["X-Amz-SignedHeaders"]
    canonical = "\n".join(
        (
            method.upper(),
            quote(unquote(parts.path), safe="/~"),
            "&".join(f"{_q(k)}={_q(v)}" for k, v in sorted(query) if k != "X-Amz-Signature"),
            "".join(f"{h}:{headers[h]}\n" for h in signed.split(";")),
            signed,
            "UNSIGNED-PAYLOAD",
        )
    )
    to_sign = "\n".join(
        (
            "AWS4-HMAC-SHA256",
            amz_date,
            f"{day}/{region}/{service}/aws4_request",
            hashlib.sha256(canonical.encode()).hexdigest(),
        )
    )
    key = ("AWS4" + secret).encode()
    for part in (day, region, service, "aws4_request"):
        key = _mac(key, part)
    expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return None if hmac.compare_digest(expected, signature) else "signature does not match"


def with_query(url: str, **changes: str) -> str:
    """``url`` with some query parameters replaced (the order kept)."""
    parts = urlsplit(url)
    query = [(k, changes.get(k, v)) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote, safe="")))


def with_path(url: str, path: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=path))


def flip(hex_text: str) -> str:
    """The same hex string with its last digit changed."""
    return hex_text[:-1] + ("0" if hex_text[-1] != "0" else "1")
