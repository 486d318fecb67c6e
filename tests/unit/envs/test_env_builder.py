"""Unit tests of the plugin environment builder: keying, reuse, atomic and single builds,
uv's failure message, cancellation and the off switch. uv is replaced by a fake script with
the same command line (resolves every bare name to ``==1.0``, fails on names containing
``no-such``, sleeps on names containing ``slow``) that logs each call."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from plughost.config import Settings
from plughost.envs import BadRequirement, EnvBuilder, EnvBuildFailed, PluginEnvironments
from plughost.envs.builder import uv_message
from plughost.envs.keying import normalise_requirement, normalise_requirements

FAKE_UV = '''#!{python}
import pathlib, sys, time
log = pathlib.Path({log!r})
args = sys.argv[1:]
with log.open("a") as f:
    f.write(" ".join(args) + "\\n")
command = args[1]
if command == "compile":
    wanted = pathlib.Path(args[2]).read_text().split()
    for name in wanted:
        if "slow" in name:
            time.sleep(300)
        if "no-such" in name:
            sys.stderr.write("\\x1b[31merror\\x1b[0m: No solution found when resolving dependencies\\n")
            sys.stderr.write(f"  cause: Because {{name}} was not found in the package registry\\n")
            sys.exit(1)
    print("# resolved")
    for name in wanted:
        print(name if "==" in name else name + "==1.0")
    print("numpy==2.0")  # a dependency the base set already has
else:
    target = pathlib.Path(args[args.index("--target") + 1])
    for pin in args[args.index("--no-deps") + 1:]:
        if pin.startswith("-"):
            break
        name = pin.split("==")[0].replace("-", "_")
        (target / f"{{name}}.py").write_text("VALUE = 42\\n")
        (target / f"{{name}}-1.0.dist-info").mkdir()
'''


@pytest.fixture
def uv_log(tmp_path: Path) -> Path:
    return tmp_path / "uv.log"


@pytest.fixture
def builder(tmp_path: Path, uv_log: Path) -> EnvBuilder:
    fake = tmp_path / "uv"
    fake.write_text(FAKE_UV.format(python=sys.executable, log=str(uv_log)))
    fake.chmod(0o755)
    return EnvBuilder(root=tmp_path / "envs", cache_dir=tmp_path / "cache", uv=str(fake))


def _calls(log: Path, command: str) -> list[str]:
    if not log.exists():
        return []
    return [line for line in log.read_text().splitlines() if line.startswith(f"pip {command}")]


def test_requirements_normalise_across_spellings() -> None:
    assert normalise_requirement("Foo_Bar>=1,<2") == normalise_requirement("foo-bar <2, >=1")
    assert normalise_requirement("pkg[B,a]==1") == "pkg[a,b]==1"
    assert normalise_requirements(["b", "A", "a", " "]) == ("a", "b")
    with pytest.raises(BadRequirement, match="invalid dependency '==2'"):
        normalise_requirement("==2")


def test_only_what_the_base_set_lacks_is_planned(builder: EnvBuilder) -> None:
    assert builder.plan(("numpy", "pandas>=1", "orjson")) is None
    plan = builder.plan(("numpy", "Plughost_Fake_Pkg>=1"))
    assert plan is not None
    assert plan.requirements == ("plughost-fake-pkg>=1",)


def test_same_set_same_key_and_inputs_change_it(builder: EnvBuilder, tmp_path: Path) -> None:
    a = builder.plan(("fake-a", "fake_b==1"))
    b = builder.plan(("Fake_B==1", "numpy", "FAKE-A"))
    assert a is not None and b is not None and a.folder == b.folder
    other = builder.plan(("fake-a",))
    assert other is not None and other.folder != a.folder
    indexed = EnvBuilder(root=builder.root, cache_dir=builder.cache_dir, index_url="http://idx/")
    moved = indexed.plan(("fake-a", "fake_b==1"))
    assert moved is not None and moved.folder != a.folder


def test_a_built_environment_is_reused(builder: EnvBuilder, uv_log: Path) -> None:
    plan = builder.plan(("fake-pkg",))
    assert plan is not None and not plan.exists()
    site = asyncio.run(builder.ensure(plan))
    assert (site / "fake_pkg.py").is_file() and plan.exists()
    assert not (site / "numpy.py").exists()  # the base set's numpy is not installed again
    meta = json.loads((plan.folder / "env.json").read_text())
    assert meta["installed"] == ["fake-pkg==1.0"]
    assert "numpy==2.0" in meta["resolved"]
    again = builder.plan(("fake_pkg",))
    assert again is not None and asyncio.run(builder.ensure(again)) == site
    assert len(_calls(uv_log, "compile")) == 1 and len(_calls(uv_log, "install")) == 1
    assert [p.name for p in builder.root.iterdir()] == [plan.folder.name]  # no scratch left


def test_uv_gets_the_base_set_as_constraints_and_the_settings(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, plugin_index_url="http://idx.example/simple")
    b = EnvBuilder.from_settings(settings)
    argv = b._uv_argv("compile", ("in.txt",))
    assert argv[1:4] == ["pip", "compile", "in.txt"]
    assert ["--index-url", "http://idx.example/simple"] == argv[argv.index("--index-url") :][:2]
    assert "--no-build" in argv and "--no-config" in argv
    assert argv[argv.index("--cache-dir") + 1] == str(tmp_path.resolve() / "uv-cache")
    sdists = EnvBuilder.from_settings(Settings(home=tmp_path, plugin_build_sdists=True))
    assert "--no-build" not in sdists._uv_argv("install", ())


def test_concurrent_rollouts_of_one_set_build_once(builder: EnvBuilder, uv_log: Path) -> None:
    async def both() -> list[Path]:
        plans = [builder.plan(("fake-pkg",)), builder.plan(("Fake_Pkg",))]
        return await asyncio.gather(*(builder.ensure(p) for p in plans if p is not None))

    first, second = asyncio.run(both())
    assert first == second
    assert len(_calls(uv_log, "install")) == 1


def test_unresolvable_package_fails_with_uvs_message(builder: EnvBuilder) -> None:
    plan = builder.plan(("plughost-no-such-package-xyz==1.0",))
    assert plan is not None
    with pytest.raises(EnvBuildFailed) as info:
        asyncio.run(builder.ensure(plan))
    text = str(info.value)
    assert text.startswith("could not install the plugin's dependencies (")
    assert "No solution found" in text and "plughost-no-such-package-xyz" in text
    assert "\x1b[" not in text
    assert not plan.exists() and list(builder.root.iterdir()) == []


def test_uv_message_drops_noise_and_keeps_the_end() -> None:
    raw = "Using CPython 3.11.7\nResolved 3 packages in 5ms\n\n  \x1b[1merror\x1b[0m: boom\n"
    assert uv_message(raw) == "  error: boom"
    long = uv_message("x" * 5000)
    assert long.startswith("...") and len(long) == 2003


def test_cancelling_a_build_kills_uv_and_leaves_nothing(
    builder: EnvBuilder, uv_log: Path
) -> None:
    plan = builder.plan(("fake-slow-pkg",))
    assert plan is not None

    async def cancel_soon() -> None:
        task = asyncio.create_task(builder.ensure(plan))
        while not _calls(uv_log, "compile"):  # until uv runs (and sleeps 300 s)
            assert not task.done(), task
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    # far below uv's 300 s: only a build that killed uv ends within it
    asyncio.run(asyncio.wait_for(cancel_soon(), 60))
    assert not plan.exists() and list(builder.root.iterdir()) == []


def test_installation_off_plans_nothing(tmp_path: Path) -> None:
    off = EnvBuilder.from_settings(Settings(home=tmp_path, plugin_install=False))
    assert off.plan(("fake-pkg",)) is None


def test_stage_says_build_then_reuse_and_counts_the_build_in_the_eta(
    builder: EnvBuilder,
) -> None:
    envs = PluginEnvironments(builder)
    notes: list[str] = []
    seen_eta: list[float | None] = []

    async def note(message: str) -> None:
        notes.append(message)
        seen_eta.append(envs.build_seconds_left(7))

    async def twice() -> tuple[Path | None, Path | None]:
        first = await envs.prepare(7, ("fake-pkg", "numpy"), None, note)
        return first, await envs.prepare(8, ("fake_pkg",), None, note)

    first, second = asyncio.run(twice())
    assert first is not None and first == second
    assert notes[0] == "building the plugin environment: 1 package (fake-pkg)"
    assert notes[1].startswith("reusing the plugin environment ")
    assert seen_eta[0] is not None and seen_eta[0] >= 1
    assert envs.build_seconds_left(7) is None
    assert asyncio.run(envs.prepare(9, ("numpy",), None, note)) is None
    assert len(notes) == 2
