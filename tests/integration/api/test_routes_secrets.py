"""Organization secrets over HTTP (the app in process, SQLite and PostgreSQL): the SDK's
answers and statuses, values never answered and stored encrypted, organizations kept apart,
namespace-limited keys read-only, the admin CLI on the same vault and key."""

from __future__ import annotations

import json
import os
import stat
import uuid
from typing import Any

import httpx
import pytest
from inproc import InProcessServer
from registry_support import assert_error
from sqlalchemy import create_engine, text

from plughost.config import Settings
from plughost.persistence.db import Database
from plughost.services.accounts import Accounts
from plughost.services.secret_box import open_secret_box
from plughost.services.secrets import Secrets

PATH = "/v1/organizations/secrets"


def unique(prefix: str = "s") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def value() -> str:
    return "val-" + uuid.uuid4().hex


def cli_json(server: InProcessServer, *args: str) -> Any:
    done = server.cli(*args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def new_key(
    server: InProcessServer, org: str = "org_default", namespaces: list[str] | None = None
) -> str:
    """A key made beside the server, as the admin CLI makes one (without its start-up)."""
    db = Database(database_url(server))
    try:
        accounts = Accounts(db)
        if org != "org_default":
            accounts.create_organization(org, org)
        return accounts.create_key(org, namespaces)[0]
    finally:
        db.dispose()


def database_url(server: InProcessServer) -> str:
    return server.database_url or f"sqlite:///{server.home / 'plughost.db'}"


def another_server_reads(server: InProcessServer, name: str) -> str | None:
    """What a second server on the same database (its own process, the same home for
    SQLite) opens: the key is the one the first server made."""
    db = Database(database_url(server))
    try:
        settings = Settings(home=server.home, database_url=server.database_url)
        return Secrets(db, open_secret_box(settings, db)).get("org_default", name)
    finally:
        db.dispose()


def assert_no_value(response: httpx.Response, secret: str) -> None:
    assert secret not in response.text


def test_create_list_update_delete_as_the_sdk_expects(server: InProcessServer) -> None:
    name, secret, rotated = unique(), value(), value()
    with server.client() as c:
        created = c.post(PATH, json={"secret_name": name, "secret_value": secret})
        assert created.status_code == 201, created.text
        assert created.json() == {"secret_name": name, "created": True}
        listed = c.get(PATH)
        assert listed.status_code == 200
        body = listed.json()
        assert name in body["secrets"] and body["count"] == len(body["secrets"])
        updated = c.put(f"{PATH}/{name}", json={"secret_value": rotated})
        assert updated.status_code == 200 and updated.json() == {
            "secret_name": name,
            "updated": True,
        }
        for response in (created, listed, updated):
            assert_no_value(response, secret)
            assert_no_value(response, rotated)
        assert another_server_reads(server, name) == rotated
        deleted = c.delete(f"{PATH}/{name}")
        assert deleted.status_code == 200 and deleted.json() == {
            "secret_name": name,
            "deleted": True,
        }
        assert name not in c.get(PATH).json()["secrets"]
        assert another_server_reads(server, name) is None


def test_conflicts_unknown_names_and_bad_requests_answer_the_error_body(
    server: InProcessServer,
) -> None:
    name, secret = unique(), value()
    with server.client() as c:
        assert c.post(PATH, json={"secret_name": name, "secret_value": secret}).status_code == 201
        dup = c.post(PATH, json={"secret_name": name, "secret_value": "other-value"})
        assert_error(dup, 409, "ConflictError")
        assert another_server_reads(server, name) == secret
        assert_error(c.put(f"{PATH}/{unique()}", json={"secret_value": "x"}), 404, "NotFoundError")
        assert_error(c.delete(f"{PATH}/{unique()}"), 404, "NotFoundError")
        assert_error(
            c.post(PATH, json={"secret_name": "bad name", "secret_value": "x"}),
            422,
            "ValidationError",
        )
        assert_error(
            c.post(PATH, json={"secret_name": unique(), "secret_value": ""}), 422, "ValidationError"
        )
        assert_error(
            c.post(PATH, json={"secret_name": unique(), "secret_value": 12345}),
            422,
            "ValidationError",
        )
        assert_error(c.post(PATH, json={"secret_name": unique()}), 422, "ValidationError")
        assert_error(
            c.put(f"{PATH}/has%20space", json={"secret_value": "x"}), 422, "ValidationError"
        )
        # a lone surrogate cannot be stored as UTF-8: refused, not a 500
        raw = b'{"secret_name": "' + unique().encode() + b'", "secret_value": "a\\ud800b"}'
        bad = c.post(PATH, content=raw, headers={"Content-Type": "application/json"})
        assert_error(bad, 422, "ValidationError")
    with server.anonymous() as anon:
        assert_error(anon.get(PATH), 401, "AuthenticationError")
        assert_error(
            anon.post(PATH, json={"secret_name": unique(), "secret_value": "x"}),
            401,
            "AuthenticationError",
        )


def test_values_are_encrypted_at_rest(server: InProcessServer) -> None:
    name, secret = unique(), value()
    with server.client() as c:
        assert c.post(PATH, json={"secret_name": name, "secret_value": secret}).status_code == 201
    engine = create_engine(database_url(server))
    try:
        with engine.connect() as conn:
            stored = conn.execute(
                text("SELECT ciphertext FROM organization_secrets WHERE name = :n"), {"n": name}
            ).scalar_one()
    finally:
        engine.dispose()
    assert secret not in stored and stored.startswith("gAAAAA")  # a Fernet token


def test_the_generated_key_lives_in_the_home_on_sqlite_and_in_the_database_on_postgres(
    server: InProcessServer,
) -> None:
    key_path = server.home / "secrets-key"
    engine = create_engine(database_url(server))
    try:
        with engine.connect() as conn:
            row = conn.execute(
                text("SELECT value FROM server_secrets WHERE name = 'organization_secrets'")
            ).scalar_one_or_none()
    finally:
        engine.dispose()
    if server.database_url:  # PostgreSQL: every server on the database must open the values
        assert row is not None and not key_path.exists()
    else:
        assert row is None
        assert stat.S_IMODE(os.stat(key_path).st_mode) == 0o600


def test_another_organization_cannot_reach_them(server: InProcessServer) -> None:
    other_key = new_key(server, unique("org"))
    name, secret = unique(), value()
    with server.client() as mine, server.client(key=other_key) as theirs:
        assert (
            mine.post(PATH, json={"secret_name": name, "secret_value": secret}).status_code == 201
        )
        assert theirs.get(PATH).json() == {"secrets": [], "count": 0}
        assert_error(
            theirs.put(f"{PATH}/{name}", json={"secret_value": "stolen"}), 404, "NotFoundError"
        )
        assert_error(theirs.delete(f"{PATH}/{name}"), 404, "NotFoundError")
        own = theirs.post(PATH, json={"secret_name": name, "secret_value": "their own"})
        assert own.status_code == 201  # the same name in their organization is theirs
        assert theirs.get(PATH).json() == {"secrets": [name], "count": 1}
    assert another_server_reads(server, name) == secret


def test_a_namespace_limited_key_neither_lists_nor_changes(server: InProcessServer) -> None:
    limited = new_key(server, namespaces=["ns_default"])
    name, secret = unique(), value()
    with server.client() as admin, server.client(key=limited) as c:
        assert (
            admin.post(PATH, json={"secret_name": name, "secret_value": secret}).status_code == 201
        )
        assert_error(c.get(PATH), 403, "ForbiddenError")
        assert_error(
            c.post(PATH, json={"secret_name": unique(), "secret_value": "x"}), 403, "ForbiddenError"
        )
        assert_error(
            c.put(f"{PATH}/{name}", json={"secret_value": "changed"}), 403, "ForbiddenError"
        )
        assert_error(c.delete(f"{PATH}/{name}"), 403, "ForbiddenError")
    assert another_server_reads(server, name) == secret


def test_the_admin_cli_works_on_the_same_vault(server: InProcessServer) -> None:
    name, secret = unique(), value()
    done = server.cli("secrets", "set", name, "--value", secret)
    assert done.returncode == 0, done.stderr
    assert secret not in done.stdout + done.stderr
    with server.client() as c:
        assert name in c.get(PATH).json()["secrets"]
    assert another_server_reads(server, name) == secret  # sealed with the server's key
    assert name in cli_json(server, "secrets", "list")["secrets"]
    assert server.cli("secrets", "delete", name).returncode == 0
    missing = server.cli("secrets", "delete", name)
    assert missing.returncode == 1 and "not found" in missing.stderr
    with server.client() as c:
        assert name not in c.get(PATH).json()["secrets"]


@pytest.mark.parametrize("method", ["get", "put", "delete"])
def test_a_secret_name_path_is_checked_before_anything_else(
    server: InProcessServer, method: str
) -> None:
    with server.client() as c:
        response = c.request(method.upper(), f"{PATH}/{'x' * 101}", json={"secret_value": "v"})
        if method == "get":  # there is no GET of one secret: values are never answered
            assert_error(response, 405, "MethodNotAllowedError")
        else:
            assert_error(response, 422, "ValidationError")
