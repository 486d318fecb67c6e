"""Malicious plugins against a live server: each must be rejected at upload, fail at deploy,
or run without effect, and the test checks the effect on the host, never the plugin's word.

Every payload runs twice: on a server with the upload scanner bypassed
(PLUGHOST_UNSAFE_SKIP_SCAN), so the operating-system sandbox alone must hold, and on a normal
server, where the scanner may reject it first. Both servers run PLUGHOST_SANDBOX=strict.
"""

from __future__ import annotations

import hashlib
import sysconfig
import uuid
from pathlib import Path

import pytest
from payloads_escape import ESCAPE_PAYLOADS
from payloads_exhaust import EXHAUST_PAYLOADS
from payloads_network import NETWORK_PAYLOADS
from payloads_secrets import SECRET_PAYLOADS
from payloads_tamper import TAMPER_PAYLOADS
from sec_servers import Target, wait_until
from sec_support import Listeners, Outcome, Payload, healthy, release_processes, run_case

import plughost

PAYLOADS = ESCAPE_PAYLOADS + SECRET_PAYLOADS + NETWORK_PAYLOADS + EXHAUST_PAYLOADS + TAMPER_PAYLOADS
IDS = [p.id for p in PAYLOADS]

# Where a payload must end when nothing stops it before the sandbox does.
EXPECTED_STAGE = {
    "exhaust-memory_at_import": {"deploy_failed"},
    "exhaust-cpu_spin_at_import": {"deploy_failed"},
    "exhaust-manifest_memory_bomb": {"rejected"},
    "exhaust-manifest_cpu_spin": {"rejected"},
    "exhaust-cpu_spin_in_call": {"call_error"},
    "exhaust-sleep_forever_in_call": {"call_error"},
    "exhaust-stack_overflow_crash": {"call_error"},
    "exhaust-segfault_via_ctypes": {"call_error"},
    "tamper-import_time_writes_home": {"deploy_failed"},
}
ESCAPED_MARKS = ('"escaped":true', "'escaped': True", '"escaped": true')


def test_payload_count() -> None:
    assert len(PAYLOADS) >= 60
    assert len(set(IDS)) == len(IDS)


def test_healthz_reports_every_sandbox_layer(unscanned: Target) -> None:
    with unscanned.server.client() as c:
        sandbox = c.get("/healthz").json()["sandbox"]
    assert sandbox["mode"] == "strict"
    assert sandbox["layers"] == {
        "bwrap": True, "netns": True, "uid": True, "seccomp": True, "rlimits": True,
    }


def stray_files(target: Target) -> list[Path]:
    """Files a payload would have left on the host had it got out."""
    home = target.server.home
    found = [p for p in home.rglob("pwned*")]
    found += list(Path(sysconfig.get_paths()["purelib"]).glob("pwned_*"))
    found += list(Path(plughost.__file__).resolve().parent.glob("pwned_*"))
    found += list(Path("/tmp").glob("pwned_*"))
    found += [p for p in (Path("/evil"),) if p.exists()]
    return found


def assert_contained(target: Target, payload: Payload, outcome: Outcome, marker: Path,
                     listeners: Listeners, scanned: bool = False) -> None:
    texts = "\n".join(outcome.texts)
    for secret in target.secrets():
        assert secret not in texts, f"{payload.id} leaked a secret: {texts[:2000]}"
    assert not any(mark in texts for mark in ESCAPED_MARKS), texts[:2000]
    assert not marker.exists(), f"{payload.id} wrote the host marker"
    assert stray_files(target) == []
    assert listeners.count() == 0, listeners.hits
    assert healthy(target.server), "the server stopped answering"
    neighbour = target.neighbour
    assert wait_until(lambda: neighbour.answers(target.server)), "the neighbour stopped answering"
    digest = hashlib.sha256((neighbour.folder / "realtime.py").read_bytes()).hexdigest()
    assert digest == neighbour.code_hash
    for key, limit in payload.bounds.items():
        if outcome.result is not None and key in outcome.result:
            assert outcome.result[key] <= limit, (key, outcome.result)
    if outcome.release_id is not None:  # deleted: nothing of it may keep running
        socket_dir = str(Path(neighbour.socket).parent)
        replicas = target.server.home / "replicas"
        assert wait_until(
            lambda: not release_processes(socket_dir, outcome.release_id, replicas), 10
        ), release_processes(socket_dir, outcome.release_id, replicas)
    expected = EXPECTED_STAGE.get(payload.id)
    if expected is not None and scanned:
        expected = expected | {"rejected"}
    if expected is not None:
        assert outcome.stage in expected, (outcome.stage, texts[:2000])


@pytest.mark.parametrize("payload", PAYLOADS, ids=IDS)
def test_sandbox_contains_payload_without_the_scanner(
    payload: Payload, unscanned: Target, marker_dir: Path, listeners: Listeners
) -> None:
    case = f"u{uuid.uuid4().hex[:8]}"
    ctx = unscanned.context(case, marker_dir, listeners)
    outcome = run_case(unscanned.server, payload, f"mal_{case}", ctx)
    assert_contained(unscanned, payload, outcome, Path(ctx["marker"]), listeners)


@pytest.mark.parametrize("payload", PAYLOADS, ids=IDS)
def test_payload_is_rejected_by_the_scanner_or_contained(
    payload: Payload, scanned: Target, marker_dir: Path, listeners: Listeners
) -> None:
    case = f"s{uuid.uuid4().hex[:8]}"
    ctx = scanned.context(case, marker_dir, listeners)
    outcome = run_case(scanned.server, payload, f"mal_{case}", ctx)
    if outcome.stage == "rejected":
        assert "validation_status': 'failed'" in outcome.texts[0], outcome.texts[0]
    assert_contained(scanned, payload, outcome, Path(ctx["marker"]), listeners, scanned=True)
