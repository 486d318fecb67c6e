"""``plughost test``: run a plugin's realtime.py in a replica process exactly as the server
does (same worker, loader and sandbox, through the local backend's public launch: a
:class:`~plughost.backends.local.backend.LocalBackend` starting a one-replica group), call it once
and time it. No server, no database."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import orjson

from plughost.archive import IntakeLimits
from plughost.backends.base import BackendError, CallFailed, GroupSpec, StartFailed
from plughost.backends.local.backend import LocalBackend
from plughost.cli.author.errors import CliError
from plughost.cli.author.packing import intake_limits, validated
from plughost.config import Settings
from plughost.domain.ids import deployment_name_for, plugin_id_for
from plughost.envs.stage import PluginEnvironments, dependencies_of
from plughost.sandbox.host import Sandbox, SandboxUnavailable, config_from_settings
from plughost.services.container import ContainerService
from plughost.services.secrets import FixedSecrets

LOCAL_RELEASE_ID = 0
LOCAL_ORG = "org_local"  # the organization container calls of a local run belong to
OUTPUT_LINES = 20


@dataclass
class LocalAnswer:
    """One local call: the plugin's answer and the times it took."""

    result: Any
    start_s: float
    call_s: float
    manifest: dict[str, Any]
    sandbox_layers: dict[str, bool]


def run_local(
    folder: Path,
    inputs: dict[str, Any] | None,
    parameters: dict[str, Any],
    namespace: str,
    secrets: Mapping[str, str] | None = None,
) -> LocalAnswer:
    """Validate ``folder`` as the server would, start one replica of it, call it once.

    ``inputs`` default to the manifest's ``example_input`` (else ``{}``). ``secrets`` are
    what the plugin's ``container.secrets`` answers (its ``container.llm`` uses this
    machine's PLUGHOST_LLM_* settings). CliError carries the validation errors, the
    replica's start error (the plugin's own message) or the plugin's call error.
    """
    settings = Settings()
    try:
        sandbox = Sandbox.create(config_from_settings(settings))
    except SandboxUnavailable as exc:
        raise CliError(f"the sandbox is not available here: {exc}") from exc
    limits = _limits(settings, sandbox)
    with validated(folder, settings, limits) as result:
        if not result.passed or result.plugin_root is None or result.manifest is None:
            raise CliError("the plugin did not pass validation", details=result.errors)
        if not result.has_realtime:
            raise CliError("the plugin has no realtime.py: nothing to run")
        manifest = result.manifest
        example = manifest.get("example_input")
        chosen = inputs if inputs is not None else (example if isinstance(example, dict) else {})
        body = orjson.dumps({"inputs": chosen, "parameters": parameters})
        spec = _group_spec(manifest, result.plugin_root, namespace)
        answer = asyncio.run(_start_and_call(settings, sandbox, spec, body, secrets or {}))
    answer.manifest = manifest
    answer.sandbox_layers = dict(sandbox.layers)
    return answer


def _limits(settings: Settings, sandbox: Sandbox) -> IntakeLimits:
    base = intake_limits(settings)
    return IntakeLimits(
        max_archive_bytes=base.max_archive_bytes,
        max_entries=base.max_entries,
        manifest_timeout_s=base.manifest_timeout_s,
        manifest_command=sandbox.manifest_command if sandbox.enabled else None,
    )


def _group_spec(manifest: dict[str, Any], plugin_root: Path, namespace: str) -> GroupSpec:
    name = str(manifest.get("feature_extractor_name") or plugin_root.name)
    version = str(manifest.get("version") or "1.0.0")
    return GroupSpec(
        deployment_name=deployment_name_for(plugin_id_for(name, version)),
        release_id=LOCAL_RELEASE_ID,
        plugin_dir=plugin_root,
        num_replicas=1,
        serve_config=dict(manifest.get("serve_config") or {}),
        namespace_id=namespace,
        requirements=dependencies_of(manifest),
    )


async def _start_and_call(
    settings: Settings, sandbox: Sandbox, spec: GroupSpec, body: bytes, secrets: Mapping[str, str]
) -> LocalAnswer:
    envs = PluginEnvironments.from_settings(settings)
    try:
        env_path = await envs.prepare(LOCAL_RELEASE_ID, spec.requirements, spec.plugin_dir)
    except Exception as exc:  # uv's message (or a bad requirement's) is the answer
        raise CliError(f"cannot build the plugin environment: {exc}") from exc
    spec = replace(spec, env_path=env_path)
    container = ContainerService(settings, FixedSecrets(secrets), org_of=lambda _: LOCAL_ORG)
    try:
        return await _run(settings, sandbox, container, spec, body)
    finally:
        await container.aclose()


async def _run(
    settings: Settings, sandbox: Sandbox, container: ContainerService, spec: GroupSpec, body: bytes
) -> LocalAnswer:
    backend = LocalBackend(settings, sandbox if sandbox.enabled else None, container=container)
    started = time.perf_counter()
    try:
        group = await backend.start(spec)
    except StartFailed as exc:
        await backend.shutdown()
        tail = list(getattr(exc, "output_tail", ()))[-OUTPUT_LINES:]
        raise CliError(
            f"the replica failed to start: {exc}",
            details=["last output lines:", *tail] if tail else [],
            error_type="StartFailed",
        ) from exc
    start_s = time.perf_counter() - started
    try:
        return await _call(group, body, start_s)
    finally:
        await group.stop(0)
        await backend.shutdown()


async def _call(group: Any, body: bytes, start_s: float) -> LocalAnswer:
    if not await group.health():
        raise CliError("the replica did not pass the health call")
    began = time.perf_counter()
    try:
        raw = await group.call_body(body)
    except CallFailed as exc:
        raise CliError(str(exc), error_type="PluginError") from exc
    except BackendError as exc:
        raise CliError(f"the replica could not answer: {exc}") from exc
    call_s = time.perf_counter() - began
    return LocalAnswer(orjson.loads(raw), start_s, call_s, {}, {})
