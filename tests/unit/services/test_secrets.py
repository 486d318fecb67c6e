"""Organization secrets: the vault's use cases, their scoping, the cipher and its key, and
the log mask the service keeps current."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select

from plughost.config import Settings
from plughost.errors import ConflictError, ForbiddenError, NotFoundError, ValidationError
from plughost.logs.masking import SecretMask
from plughost.persistence.db import Database
from plughost.persistence.tables import OrganizationSecret
from plughost.services.accounts import Principal
from plughost.services.secret_box import (
    SecretBox,
    SecretKeyError,
    check_key,
    generate_key,
    key_file,
    open_secret_box,
    parse_keys,
)
from plughost.services.secrets import FixedSecrets, Secrets, load_mask_table

from .conftest import ORG, OTHER_ORG

ADMIN_A = Principal("key_a", ORG, None)
LIMITED_A = Principal("key_limited", ORG, frozenset({"ns_a"}))
ADMIN_B = Principal("key_b", OTHER_ORG, None)
VALUE = "sk-live-0123456789abcdef"


def run_now(target: object) -> None:
    target()  # type: ignore[operator]


@pytest.fixture
def box() -> SecretBox:
    return SecretBox([Fernet.generate_key()])


@pytest.fixture
def mask(db: Database, box: SecretBox) -> SecretMask:
    built = SecretMask(lambda: load_mask_table(db, box), background=run_now)
    built.refresh()
    return built


@pytest.fixture
def secrets(db: Database, box: SecretBox, mask: SecretMask) -> Secrets:
    return Secrets(db, box, mask)


def stored_token(db: Database, org: str, name: str) -> str:
    with db.session() as s:
        return s.scalars(
            select(OrganizationSecret.ciphertext).where(
                OrganizationSecret.organization_id == org, OrganizationSecret.name == name
            )
        ).one()


# -- the wire's use cases ----------------------------------------------------------------------
def test_create_list_update_delete_answer_names_never_values(secrets: Secrets) -> None:
    assert secrets.create(ADMIN_A, "stripe_key", VALUE) == {
        "secret_name": "stripe_key",
        "created": True,
    }
    secrets.create(ADMIN_A, "a.token-2", "another value")
    assert secrets.listing(ADMIN_A) == {"secrets": ["a.token-2", "stripe_key"], "count": 2}
    assert secrets.update(ADMIN_A, "stripe_key", "rotated value") == {
        "secret_name": "stripe_key",
        "updated": True,
    }
    assert secrets.get(ORG, "stripe_key") == "rotated value"
    assert secrets.delete(ADMIN_A, "stripe_key") == {"secret_name": "stripe_key", "deleted": True}
    assert secrets.listing(ADMIN_A) == {"secrets": ["a.token-2"], "count": 1}
    assert secrets.get(ORG, "stripe_key") is None


def test_an_existing_name_conflicts_and_unknown_names_are_not_found(secrets: Secrets) -> None:
    secrets.create(ADMIN_A, "dup", VALUE)
    with pytest.raises(ConflictError):
        secrets.create(ADMIN_A, "dup", "other")
    assert secrets.get(ORG, "dup") == VALUE  # the refused create changed nothing
    with pytest.raises(NotFoundError):
        secrets.update(ADMIN_A, "missing", "x")
    with pytest.raises(NotFoundError):
        secrets.delete(ADMIN_A, "missing")


def test_values_are_stored_encrypted(secrets: Secrets, db: Database, box: SecretBox) -> None:
    secrets.create(ADMIN_A, "k", VALUE)
    token = stored_token(db, ORG, "k")
    assert VALUE not in token
    assert box.open(token) == VALUE


def test_another_organization_neither_sees_nor_changes_them(secrets: Secrets) -> None:
    secrets.create(ADMIN_A, "shared_name", VALUE)
    assert secrets.listing(ADMIN_B) == {"secrets": [], "count": 0}
    assert secrets.get(OTHER_ORG, "shared_name") is None
    assert secrets.names(OTHER_ORG) == []
    with pytest.raises(NotFoundError):
        secrets.update(ADMIN_B, "shared_name", "stolen")
    with pytest.raises(NotFoundError):
        secrets.delete(ADMIN_B, "shared_name")
    secrets.create(ADMIN_B, "shared_name", "b's own")  # the same name in B is B's secret
    assert secrets.get(ORG, "shared_name") == VALUE
    assert secrets.get(OTHER_ORG, "shared_name") == "b's own"


def test_a_namespace_limited_key_neither_lists_nor_writes(secrets: Secrets) -> None:
    secrets.create(ADMIN_A, "k", VALUE)
    for change in (
        lambda: secrets.listing(LIMITED_A),
        lambda: secrets.create(LIMITED_A, "new", VALUE),
        lambda: secrets.update(LIMITED_A, "k", "x1234"),
        lambda: secrets.delete(LIMITED_A, "k"),
    ):
        with pytest.raises(ForbiddenError):
            change()
    assert secrets.get(ORG, "k") == VALUE


@pytest.mark.parametrize("name", ["", "has space", "slash/name", "x" * 101, "ünïcode", "a\nb"])
def test_bad_names_are_refused(secrets: Secrets, name: str) -> None:
    with pytest.raises(ValidationError):
        secrets.create(ADMIN_A, name, VALUE)


def test_bad_values_are_refused_without_being_quoted(secrets: Secrets) -> None:
    for value in ("", "x" * 65537, "lone \ud800 surrogate"):
        with pytest.raises(ValidationError) as caught:
            secrets.create(ADMIN_A, "k", value)
        assert value[:20] not in caught.value.message or value == ""
    assert secrets.names(ORG) == []


def test_admin_put_creates_then_replaces_and_needs_a_known_organization(
    secrets: Secrets,
) -> None:
    assert secrets.put(ORG, "k", "first value") is True
    assert secrets.put(ORG, "k", "second value") is False
    assert secrets.get(ORG, "k") == "second value"
    with pytest.raises(NotFoundError):
        secrets.put("org_missing", "k", VALUE)
    secrets.remove(ORG, "k")
    with pytest.raises(NotFoundError):
        secrets.remove(ORG, "k")


def test_a_value_sealed_with_another_key_is_a_clear_error(
    secrets: Secrets, db: Database
) -> None:
    secrets.create(ADMIN_A, "k", VALUE)
    stranger = Secrets(db, SecretBox([Fernet.generate_key()]))
    with pytest.raises(SecretKeyError, match="PLUGHOST_SECRETS_KEY"):
        stranger.get(ORG, "k")
    assert stranger.values(ORG) == []  # masking skips what it cannot open
    assert stranger.names(ORG) == ["k"]


def test_fixed_secrets_answer_like_the_service() -> None:
    fixed = FixedSecrets({"b": "2222", "a": "1111"})
    assert fixed.get("any_org", "a") == "1111"
    assert fixed.get("any_org", "zz") is None
    assert fixed.names("any_org") == ["a", "b"]
    assert sorted(fixed.values("any_org")) == ["1111", "2222"]


# -- the log mask the service keeps current ----------------------------------------------------
def test_a_changed_secret_is_masked_at_once_in_its_organizations_namespaces(
    secrets: Secrets, mask: SecretMask
) -> None:
    line = f"token={VALUE}!"
    assert mask.mask("ns_a", line) == line
    secrets.create(ADMIN_A, "k", VALUE)
    assert mask.mask("ns_a", line) == "token=***!"
    assert mask.mask("ns_b", line) == "token=***!"
    assert mask.mask("ns_other", line) == line  # another organization's line: not its secret
    secrets.update(ADMIN_A, "k", "new-value-42")
    assert mask.mask("ns_a", line) == line
    assert mask.mask("ns_a", "new-value-42") == "***"
    secrets.delete(ADMIN_A, "k")
    assert mask.mask("ns_a", "new-value-42") == "new-value-42"


def test_a_value_handed_out_is_masked_even_when_set_behind_the_servers_back(
    secrets: Secrets, mask: SecretMask, db: Database, box: SecretBox
) -> None:
    Secrets(db, box).put(ORG, "from_cli", VALUE)  # the admin CLI: no mask to tell
    assert mask.mask("ns_a", VALUE) == VALUE  # the server does not know it yet
    assert secrets.get(ORG, "from_cli") == VALUE
    assert mask.mask("ns_a", VALUE) == "***"


# -- the key -----------------------------------------------------------------------------------
def test_a_generated_key_file_is_private_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "home" / "secrets-key"
    first = key_file(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert key_file(path) == first
    assert [p.name for p in path.parent.iterdir()] == ["secrets-key"]  # no temporary left


def test_the_sqlite_server_seals_with_its_home_key(tmp_path: Path, db: Database) -> None:
    settings = Settings(home=tmp_path / "home")
    token = open_secret_box(settings, db).seal(VALUE)
    assert settings.secrets_key_path.exists()
    assert open_secret_box(settings, db).open(token) == VALUE


def test_the_configured_keys_rotate(tmp_path: Path, db: Database) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    sealed_old = open_secret_box(Settings(home=tmp_path, secrets_key=old), db).seal(VALUE)
    rotated = open_secret_box(Settings(home=tmp_path, secrets_key=f"{new}, {old}"), db)
    assert rotated.open(sealed_old) == VALUE  # the old key still opens
    sealed_new = rotated.seal(VALUE)
    assert SecretBox([new.encode()]).open(sealed_new) == VALUE  # the first key seals
    assert not Settings(home=tmp_path, secrets_key=old).secrets_key_path.exists()


def test_a_bad_configured_key_names_the_setting() -> None:
    with pytest.raises(ValueError, match="PLUGHOST_SECRETS_KEY: key 2"):
        parse_keys(f"{Fernet.generate_key().decode()},not-a-key")


FIXED_KEY = b"a2V5LWtleS1rZXkta2V5LWtleS1rZXkta2V5LWtleS0="  # 32 bytes, fixed: stable test ids


@pytest.mark.parametrize(
    "key",
    [
        b"not-a-key",
        b"",
        b"c2hvcnQ=",
        b"!" * 44,
        FIXED_KEY[:-4],
        FIXED_KEY * 2,
    ],
)
def test_the_key_check_without_cryptography_refuses_what_fernet_refuses(key: bytes) -> None:
    with pytest.raises(ValueError):
        Fernet(key)
    with pytest.raises(ValueError):
        check_key(key)


def test_a_key_made_without_cryptography_is_a_fernet_key() -> None:
    keys = {generate_key() for _ in range(20)}
    assert len(keys) == 20
    for key in keys:
        check_key(key)
        assert Fernet(key).decrypt(Fernet(key).encrypt(b"x")) == b"x"


def test_the_key_never_shows_in_a_printed_settings(tmp_path: Path) -> None:
    key = Fernet.generate_key().decode()
    assert key not in repr(Settings(home=tmp_path, secrets_key=key))
