"""A replica pool member's side of a claim (plughost.replica.spare ``--claim-fd``): the claim
read to end of file, the release's environment replacing the member's own, only the worker
options a release may set, and the runtime API it preloaded given up when the plugin folder
ships a package of the same name."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import orjson
import pytest

from plughost.replica import spare


def test_the_claim_is_read_to_end_of_file_and_an_empty_one_lets_the_member_go() -> None:
    read, write = os.pipe()
    os.write(write, orjson.dumps({"env": {}}))
    os.close(write)
    assert orjson.loads(spare.read_claim(read)) == {"env": {}}
    read, write = os.pipe()
    os.close(write)
    assert spare.read_claim(read) == b""


def test_the_release_environment_replaces_the_members_own(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMBER_ONLY", "1")
    args = ["--socket", "s", "--init-kwargs", "{}"]
    saved = dict(os.environ)
    try:
        spare.apply_claim({"env": {"RELEASE_VAR": "v", "PATH": "/usr/bin"}}, args)
        assert os.environ.get("RELEASE_VAR") == "v" and "MEMBER_ONLY" not in os.environ
    finally:
        os.environ.clear()
        os.environ.update(saved)


def test_a_claim_sets_only_the_release_options() -> None:
    args = ["--socket", "s", "--init-kwargs", "{}", "--sandbox", "{}"]
    spare.apply_claim(
        {"args": {"--init-kwargs": '{"a": 1}', "--serving": "{}", "--socket": "elsewhere",
                  "--sandbox": "null"}},
        args,
    )
    assert args[args.index("--init-kwargs") + 1] == '{"a": 1}'
    assert args[args.index("--serving") + 1] == "{}"
    assert args[args.index("--socket") + 1] == "s"  # the member's own, not the claim's
    assert args[args.index("--sandbox") + 1] == "{}"
    assert args.count("--init-kwargs") == 1


def test_a_plugin_shipping_shared_gets_its_own_not_the_preloaded_runtime_api(
    tmp_path: Path,
) -> None:
    (tmp_path / "shared").mkdir()
    (tmp_path / "engine.py").write_text("")
    assert spare.shadowed_packages(str(tmp_path), ("shared", "engine")) == ["shared", "engine"]
    (tmp_path / "shared").rmdir()
    (tmp_path / "sharedlib.py").write_text("")  # another name that merely starts alike
    assert spare.shadowed_packages(str(tmp_path), ("shared",)) == []
    assert spare.shadowed_packages(str(tmp_path / "missing"), ("shared",)) == []


def test_forgetting_a_package_drops_it_and_its_submodules() -> None:
    saved = {k: v for k, v in sys.modules.items() if k.partition(".")[0] == "shared"}
    sys.modules["shared"] = sys  # stand-ins; restored below
    sys.modules["shared.plugins"] = sys
    try:
        spare.forget_packages(("shared",))
        assert "shared" not in sys.modules and "shared.plugins" not in sys.modules
    finally:
        sys.modules.update(saved)
