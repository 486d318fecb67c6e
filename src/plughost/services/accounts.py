"""Organizations, namespaces and API keys: bootstrap, admin operations and authentication."""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from plughost.domain.ids import NAMESPACE_ID_RE, new_id
from plughost.errors import (
    AuthenticationError,
    BadRequestError,
    ConflictError,
    NotFoundError,
    PlughostError,
    ValidationError,
)
from plughost.persistence.db import Database
from plughost.persistence.idempotent import ensure_row, insert_or_ignore
from plughost.persistence.tables import ApiKey, Namespace, Organization, ServerSecret
from plughost.timeutil import iso, utcnow

DEFAULT_ORG = "org_default"
DEFAULT_NAMESPACE = "ns_default"
URL_SIGNING = "url_signing"  # the server_secrets row of the URL-signing secret


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def generate_key() -> str:
    return "ph_" + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Principal:
    """Who is calling: an organization, optionally limited to some namespaces."""

    key_id: str
    organization_id: str
    namespaces: frozenset[str] | None  # None = every namespace of the organization

    def reaches(self, namespace_id: str) -> bool:
        return self.namespaces is None or namespace_id in self.namespaces


@dataclass(frozen=True)
class BootstrapResult:
    created_key: str | None  # the clear key, only when it was just generated


class Accounts:
    """Admin and auth use cases over the accounts tables.

    The inference path authenticates through a short-lived in-memory cache
    (`cache_ttl_s`), so a revoked key stops working there within that time.
    """

    def __init__(
        self, db: Database, cache_ttl_s: float = 2.0, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.db = db
        self.cache_ttl_s = cache_ttl_s
        self.clock = clock  # the cache's lifetimes (tests drive a manual one)
        self._principals: dict[str, tuple[float, Principal]] = {}
        self._namespaces: dict[tuple[str, str], float] = {}

    # -- bootstrap -------------------------------------------------------------------------
    def bootstrap(self, bootstrap_key: str) -> BootstrapResult:
        """Create org_default, ns_default and a first key when the database has none.

        Safe for servers starting together on one database: every row is inserted unless
        another server wrote it first, and the whole step is one transaction that they take
        in turns (an advisory lock on PostgreSQL, the write lock on SQLite), so exactly one
        of them generates the first key and the others find it."""
        with self.db.session() as s:
            self.db.lock_bootstrap(s)
            # on SQLite this is the transaction's first statement and a write: it takes the
            # write lock, so the look for a key below cannot miss another server's
            insert_or_ignore(s, Organization, {"id": DEFAULT_ORG, "name": "default"}, ["id"])
            insert_or_ignore(
                s,
                Namespace,
                {"id": DEFAULT_NAMESPACE, "organization_id": DEFAULT_ORG, "name": "default"},
                ["id"],
            )
            if bootstrap_key:
                insert_or_ignore(
                    s,
                    ApiKey,
                    _key_values(bootstrap_key, DEFAULT_ORG, None, "bootstrap"),
                    ["key_hash"],
                )
                return BootstrapResult(created_key=None)
            if s.scalars(select(ApiKey.id).limit(1)).first() is not None:
                return BootstrapResult(created_key=None)
            key = generate_key()
            self._add_key(s, key, DEFAULT_ORG, None, "bootstrap")
            return BootstrapResult(created_key=key)

    def signing_secret(self) -> bytes:
        """The URL-signing secret, created once and shared through the database: a server
        whose candidate lost to another's uses the stored one (else URLs one server signs
        would fail on the others)."""
        with self.db.session() as s:
            candidate = {"name": URL_SIGNING, "value": secrets.token_hex(32)}
            row = ensure_row(s, ServerSecret, candidate, ["name"])
            return bytes.fromhex(row.value)

    # -- keys ------------------------------------------------------------------------------
    @staticmethod
    def _add_key(
        s: Session, key: str, org_id: str, namespaces: list[str] | None, label: str
    ) -> ApiKey:
        row = ApiKey(**_key_values(key, org_id, namespaces, label))
        s.add(row)
        return row

    def create_key(
        self, org_id: str = DEFAULT_ORG, namespaces: list[str] | None = None, label: str = ""
    ) -> tuple[str, dict[str, Any]]:
        """Create a key; returns the clear key (shown once) and its public record."""
        with self.db.session() as s:
            self._require_org(s, org_id)
            for ns in namespaces or []:
                found = s.get(Namespace, ns)
                if found is None or found.organization_id != org_id:
                    raise NotFoundError(f"namespace {ns!r} not found in organization {org_id!r}")
            key = generate_key()
            row = self._add_key(
                s, key, org_id, sorted(set(namespaces)) if namespaces else None, label
            )
            s.flush()
            return key, _key_record(row)

    def list_keys(self, org_id: str | None = None) -> list[dict[str, Any]]:
        with self.db.session() as s:
            query = select(ApiKey).order_by(ApiKey.created_at)
            if org_id:
                query = query.where(ApiKey.organization_id == org_id)
            return [_key_record(k) for k in s.scalars(query)]

    def revoke_key(self, key_id: str) -> dict[str, Any]:
        with self.db.session() as s:
            row = s.get(ApiKey, key_id)
            if row is None:
                raise NotFoundError(f"API key {key_id!r} not found")
            if row.revoked_at is None:
                row.revoked_at = utcnow()
            return _key_record(row)

    def authenticate(self, authorization: str | None) -> Principal:
        """Resolve an `Authorization: Bearer <key>` header to a Principal, or raise 401."""
        if not authorization:
            raise AuthenticationError("missing Authorization header (expected 'Bearer <api key>')")
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthenticationError(
                "malformed Authorization header (expected 'Bearer <api key>')"
            )
        with self.db.session() as s:
            row = s.scalars(select(ApiKey).where(ApiKey.key_hash == hash_key(token))).first()
            if row is None or row.revoked_at is not None:
                raise AuthenticationError("invalid or revoked API key")
            ns = frozenset(row.namespaces) if row.namespaces is not None else None
            return Principal(key_id=row.id, organization_id=row.organization_id, namespaces=ns)

    # -- the cached variants used on the request path -------------------------------------
    # An entry answers for `cache_ttl_s`; once half of that has passed the hot paths refresh
    # it in the background, so a busy key never sees its entry expire (and every request
    # that arrives meanwhile queue up behind one database read). A refresh that finds the
    # key revoked, or the namespace gone, drops the entry at once.
    def fresh_caller(self, authorization: str | None, namespace_id: str) -> Principal | None:
        """The key's principal when both it and its namespace check are cached and not yet
        due for a refresh, else None (then the hot paths take the slower steps below). One
        call and one clock read for the common case of a busy key."""
        now = self.clock()
        half = self.cache_ttl_s / 2
        hit = self._principals.get(authorization or "")
        if hit is None or hit[0] - now < half:
            return None
        until = self._namespaces.get((hit[1].key_id, namespace_id))
        if until is None or until - now < half:
            return None
        return hit[1]

    def cached_principal(self, authorization: str | None) -> Principal | None:
        hit = self._principals.get(authorization or "")
        if hit is not None and hit[0] > self.clock():
            return hit[1]
        return None

    def principal_due(self, authorization: str | None) -> bool:
        """Whether a cached principal is past half its life (time to refresh it)."""
        hit = self._principals.get(authorization or "")
        return hit is not None and hit[0] - self.clock() < self.cache_ttl_s / 2

    def authenticate_and_cache(self, authorization: str | None) -> Principal:
        try:
            principal = self.authenticate(authorization)
        except AuthenticationError:
            self._principals.pop(authorization or "", None)
            raise
        if len(self._principals) > 10_000:
            self._principals.clear()
        self._principals[authorization or ""] = (self.clock() + self.cache_ttl_s, principal)
        return principal

    def cached_namespace_ok(self, principal: Principal, namespace_id: str) -> bool:
        until = self._namespaces.get((principal.key_id, namespace_id))
        return until is not None and until > self.clock()

    def namespace_due(self, principal: Principal, namespace_id: str) -> bool:
        """Whether a cached namespace check is past half its life."""
        until = self._namespaces.get((principal.key_id, namespace_id))
        return until is not None and until - self.clock() < self.cache_ttl_s / 2

    def namespace_visible_and_cache(self, principal: Principal, namespace_id: str) -> None:
        try:
            self.namespace_visible(principal, namespace_id)
        except PlughostError:
            self._namespaces.pop((principal.key_id, namespace_id), None)
            raise
        if len(self._namespaces) > 10_000:
            self._namespaces.clear()
        self._namespaces[(principal.key_id, namespace_id)] = self.clock() + self.cache_ttl_s

    def forget_cached(self) -> None:
        """Drop every cached key and namespace check: another server changed API keys
        (several servers on one database; the next call of each key reads it again)."""
        self._principals = {}
        self._namespaces = {}

    def only_namespace(self, principal: Principal) -> str:
        """The namespace of a key that reaches exactly one; else ask for X-Namespace."""
        if principal.namespaces is not None and len(principal.namespaces) == 1:
            return next(iter(principal.namespaces))
        with self.db.session() as s:
            ids = list(
                s.scalars(
                    select(Namespace.id).where(
                        Namespace.organization_id == principal.organization_id
                    )
                )
            )
        reachable = [n for n in ids if principal.reaches(n)]
        if len(reachable) == 1:
            return reachable[0]
        raise BadRequestError(
            "this key reaches several namespaces: name one in the X-Namespace header"
        )

    # -- organizations and namespaces ------------------------------------------------------
    @staticmethod
    def _require_org(s: Session, org_id: str) -> Organization:
        org = s.get(Organization, org_id)
        if org is None:
            raise NotFoundError(f"organization {org_id!r} not found")
        return org

    def create_organization(self, org_id: str, name: str = "") -> dict[str, Any]:
        if not NAMESPACE_ID_RE.fullmatch(org_id):
            raise ValidationError(f"invalid organization id {org_id!r}")
        with self.db.session() as s:
            if s.get(Organization, org_id) is not None:
                raise ConflictError(f"organization {org_id!r} already exists")
            s.add(Organization(id=org_id, name=name or org_id))
        return {"organization_id": org_id, "name": name or org_id}

    def create_namespace(
        self, name: str, org_id: str = DEFAULT_ORG, namespace_id: str | None = None
    ) -> dict[str, Any]:
        ns_id = namespace_id or new_id("ns", 8)
        if not NAMESPACE_ID_RE.fullmatch(ns_id):
            raise ValidationError(f"invalid namespace id {ns_id!r}: use letters, digits, _ and -")
        with self.db.session() as s:
            self._require_org(s, org_id)
            if s.get(Namespace, ns_id) is not None:
                raise ConflictError(f"namespace {ns_id!r} already exists")
            row = Namespace(id=ns_id, organization_id=org_id, name=name)
            s.add(row)
            s.flush()
            return _ns_record(row)

    def list_namespaces(self, org_id: str | None = None) -> list[dict[str, Any]]:
        with self.db.session() as s:
            query = select(Namespace).order_by(Namespace.created_at)
            if org_id:
                query = query.where(Namespace.organization_id == org_id)
            return [_ns_record(n) for n in s.scalars(query)]

    def namespace_visible(self, principal: Principal, namespace_id: str) -> None:
        """Raise 404 unless the namespace exists in the caller's organization and key scope."""
        with self.db.session() as s:
            row = s.get(Namespace, namespace_id)
            if row is None or row.organization_id != principal.organization_id:
                raise NotFoundError(f"namespace {namespace_id!r} not found")
        if not principal.reaches(namespace_id):
            raise NotFoundError(f"namespace {namespace_id!r} not found")


def _key_values(key: str, org_id: str, namespaces: list[str] | None, label: str) -> dict[str, Any]:
    """The columns of a new API key row (the clear key is never stored)."""
    return {
        "id": new_id("key", 6),
        "organization_id": org_id,
        "key_hash": hash_key(key),
        "prefix": key[:8],
        "label": label,
        "namespaces": namespaces,
    }


def _key_record(row: ApiKey) -> dict[str, Any]:
    return {
        "key_id": row.id,
        "prefix": row.prefix,
        "organization_id": row.organization_id,
        "namespaces": row.namespaces,
        "label": row.label,
        "created_at": iso(row.created_at),
        "revoked_at": iso(row.revoked_at),
    }


def _ns_record(row: Namespace) -> dict[str, Any]:
    return {
        "namespace_id": row.id,
        "name": row.name,
        "organization_id": row.organization_id,
        "created_at": iso(row.created_at),
    }
