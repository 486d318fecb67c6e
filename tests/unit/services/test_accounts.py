"""Accounts: bootstrap, keys, organizations and namespaces, authentication and its cache."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from plughost.errors import (
    AuthenticationError,
    BadRequestError,
    ConflictError,
    NotFoundError,
    ValidationError,
)
from plughost.persistence.db import Database
from plughost.persistence.tables import ApiKey
from plughost.services.accounts import DEFAULT_NAMESPACE, DEFAULT_ORG, Accounts, Principal

from .conftest import ORG, OTHER_ORG


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def accounts(db: Database, clock: ManualClock) -> Accounts:
    return Accounts(db, cache_ttl_s=10.0, clock=clock)


def bearer(key: str) -> str:
    return f"Bearer {key}"


# -- bootstrap ---------------------------------------------------------------------------------
def test_first_bootstrap_generates_a_key_that_reaches_every_default_namespace(
    accounts: Accounts,
) -> None:
    result = accounts.bootstrap("")
    assert result.created_key is not None and result.created_key.startswith("ph_")
    principal = accounts.authenticate(bearer(result.created_key))
    assert principal.organization_id == DEFAULT_ORG and principal.namespaces is None
    assert [n["namespace_id"] for n in accounts.list_namespaces(DEFAULT_ORG)] == [DEFAULT_NAMESPACE]


def test_a_second_bootstrap_finds_the_key_and_generates_none(accounts: Accounts) -> None:
    first = accounts.bootstrap("")
    again = Accounts(accounts.db).bootstrap("")  # another server on the same database
    assert first.created_key is not None and again.created_key is None
    assert len(accounts.list_keys(DEFAULT_ORG)) == 1


def test_a_given_bootstrap_key_is_stored_once_and_never_shown(accounts: Accounts) -> None:
    assert accounts.bootstrap("ph_given").created_key is None
    assert accounts.bootstrap("ph_given").created_key is None
    assert accounts.authenticate(bearer("ph_given")).organization_id == DEFAULT_ORG
    assert len(accounts.list_keys(DEFAULT_ORG)) == 1


def test_the_signing_secret_is_made_once_and_shared_by_every_server(db: Database) -> None:
    first = Accounts(db).signing_secret()
    assert len(first) == 32
    assert Accounts(db).signing_secret() == first


# -- keys --------------------------------------------------------------------------------------
def test_a_created_key_authenticates_and_its_record_never_holds_the_key(
    accounts: Accounts,
) -> None:
    key, record = accounts.create_key(ORG, ["ns_b", "ns_a", "ns_a"], label="ci")
    assert record["namespaces"] == ["ns_a", "ns_b"]  # sorted, each once
    assert record["prefix"] == key[:8] and record["label"] == "ci"
    assert key not in str(record) and record["revoked_at"] is None
    principal = accounts.authenticate(bearer(key))
    assert principal == Principal(record["key_id"], ORG, frozenset({"ns_a", "ns_b"}))
    with accounts.db.session() as s:
        stored = s.scalars(select(ApiKey.key_hash)).all()
    assert key not in stored  # only the hash is kept


def test_a_key_for_an_unknown_organization_is_refused(accounts: Accounts) -> None:
    with pytest.raises(NotFoundError, match="organization 'org_zz'"):
        accounts.create_key("org_zz")


def test_a_key_cannot_name_another_organizations_namespace(accounts: Accounts) -> None:
    with pytest.raises(NotFoundError) as err:
        accounts.create_key(ORG, ["ns_a", "ns_other"])
    assert err.value.error_type == "NotFoundError" and err.value.status_code == 404
    assert accounts.list_keys(ORG) == []  # nothing half-made


def test_keys_are_listed_per_organization(accounts: Accounts) -> None:
    accounts.create_key(ORG)
    accounts.create_key(OTHER_ORG)
    assert {k["organization_id"] for k in accounts.list_keys(ORG)} == {ORG}
    assert len(accounts.list_keys()) == 2


def test_a_revoked_key_no_longer_authenticates_and_revoking_again_keeps_the_time(
    accounts: Accounts,
) -> None:
    key, record = accounts.create_key(ORG)
    revoked = accounts.revoke_key(record["key_id"])
    assert revoked["revoked_at"] is not None
    with pytest.raises(AuthenticationError, match="revoked"):
        accounts.authenticate(bearer(key))
    assert accounts.revoke_key(record["key_id"])["revoked_at"] == revoked["revoked_at"]


def test_revoking_an_unknown_key_is_a_404(accounts: Accounts) -> None:
    with pytest.raises(NotFoundError):
        accounts.revoke_key("key_nope")


# -- authentication ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "   ",
        "Basic dXNlcjpwYXNz",
        "Bearer",
        "Bearer    ",
        "ph_without_scheme",
        "Bearer ph_unknown_key",
        "Bearer ph_x' OR '1'='1",
    ],
)
def test_missing_malformed_or_unknown_credentials_are_a_401(
    accounts: Accounts, header: str | None
) -> None:
    accounts.create_key(ORG)
    with pytest.raises(AuthenticationError) as err:
        accounts.authenticate(header)
    assert err.value.error_type == "AuthenticationError" and err.value.status_code == 401


def test_the_scheme_is_case_insensitive_and_spaces_around_the_key_are_ignored(
    accounts: Accounts,
) -> None:
    key, record = accounts.create_key(ORG)
    assert accounts.authenticate(f"  bearer   {key}  ").key_id == record["key_id"]


# -- the request path's cache ------------------------------------------------------------------
def test_a_cached_principal_outlives_its_revocation_only_until_the_ttl(
    accounts: Accounts, clock: ManualClock
) -> None:
    key, record = accounts.create_key(ORG)
    accounts.authenticate_and_cache(bearer(key))
    accounts.revoke_key(record["key_id"])
    clock.now += 9.9
    assert accounts.cached_principal(bearer(key)) is not None
    clock.now += 0.2
    assert accounts.cached_principal(bearer(key)) is None
    with pytest.raises(AuthenticationError):
        accounts.authenticate_and_cache(bearer(key))


def test_a_failed_refresh_drops_the_cached_principal_at_once(
    accounts: Accounts, clock: ManualClock
) -> None:
    key, record = accounts.create_key(ORG)
    accounts.authenticate_and_cache(bearer(key))
    accounts.revoke_key(record["key_id"])
    with pytest.raises(AuthenticationError):
        accounts.authenticate_and_cache(bearer(key))
    assert accounts.cached_principal(bearer(key)) is None  # no clock advance needed


def test_a_principal_is_due_for_refresh_past_half_its_life(
    accounts: Accounts, clock: ManualClock
) -> None:
    key, _ = accounts.create_key(ORG)
    assert not accounts.principal_due(bearer(key))  # nothing cached: nothing to refresh
    accounts.authenticate_and_cache(bearer(key))
    clock.now += 4.9
    assert not accounts.principal_due(bearer(key))
    clock.now += 0.2
    assert accounts.principal_due(bearer(key))


def test_fresh_caller_needs_both_the_key_and_the_namespace_check_fresh(
    accounts: Accounts, clock: ManualClock
) -> None:
    key, _ = accounts.create_key(ORG)
    assert accounts.fresh_caller(bearer(key), "ns_a") is None
    principal = accounts.authenticate_and_cache(bearer(key))
    assert accounts.fresh_caller(bearer(key), "ns_a") is None  # namespace not checked yet
    accounts.namespace_visible_and_cache(principal, "ns_a")
    assert accounts.fresh_caller(bearer(key), "ns_a") == principal
    assert accounts.fresh_caller(bearer(key), "ns_b") is None  # checked per namespace
    assert accounts.fresh_caller(bearer("ph_other"), "ns_a") is None
    clock.now += 5.1  # past half of the ttl: the hot path refreshes instead
    assert accounts.fresh_caller(bearer(key), "ns_a") is None
    assert accounts.cached_namespace_ok(principal, "ns_a")
    assert accounts.namespace_due(principal, "ns_a")


def test_forget_cached_drops_every_key_and_namespace_check(accounts: Accounts) -> None:
    key, _ = accounts.create_key(ORG)
    principal = accounts.authenticate_and_cache(bearer(key))
    accounts.namespace_visible_and_cache(principal, "ns_a")
    accounts.forget_cached()
    assert accounts.cached_principal(bearer(key)) is None
    assert not accounts.cached_namespace_ok(principal, "ns_a")


def test_a_failed_namespace_check_is_not_cached_and_drops_an_old_one(
    accounts: Accounts, db: Database
) -> None:
    key, _ = accounts.create_key(ORG, ["ns_a"])
    principal = accounts.authenticate_and_cache(bearer(key))
    accounts.namespace_visible_and_cache(principal, "ns_a")
    narrowed = Principal(principal.key_id, ORG, frozenset({"ns_b"}))  # same key, new scope
    with pytest.raises(NotFoundError):
        accounts.namespace_visible_and_cache(narrowed, "ns_a")
    assert not accounts.cached_namespace_ok(principal, "ns_a")


# -- namespace visibility ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("key_namespaces", "asked"),
    [
        (None, "ns_other"),  # another organization's namespace
        (None, "ns_missing"),
        (["ns_a"], "ns_b"),  # outside the key's namespaces
        (None, "../ns_a"),
    ],
)
def test_a_namespace_out_of_reach_is_a_404_like_a_missing_one(
    accounts: Accounts, key_namespaces: list[str] | None, asked: str
) -> None:
    key, _ = accounts.create_key(ORG, key_namespaces)
    principal = accounts.authenticate(bearer(key))
    with pytest.raises(NotFoundError, match="not found") as err:
        accounts.namespace_visible(principal, asked)
    assert err.value.status_code == 404


def test_a_namespace_in_reach_is_visible(accounts: Accounts) -> None:
    key, _ = accounts.create_key(ORG, ["ns_b"])
    accounts.namespace_visible(accounts.authenticate(bearer(key)), "ns_b")


def test_only_namespace_is_the_one_a_key_reaches(accounts: Accounts) -> None:
    key, _ = accounts.create_key(ORG, ["ns_b"])
    assert accounts.only_namespace(accounts.authenticate(bearer(key))) == "ns_b"
    key, _ = accounts.create_key(OTHER_ORG)  # an organization of one namespace
    assert accounts.only_namespace(accounts.authenticate(bearer(key))) == "ns_other"


def test_a_key_reaching_several_namespaces_must_name_one(accounts: Accounts) -> None:
    key, _ = accounts.create_key(ORG)
    with pytest.raises(BadRequestError, match="X-Namespace"):
        accounts.only_namespace(accounts.authenticate(bearer(key)))


# -- organizations and namespaces --------------------------------------------------------------
@pytest.mark.parametrize("bad", ["", "a b", "../etc", "x" * 65, "org/a", "órg", "\nns"])
def test_invalid_organization_and_namespace_ids_are_refused(accounts: Accounts, bad: str) -> None:
    with pytest.raises(ValidationError):
        accounts.create_organization(bad)
    with pytest.raises(ValidationError):
        accounts.create_namespace("n", ORG, namespace_id=bad or "bad id")


def test_an_id_with_a_trailing_newline_is_refused(accounts: Accounts) -> None:
    with pytest.raises(ValidationError):
        accounts.create_organization("org_n\n")
    with pytest.raises(ValidationError):
        accounts.create_namespace("n", ORG, namespace_id="ns_n\n")


def test_duplicates_are_a_conflict(accounts: Accounts) -> None:
    with pytest.raises(ConflictError):
        accounts.create_organization(ORG)
    with pytest.raises(ConflictError):
        accounts.create_namespace("again", ORG, namespace_id="ns_a")
    with pytest.raises(ConflictError):  # namespace ids are global, not per organization
        accounts.create_namespace("again", OTHER_ORG, namespace_id="ns_a")


def test_a_namespace_needs_an_existing_organization(accounts: Accounts) -> None:
    with pytest.raises(NotFoundError):
        accounts.create_namespace("n", "org_zz")


def test_a_new_organization_and_its_generated_namespace_are_listed(accounts: Accounts) -> None:
    assert accounts.create_organization("org_c") == {"organization_id": "org_c", "name": "org_c"}
    record = accounts.create_namespace("main", "org_c")
    assert record["namespace_id"].startswith("ns_") and record["organization_id"] == "org_c"
    assert [n["name"] for n in accounts.list_namespaces("org_c")] == ["main"]
    assert len(accounts.list_namespaces()) == 4
