"""Organization secrets through the published SDK's ``OrganizationSecretsApi`` (mixpeek==0.81.1,
unchanged) against a live server, and the secret values masked in the logs of plugins packed
as ``mixpeek plugin publish`` packs them (a tar.gz with a top folder)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from deploy_support import NS, deploy, infer, upload, wait_for
from mixpeek import exceptions as sdk_errors
from mixpeek.api.organization_secrets_api import OrganizationSecretsApi
from mixpeek.models.create_secret_request import CreateSecretRequest
from mixpeek.models.secret_response import SecretResponse
from mixpeek.models.secrets_list_response import SecretsListResponse
from mixpeek.models.update_secret_request import UpdateSecretRequest
from ray_support import RAY_AVAILABLE, RAY_SKIP_REASON, ray_server_env
from support import PIPELINE, LiveServer, sdk_client, tar_gz_bytes, unique_name

# a realtime plugin that prints what it is told to, and the secret it reads through its
# container when asked to (the CLI page's handler style)
REALTIME = """
class RealtimeHandler:
    async def predict(self, request):
        if request.get("say"):
            print("plugin says:", request["say"])
        if request.get("secret"):
            value = await self.container.secrets.get(request["secret"])
            print("the secret is", value)
            return {"length": len(value or "")}
        return {"ok": True}
"""

MANIFEST = """
feature_extractor_name = "{name}"
version = "1.0.0"
description = "prints what it is told"
features = []
"""


def secret_name() -> str:
    return f"sec_{uuid.uuid4().hex[:10]}"


def secret_value() -> str:
    return f"sk-{uuid.uuid4().hex}"


@pytest.fixture(scope="module")
def api(server: LiveServer) -> OrganizationSecretsApi:
    return OrganizationSecretsApi(sdk_client(server))


@pytest.fixture(scope="module")
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


@pytest.fixture(scope="module")
def talker(client: httpx.Client) -> dict[str, Any]:
    """A deployed realtime plugin that prints its inputs (status body)."""
    return deployed_talker(client)


def deployed_talker(client: httpx.Client) -> dict[str, Any]:
    name = unique_name("talk")
    files: dict[str, str | bytes] = {
        "manifest.py": MANIFEST.format(name=name),
        "pipeline.py": PIPELINE,
        "realtime.py": REALTIME,
    }
    plugin_id = upload(client, name, tar_gz_bytes(files, folder=f"{name}/"))
    deploy(client, plugin_id)
    body, _ = wait_for(client, plugin_id, {"deployed", "failed"}, timeout=180)
    assert body["status"] == "deployed", body
    return body


def log_lines(c: httpx.Client, plugin_id: str, needle: str) -> list[str]:
    """The plugin's log lines once one containing ``needle`` is there (bounded wait)."""
    deadline = time.monotonic() + 20
    while True:
        resp = c.get(f"/v1/namespaces/{NS}/plugins/{plugin_id}/logs")
        assert resp.status_code == 200, resp.text
        lines = [str(line["line"]) for line in resp.json()["lines"]]
        if any(needle in line for line in lines) or time.monotonic() > deadline:
            return lines
        time.sleep(0.2)


def test_the_sdk_creates_lists_updates_and_deletes(api: OrganizationSecretsApi) -> None:
    name, value = secret_name(), secret_value()
    created = api.create_secret_organizations(CreateSecretRequest(secret_name=name, secret_value=value))
    assert isinstance(created, SecretResponse)
    assert created.secret_name == name and created.created is True
    listed = api.list_secrets_organizations()
    assert isinstance(listed, SecretsListResponse)
    assert name in listed.secrets and listed.count == len(listed.secrets)
    updated = api.update_secret_organizations_name(name, UpdateSecretRequest(secret_value=secret_value()))
    assert updated.secret_name == name and updated.updated is True
    deleted = api.delete_secret_organizations_name(name)
    assert deleted.secret_name == name and deleted.deleted is True
    assert name not in api.list_secrets_organizations().secrets


def test_the_sdk_gets_its_error_statuses(api: OrganizationSecretsApi, server: LiveServer) -> None:
    name = secret_name()
    api.create_secret_organizations(CreateSecretRequest(secret_name=name, secret_value=secret_value()))
    with pytest.raises(sdk_errors.ConflictException):
        api.create_secret_organizations(CreateSecretRequest(secret_name=name, secret_value="again"))
    with pytest.raises(sdk_errors.NotFoundException):
        api.update_secret_organizations_name(secret_name(), UpdateSecretRequest(secret_value="x"))
    with pytest.raises(sdk_errors.NotFoundException):
        api.delete_secret_organizations_name(secret_name())
    done = server.cli("keys", "create", "--namespace", NS, "--json")
    assert done.returncode == 0, done.stderr
    limited = OrganizationSecretsApi(sdk_client(server, key=json.loads(done.stdout)["key"]))
    with pytest.raises(sdk_errors.ForbiddenException):
        limited.list_secrets_organizations()
    with pytest.raises(sdk_errors.ForbiddenException):
        limited.delete_secret_organizations_name(name)
    with pytest.raises(sdk_errors.UnauthorizedException):
        OrganizationSecretsApi(sdk_client(server, key="ph_not_a_key")).list_secrets_organizations()


def test_a_secret_value_a_plugin_prints_is_kept_masked(
    api: OrganizationSecretsApi, client: httpx.Client, talker: dict[str, Any]
) -> None:
    name, value = secret_name(), secret_value()
    api.create_secret_organizations(CreateSecretRequest(secret_name=name, secret_value=value))
    assert infer(client, talker["route_prefix"], {"say": f"token={value};"}).status_code == 200
    lines = log_lines(client, talker["plugin_id"], "plugin says:")
    assert "plugin says: token=***;" in lines, lines
    assert not any(value in line for line in lines)
    # a rotated value is masked from the next line on; the old one is no secret any more
    rotated = secret_value()
    api.update_secret_organizations_name(name, UpdateSecretRequest(secret_value=rotated))
    assert infer(client, talker["route_prefix"], {"say": f"new {rotated} old {value}"}).status_code == 200
    lines = log_lines(client, talker["plugin_id"], "plugin says: new")
    assert f"plugin says: new *** old {value}" in lines, lines


def test_the_secret_a_plugin_reads_through_its_container_is_masked_when_printed(
    api: OrganizationSecretsApi, client: httpx.Client, talker: dict[str, Any]
) -> None:
    name, value = secret_name(), secret_value()
    api.create_secret_organizations(CreateSecretRequest(secret_name=name, secret_value=value))
    answer = infer(client, talker["route_prefix"], {"secret": name})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"length": len(value)}  # the plugin did get the value
    lines = log_lines(client, talker["plugin_id"], "the secret is")
    assert "the secret is ***" in lines, lines
    assert not any(value in line for line in lines)


@pytest.fixture(scope="module")
def ray_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    if not RAY_AVAILABLE:
        pytest.skip(RAY_SKIP_REASON)
    live = LiveServer(home=tmp_path_factory.mktemp("ray-secrets"), extra_env=ray_server_env())
    live.start(timeout=180)
    try:
        yield live
    finally:
        live.stop(timeout=60)


def author_cli(server: LiveServer, home: Path, *args: str) -> Any:
    """``plughost <args> --json`` as an author runs it, the server in the environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLUGHOST_")}
    env.update(PLUGHOST_URL=server.url, PLUGHOST_API_KEY=server.key, PLUGHOST_HOME=str(home))
    done = subprocess.run(
        [sys.executable, "-m", "plughost", *args, "--json"],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    return json.loads(done.stdout)


def test_the_author_cli_hands_secrets_to_local_runs_and_pushes_them(
    server: LiveServer, api: OrganizationSecretsApi, tmp_path: Path
) -> None:
    name = unique_name("local")
    folder = tmp_path / name
    folder.mkdir()
    (folder / "manifest.py").write_text(MANIFEST.format(name=name))
    (folder / "pipeline.py").write_text(PIPELINE)
    (folder / "realtime.py").write_text(REALTIME)
    key, value = secret_name(), secret_value()
    local = author_cli(server, tmp_path / "home", "test", str(folder),
                       "--input", json.dumps({"secret": key}), "--secret", f"{key}={value}")
    assert local["result"] == {"length": len(value)}
    assert key not in api.list_secrets_organizations().secrets  # a local run stores nothing
    pushed = author_cli(server, tmp_path / "home", "push", str(folder), "--secret", f"{key}={value}")
    assert pushed["upload"]["validation_status"] == "passed"
    assert key in api.list_secrets_organizations().secrets
    rotated = secret_value()  # a second push replaces the value
    author_cli(server, tmp_path / "home", "push", str(folder), "--version", "1.0.1",
               "--secret", f"{key}={rotated}", "--deploy", "--wait")
    with server.client() as c:
        route = f"/inference/{NS}/{name}"
        assert infer(c, route, {"say": rotated}).status_code == 200
        lines = log_lines(c, f"{name}_1_0_1", "plugin says:")
    assert "plugin says: ***" in lines, lines


def test_on_ray_printed_secret_values_are_kept_masked(ray_server: LiveServer) -> None:
    api = OrganizationSecretsApi(sdk_client(ray_server))
    name, value = secret_name(), secret_value()
    api.create_secret_organizations(CreateSecretRequest(secret_name=name, secret_value=value))
    with ray_server.client() as c:
        talker = deployed_talker(c)
        assert infer(c, talker["route_prefix"], {"say": f"token={value}"}).status_code == 200
        answer = infer(c, talker["route_prefix"], {"secret": name})
        assert answer.status_code == 200 and answer.json() == {"length": len(value)}, answer.text
        lines = log_lines(c, talker["plugin_id"], "the secret is")
    assert "plugin says: token=***" in lines and "the secret is ***" in lines, lines
    assert not any(value in line for line in lines)


# a batch plugin that reads a secret through its container, prints it, and fails each batch
# with it in its exception text
BATCH_PIPELINE = '''
import asyncio

def build_steps(extractor_request, container=None, **kwargs):
    name = (extractor_request.parameters or {}).get("secret")
    value = asyncio.new_event_loop().run_until_complete(container.secrets.get(name))
    print("the batch secret is", value)

    def leak(batch):
        raise ValueError("refused " + value)

    return {"steps": [leak]}
'''


def test_a_batch_jobs_output_and_errors_keep_its_secret_masked(
    server: LiveServer, api: OrganizationSecretsApi, client: httpx.Client
) -> None:
    """A batch worker's printed lines (the server's log) and the failed job's messages hide
    the organization's secret values as replica output does."""
    from batch_support import submit, wait_batch

    name, value = secret_name(), secret_value()
    api.create_secret_organizations(CreateSecretRequest(secret_name=name, secret_value=value))
    plugin = unique_name("leaky")
    files: dict[str, str | bytes] = {
        "manifest.py": MANIFEST.format(name=plugin),
        "pipeline.py": BATCH_PIPELINE,
    }
    plugin_id = upload(client, plugin, tar_gz_bytes(files, folder=f"{plugin}/"))
    r = submit(server, plugin_id, b"text\nhello\n", "in.csv", parameters={"secret": name})
    assert r.status_code == 202, r.text
    done = wait_batch(server, r.json()["status_endpoint"])
    assert done["status"] == "failed", done
    text = json.dumps(done)
    assert "refused ***" in text and value not in text, done
    deadline = time.monotonic() + 20
    while "the batch secret is ***" not in server.logs() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "the batch secret is ***" in server.logs()
    assert value not in server.logs()
