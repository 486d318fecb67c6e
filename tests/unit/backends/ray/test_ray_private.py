"""The Ray calls beyond Ray's public API (plughost.backends.ray.private) still exist, with the
parameters plughost passes, in the installed Ray. A Ray release that renames or reshapes one
fails here, by name, rather than in a deploy. Skipped only when Ray is not installed."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from plughost.backends.ray import private as ray_private

SRC = Path(ray_private.__file__).resolve().parents[2]  # src/plughost
PRIVATE = re.compile(r"\bray\._private\b|\bserve\._run\b|\b_internal_kv_get\b|\b_blocking=")

needs_ray = pytest.mark.skipif(
    importlib.util.find_spec("ray") is None,
    reason="Ray is not installed (the `ray` extra): no private Ray call to check",
)


@needs_ray
def test_every_private_ray_call_is_still_offered() -> None:
    problems = ray_private.missing()
    assert not problems, (
        "the installed Ray changed what plughost.backends.ray.private calls: " + "; ".join(problems)
    )


def test_no_other_module_calls_ray_beyond_its_public_api() -> None:
    offenders = [
        f"{path.relative_to(SRC)}:{number}"
        for path in sorted(SRC.rglob("*.py"))
        if path.relative_to(SRC).as_posix() != "backends/ray/private.py"
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if PRIVATE.search(line)
    ]
    assert offenders == []


@needs_ray
def test_a_reshaped_or_removed_call_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    from ray import serve
    from ray._private.runtime_env import packaging

    monkeypatch.setattr(serve, "delete", lambda name: None)
    monkeypatch.delattr(packaging, "pin_runtime_env_uri")
    assert ray_private.missing() == [
        "packaging.pin_runtime_env_uri is gone",
        "serve.delete takes no '_blocking'",
    ]
