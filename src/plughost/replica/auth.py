"""The replica's connection handshake: proof of a per-replica secret, both ways.

A local replica outlives the server that started it, and the next server adopts it. A pid
says nothing about who listens on a socket, so the server that starts a replica makes a
random secret and hands it over on the replica's stdin (never in argv, which any local user
can read); the server's registry keeps it (0600, in the server's home). The first request on
every connection must be ``{"id", "op": "hello", "nonce", "token"}``: ``nonce`` fresh random
hex from the client, ``token`` = HMAC-SHA256(secret, "server:" + nonce). The replica answers
``{"proof": HMAC-SHA256(secret, "replica:" + nonce), "pid": N}`` and takes other requests on
that connection only after it; anything else first (or a wrong token) closes the connection.
So the replica serves only a holder of its secret, and a server adopts only the process that
holds it (another one bound to the path, a reused pid, a stale record: none can answer).
Standard library only: the replica loads it before any plugin code.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets

HELLO_OP = "hello"
SECRET_BYTES = 32


def new_secret() -> str:
    """A fresh per-replica secret, as hex."""
    return secrets.token_hex(SECRET_BYTES)


def new_nonce() -> str:
    return secrets.token_hex(16)


def _mac(secret: str, role: str, nonce: str) -> str:
    return hmac.new(bytes.fromhex(secret), f"{role}:{nonce}".encode(), hashlib.sha256).hexdigest()


def server_token(secret: str, nonce: str) -> str:
    """What the connecting server sends with its nonce."""
    return _mac(secret, "server", nonce)


def replica_proof(secret: str, nonce: str) -> str:
    """What the replica answers to prove it holds the secret."""
    return _mac(secret, "replica", nonce)


def token_ok(secret: str, nonce: object, token: object) -> bool:
    if not isinstance(nonce, str) or not isinstance(token, str) or not 16 <= len(nonce) <= 128:
        return False
    return hmac.compare_digest(server_token(secret, nonce), token)


def proof_ok(secret: str, nonce: str, proof: object) -> bool:
    return isinstance(proof, str) and hmac.compare_digest(replica_proof(secret, nonce), proof)


def read_secret_from_stdin() -> str:
    """The secret the server wrote on fd 0 (one hex line); fd 0 is then /dev/null, so the
    plugin never reads it from there. ValueError when it is missing or malformed."""
    chunks = []
    while True:
        chunk = os.read(0, 256)
        if not chunk:
            break
        chunks.append(chunk)
        if b"\n" in chunk:
            break
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    text = b"".join(chunks).decode("ascii", "replace").strip()
    if len(text) != 2 * SECRET_BYTES:
        raise ValueError("the replica secret on stdin is missing or malformed")
    bytes.fromhex(text)
    return text
