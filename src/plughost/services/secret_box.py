"""The cipher of organization secrets: Fernet (AES-128-CBC with HMAC-SHA256), and where its
key comes from.

The key, in order: ``PLUGHOST_SECRETS_KEY`` (several comma-separated keys: the first encrypts,
every one decrypts, so a key can be rotated by putting the new one first); else a key
generated once. On SQLite (one server per database) the generated key is a file in
``$PLUGHOST_HOME`` (mode 0600) and the ciphertext sits in the database beside it, so a copy of
the database alone does not open the secrets. On PostgreSQL several servers share the
database but not a home, and each must open what the others sealed: the generated key is kept
in the database's ``server_secrets`` table, as the URL-signing secret is. That protects the
values against a leak of the ``organization_secrets`` table alone, not of the whole
database; an operator who wants the key elsewhere sets ``PLUGHOST_SECRETS_KEY``.
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path
from typing import TYPE_CHECKING

from plughost.config import Settings
from plughost.errors import ServiceUnavailableError
from plughost.persistence.db import Database
from plughost.persistence.idempotent import ensure_row
from plughost.persistence.tables import ServerSecret

if TYPE_CHECKING:  # cryptography (8 MiB resident) is imported when a secret is first used
    from cryptography.fernet import MultiFernet

SECRETS_KEY_ROW = "organization_secrets"  # the server_secrets row of a generated key


def generate_key() -> bytes:
    """A new Fernet key: 32 random bytes, urlsafe base64 (the format Fernet reads)."""
    return base64.urlsafe_b64encode(os.urandom(32))


def check_key(key: bytes) -> None:
    """ValueError unless ``key`` is a Fernet key, the check Fernet itself makes."""
    try:
        raw = base64.urlsafe_b64decode(key)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not urlsafe base64") from exc
    if len(raw) != 32 or base64.urlsafe_b64encode(raw) != key:  # 32 bytes, nothing after
        raise ValueError("a Fernet key is 32 bytes")


class SecretKeyError(ServiceUnavailableError):
    """A stored secret does not open with this server's key (the key changed or was lost)."""


class SecretBox:
    """Seals and opens secret values. ``keys``: Fernet keys, the first one seals."""

    def __init__(self, keys: list[bytes]) -> None:
        if not keys:
            raise ValueError("a SecretBox needs at least one key")
        for key in keys:
            check_key(key)
        self._keys = list(keys)
        self._cipher: MultiFernet | None = None

    def _fernet(self) -> MultiFernet:
        if self._cipher is None:
            from cryptography.fernet import Fernet, MultiFernet

            self._cipher = MultiFernet([Fernet(k) for k in self._keys])
        return self._cipher

    def seal(self, value: str) -> str:
        """The value as a Fernet token (text). The value must be encodable as UTF-8."""
        return self._fernet().encrypt(value.encode("utf-8")).decode("ascii")

    def open(self, token: str) -> str:
        """The clear value; SecretKeyError when no key of this box opens it."""
        from cryptography.fernet import InvalidToken

        try:
            return self._fernet().decrypt(token.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError) as exc:
            raise SecretKeyError(
                "a stored secret cannot be decrypted with this server's key "
                "(PLUGHOST_SECRETS_KEY changed, or the generated key was lost)"
            ) from exc


def parse_keys(text: str) -> list[bytes]:
    """Comma-separated Fernet keys; ValueError naming the setting when one is not a key."""
    keys = [k.strip().encode("ascii") for k in text.split(",") if k.strip()]
    for position, key in enumerate(keys, 1):
        try:
            check_key(key)
        except ValueError as exc:
            raise ValueError(
                f"PLUGHOST_SECRETS_KEY: key {position} is not a Fernet key (32 bytes, urlsafe "
                "base64; make one with `python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'`)"
            ) from exc
    return keys


def open_secret_box(settings: Settings, db: Database) -> SecretBox:
    """The box of this server: see the module docstring for where the key comes from."""
    if settings.secrets_key.strip():
        return SecretBox(parse_keys(settings.secrets_key))
    if db.is_sqlite:
        return SecretBox([key_file(settings.secrets_key_path)])
    with db.session() as s:
        candidate = {"name": SECRETS_KEY_ROW, "value": generate_key().decode("ascii")}
        row = ensure_row(s, ServerSecret, candidate, ["name"])
        return SecretBox([row.value.encode("ascii")])


def key_file(path: Path) -> bytes:
    """The key in ``path``, created (mode 0600) when missing. Processes creating it at once
    agree: each writes a private temporary file and links it into place, which fails when
    the file exists; the loser reads the winner's key, never a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        return _read_key(path)
    key = generate_key()
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, key + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(temporary, path)
    except FileExistsError:
        return _read_key(path)
    finally:
        temporary.unlink()
    return key


def _read_key(path: Path) -> bytes:
    key = path.read_bytes().strip()
    try:
        check_key(key)
    except ValueError as exc:
        raise ValueError(
            f"{path} does not hold a Fernet key; delete it only if no secret was ever stored"
        ) from exc
    return key
