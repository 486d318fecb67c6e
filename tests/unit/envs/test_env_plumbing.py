"""How a built environment reaches a replica: the worker argument, the read-only bind in
bubblewrap, and the worker putting it on sys.path after site-packages."""

from __future__ import annotations

import subprocess
from pathlib import Path

from plughost.backends.local.replica import ReplicaSpec, build_replica_command
from plughost.replica.main import _parse_plain
from plughost.sandbox.bwrap import ENV_MOUNT, MountPlan, bwrap_command
from plughost.sandbox.policy import SandboxLaunch


def _spec(tmp_path: Path, **kw: object) -> ReplicaSpec:
    return ReplicaSpec(plugin_dir=tmp_path, socket_path=tmp_path / "r.sock", **kw)  # type: ignore[arg-type]


def _after(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def test_the_worker_gets_the_environment_path(tmp_path: Path) -> None:
    env = tmp_path / "envs" / "abc" / "site"
    assert "--env-path" not in build_replica_command(_spec(tmp_path))
    assert _after(build_replica_command(_spec(tmp_path, env_path=env)), "--env-path") == str(env)


def test_a_sandboxed_worker_sees_the_environment_at_its_mount(tmp_path: Path) -> None:
    launch = SandboxLaunch(("bwrap", "--"), "/plugin", "{}", {}, None)
    argv = build_replica_command(_spec(tmp_path, env_path=tmp_path / "site", sandbox=launch))
    assert _after(argv, "--env-path") == ENV_MOUNT


def test_bubblewrap_binds_the_environment_read_only(tmp_path: Path) -> None:
    plan = MountPlan(plugin_dir=tmp_path, runtime_paths=(), env_dir=tmp_path / "site")
    argv = bwrap_command("bwrap", plan)
    at = argv.index(ENV_MOUNT)
    assert argv[at - 2 : at + 1] == ["--ro-bind", str(tmp_path / "site"), ENV_MOUNT]
    assert ENV_MOUNT not in bwrap_command("bwrap", MountPlan(tmp_path, runtime_paths=()))


def test_the_plain_parser_takes_the_environment_path() -> None:
    args = _parse_plain(["--socket", "/x.sock", "--env-path", "/plugin-env"])
    assert args is not None and args.env_path == "/plugin-env"


def test_a_replica_imports_from_the_environment_after_site_packages(tmp_path: Path) -> None:
    """The worker appends the environment to sys.path before the requirement check: a
    distribution there satisfies the manifest, and a module there that shadows the base set
    (orjson) does not win."""
    env, plugin = tmp_path / "site", tmp_path / "plugin"
    (env / "fakedist-1.0.dist-info").mkdir(parents=True)
    (env / "fakedist-1.0.dist-info" / "METADATA").write_text("Name: fakedist\nVersion: 1.0\n")
    (env / "fakedist.py").write_text("WHERE = 'env'\n")
    (env / "orjson.py").write_text("raise RuntimeError('shadowed the base set')\n")
    plugin.mkdir()
    (plugin / "realtime.py").write_text(
        "import fakedist, orjson\n"
        "class EnvInferenceService:\n"
        "    def run_inference(self, inputs, parameters):\n"
        "        return fakedist.WHERE\n"
    )
    argv = build_replica_command(
        _spec(plugin, env_path=env, requirements=("fakedist==1.0",), start_timeout_s=30)
    )
    proc = subprocess.Popen(argv, cwd=plugin, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
    finally:
        proc.kill()
        proc.wait(10)
    assert '"event":"ready"' in line, (line, proc.stderr.read().decode() if proc.stderr else "")
