"""Organization secrets: the vault of ``OrganizationSecretsApi`` and what plugin code reads.

Values are sealed by a :class:`~plughost.services.secret_box.SecretBox` before they reach
the database and opened only for :meth:`Secrets.get` and :meth:`Secrets.values` (the
container's reads and the log mask); no answer of the API carries one. Every operation is
scoped to one organization. Only a key of the whole organization may list, create, change or
delete its secrets: a key limited to some namespaces gets 403 for every one of them, names
included (its plugins still read values through the container, as every plugin of the
organization does).

All methods block (database, decryption): call them from a worker thread.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from sqlalchemy import delete, select

from plughost.errors import ConflictError, ForbiddenError, NotFoundError, ValidationError
from plughost.logs.masking import MaskTable, SecretMask
from plughost.persistence.db import Database
from plughost.persistence.idempotent import insert_or_ignore
from plughost.persistence.tables import Namespace, Organization, OrganizationSecret
from plughost.services.accounts import Principal
from plughost.services.secret_box import SecretBox, SecretKeyError
from plughost.timeutil import utcnow

SECRET_NAME_PATTERN = r"^[A-Za-z0-9_.-]{1,100}$"
MAX_SECRET_VALUE_CHARS = 65536
_NAME_RE = re.compile(SECRET_NAME_PATTERN)


def check_name(name: str) -> str:
    """``name`` when it is a valid secret name (it travels in URL paths), else 422."""
    if not _NAME_RE.fullmatch(name):
        raise ValidationError(
            f"secret_name must be 1 to 100 letters, digits, '_', '.' or '-' (got {name[:120]!r})"
        )
    return name


def check_value(value: str) -> str:
    """``value`` when it can be stored: 1 to 65,536 characters of valid Unicode, else 422
    (the message never quotes the value)."""
    if not 1 <= len(value) <= MAX_SECRET_VALUE_CHARS:
        raise ValidationError(
            f"secret_value must be 1 to {MAX_SECRET_VALUE_CHARS} characters (got {len(value)})"
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError("secret_value is not valid Unicode (a lone surrogate)") from None
    return value


class Secrets:
    """The use cases over the ``organization_secrets`` table; see the module docstring.

    ``mask`` (the replicas' log mask) is reloaded after every change made here and told of
    every value handed out, so a value is masked before plugin code can print it."""

    def __init__(self, db: Database, box: SecretBox, mask: SecretMask | None = None) -> None:
        self.db = db
        self.box = box
        self.mask = mask

    # -- the wire's use cases (OrganizationSecretsApi) -------------------------------------
    def create(self, principal: Principal, name: str, value: str) -> dict[str, Any]:
        """Store a new secret; 409 when the organization has one of that name."""
        self.put(_org_wide(principal), name, value, replace=False)
        return {"secret_name": name, "created": True}

    def update(self, principal: Principal, name: str, value: str) -> dict[str, Any]:
        """Replace a secret's value; 404 when there is none of that name."""
        org_id = _org_wide(principal)
        check_name(name)
        check_value(value)
        with self.db.session() as s:
            row = s.get(OrganizationSecret, (org_id, name))
            if row is None:
                raise NotFoundError(f"secret {name!r} not found")
            row.ciphertext = self.box.seal(value)
            row.updated_at = utcnow()
        self._changed()
        return {"secret_name": name, "updated": True}

    def delete(self, principal: Principal, name: str) -> dict[str, Any]:
        """Delete a secret; 404 when there is none of that name."""
        self.remove(_org_wide(principal), name)
        return {"secret_name": name, "deleted": True}

    def listing(self, principal: Principal) -> dict[str, Any]:
        """The organization's secret names (never values) and their count; 403 for a key
        limited to some namespaces."""
        names = self.names(_org_wide(principal))
        return {"secrets": names, "count": len(names)}

    # -- the admin CLI's -------------------------------------------------------------------
    def put(self, org_id: str, name: str, value: str, *, replace: bool = True) -> bool:
        """Store ``value`` under ``name``; True when it was new. ``replace=False``: 409 when
        the name exists. 404 for an unknown organization."""
        check_name(name)
        check_value(value)
        sealed = self.box.seal(value)
        with self.db.session() as s:
            if s.get(Organization, org_id) is None:
                raise NotFoundError(f"organization {org_id!r} not found")
            now = utcnow()
            row = {
                "organization_id": org_id,
                "name": name,
                "ciphertext": sealed,
                "created_at": now,
                "updated_at": now,
            }
            created = insert_or_ignore(s, OrganizationSecret, row, ["organization_id", "name"])
            if not created and not replace:
                raise ConflictError(f"secret {name!r} already exists (PUT it to change it)")
            if not created:
                stored = s.get(OrganizationSecret, (org_id, name))
                assert stored is not None  # the insert met it in this transaction
                stored.ciphertext, stored.updated_at = sealed, now
        self._changed()
        return created

    def remove(self, org_id: str, name: str) -> None:
        """Delete the secret; 404 when there is none of that name."""
        check_name(name)
        with self.db.session() as s:
            gone = s.execute(
                delete(OrganizationSecret)
                .where(
                    OrganizationSecret.organization_id == org_id, OrganizationSecret.name == name
                )
                .returning(OrganizationSecret.name)
            ).first()
            if gone is None:
                raise NotFoundError(f"secret {name!r} not found")
        self._changed()

    # -- what plugin code reads (the container) and the log mask ---------------------------
    def get(self, org_id: str, name: str) -> str | None:
        """The clear value of the organization's secret ``name``, None when there is none.
        SecretKeyError (503) when it does not open with this server's key."""
        with self.db.session() as s:
            row = s.get(OrganizationSecret, (org_id, name))
            token = row.ciphertext if row is not None else None
        if token is None:
            return None
        value = self.box.open(token)
        if self.mask is not None:
            self.mask.learn(org_id, value)  # masked before the plugin can print it
        return value

    def names(self, org_id: str) -> list[str]:
        """The organization's secret names, sorted."""
        with self.db.session() as s:
            query = select(OrganizationSecret.name).where(
                OrganizationSecret.organization_id == org_id
            )
            return sorted(s.scalars(query))

    def values(self, org_id: str) -> list[str]:
        """The organization's clear values (for masking; never for an answer). A value that
        does not open with this server's key is left out."""
        with self.db.session() as s:
            query = select(OrganizationSecret.ciphertext).where(
                OrganizationSecret.organization_id == org_id
            )
            tokens = list(s.scalars(query))
        return [v for v in (_opened(self.box, t) for t in tokens) if v is not None]

    def _changed(self) -> None:
        if self.mask is not None:
            self.mask.refresh()


class FixedSecrets:
    """The same reads over a fixed set of values, for runs without a server (``plughost
    test --secret NAME=VALUE``): every organization sees the same secrets."""

    def __init__(self, secrets: Mapping[str, str]) -> None:
        self._secrets = dict(secrets)

    def get(self, org_id: str, name: str) -> str | None:
        return self._secrets.get(name)

    def names(self, org_id: str) -> list[str]:
        return sorted(self._secrets)

    def values(self, org_id: str) -> list[str]:
        return list(self._secrets.values())


def load_mask_table(db: Database, box: SecretBox) -> MaskTable:
    """Every namespace's organization and every organization's values: the log mask's
    table (one read of each table; values that do not open are left out)."""
    with db.session() as s:
        namespaces = s.execute(select(Namespace.id, Namespace.organization_id)).all()
        rows = s.execute(
            select(OrganizationSecret.organization_id, OrganizationSecret.ciphertext)
        ).all()
    orgs = {namespace: org for namespace, org in namespaces}
    opened = ((org, _opened(box, token)) for org, token in rows)
    return MaskTable.build(orgs, ((org, v) for org, v in opened if v is not None))


def _org_wide(principal: Principal) -> str:
    """The principal's organization when its key is organization-wide, else 403."""
    if principal.namespaces is not None:
        raise ForbiddenError(
            "this API key is limited to some namespaces: only a key of the whole "
            "organization may list or change the organization's secrets"
        )
    return principal.organization_id


def _opened(box: SecretBox, token: str) -> str | None:
    try:
        return box.open(token)
    except SecretKeyError:
        return None
