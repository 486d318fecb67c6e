"""The replica's command line: the plain parser must read exactly what argparse reads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from plughost.backends.local.replica import ReplicaSpec, build_replica_command
from plughost.replica.main import _parse_plain, argument_parser, parse_args


def _backend_argv(**spec: object) -> list[str]:
    command = build_replica_command(
        ReplicaSpec(plugin_dir=Path("/p"), socket_path=Path("/s/r.sock"), **spec),  # type: ignore[arg-type]
        listen_fd=5,
    )
    return command[command.index("plughost.replica") + 1 :]


@pytest.mark.parametrize(
    "argv",
    [
        _backend_argv(),
        _backend_argv(init_kwargs={"a": [1, 2]}, drain_timeout_s=2.5, requirements=("numpy>=1",)),
        ["--socket", "/x.sock"],
        ["--socket", "/x.sock", "--socket", "/y.sock", "--drain-timeout", "3"],
    ],
)
def test_the_plain_parser_agrees_with_argparse(argv: list[str]) -> None:
    plain = _parse_plain(argv)
    assert plain is not None
    assert vars(plain) == vars(argument_parser().parse_args(argv))


@pytest.mark.parametrize(
    "argv",
    [
        [],  # --socket missing
        ["--socket=/x.sock"],
        ["--sock", "/x.sock"],
        ["--socket", "/x.sock", "--drain-timeout", "soon"],
        ["--socket", "/x.sock", "--init-kwargs", "-1"],
        ["--help"],
    ],
)
def test_anything_else_goes_to_argparse(argv: list[str]) -> None:
    assert _parse_plain(argv) is None
    try:
        expected = vars(argument_parser().parse_args(argv))
    except SystemExit as exc:
        with pytest.raises(SystemExit) as got:
            parse_args(argv)
        assert got.value.code == exc.code
    else:
        assert vars(parse_args(argv)) == expected


def test_an_idle_replica_does_not_import_start_up_only_modules() -> None:
    probe = (
        "import sys; import plughost.replica.main as m; "
        "m.parse_args(['--socket', '/x.sock']); m.check_requirements('[]', __import__('pathlib').Path('.')); "
        "print(sorted(n for n in ('argparse', 'importlib.metadata', 'plughost.sandbox.runner') if n in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-I", "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
