"""The sandbox's self-test started early by `plughost serve` (plughost.sandbox.probe):
begun in a thread, handed over once, and run as before when nobody began it."""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest

from plughost.config import Settings
from plughost.sandbox import probe
from plughost.sandbox.host import config_from_settings

pytestmark = pytest.mark.unit


def test_a_begun_probe_runs_in_its_thread_and_is_handed_over_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ran: list[str] = []

    def fake(config: object) -> str:
        ran.append(threading.current_thread().name)
        return f"result {len(ran)}"

    monkeypatch.setattr(probe, "probe_layers", fake)
    config = replace(config_from_settings(Settings()), mode="auto")
    probe.begin_probe(config)
    probe.begin_probe(config)  # begun once
    assert probe.take_probe(config) == "result 1"
    assert ran == ["plughost-sandbox-probe"]
    assert probe.take_probe(config) == "result 2"  # nothing begun any more: run here
    assert ran[1] == threading.current_thread().name


def test_a_probe_that_failed_in_its_thread_raises_where_it_is_taken(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(config: object) -> None:
        raise OSError("no bwrap today")

    monkeypatch.setattr(probe, "probe_layers", broken)
    config = replace(config_from_settings(Settings()), mode="auto")
    probe.begin_probe(config)
    with pytest.raises(OSError, match="no bwrap today"):
        probe.take_probe(config)


def test_nothing_is_begun_with_the_sandbox_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(probe, "probe_layers", lambda config: pytest.fail("probed"))
    probe.begin_probe(replace(config_from_settings(Settings()), mode="off"))
    assert not probe._EARLY
