"""Rule tables for the static security scan.

The tables are data: add a name here and :mod:`plughost.archive.scanner` enforces it. They
hold the contract's baseline (a floor) plus names that reach the same capabilities by another
door. Names are fully qualified after alias resolution (``from os import system as s`` makes
``s`` mean ``os.system``); names without a dot are builtins.
"""

from __future__ import annotations

from collections.abc import Mapping

BLOCKED_MODULES: frozenset[str] = frozenset(
    {
        # contract baseline
        "subprocess",
        "ctypes",
        "socket",
        "multiprocessing",
        "threading",
        # the same powers under other names
        "_thread",
        "_posixsubprocess",
        "_socket",
        "_ctypes",
        "_multiprocessing",
        "asyncio.subprocess",
        "cffi",
        "importlib",
        "zipimport",
        "runpy",
        "pty",
        "posix",
        "nt",
        "pickle",
        "_pickle",
        "shelve",
        "marshal",
        "builtins",
    }
)
"""Importing one of these, or any submodule of one, is a finding."""

BLOCKED_CALLS: frozenset[str] = frozenset(
    {
        # contract baseline
        "os.system",
        "os.popen",
        "eval",
        "exec",
        "open",
        "__import__",
        # the same powers under other names
        "breakpoint",
        "compile",
        "io.open",
        "io.open_code",
        "io.FileIO",
        "_io.open",
        "_io.FileIO",
        "os.open",
        "os.fdopen",
        "codecs.open",
        "asyncio.create_subprocess_exec",
        "asyncio.create_subprocess_shell",
        "sys._getframe",
    }
)
"""Calling, referencing or importing one of these fully qualified names is a finding."""

BLOCKED_CALL_PREFIXES: Mapping[str, tuple[str, ...]] = {
    "os": ("exec", "spawn", "fork", "posix_spawn"),
}
"""``module: prefixes``: any ``module.<prefix>...`` name is blocked (``os.execve``...)."""

BLOCKED_ATTRIBUTES: frozenset[str] = frozenset(
    {
        "__builtins__",
        "__subclasses__",
        "__globals__",
        "__code__",
        "f_globals",
        "f_builtins",
    }
)
"""Attributes (and bare names) that open a path around the other rules."""

UNSCANNABLE_SUFFIXES: tuple[str, ...] = (".pyc", ".pyo", ".so", ".pyd", ".dylib", ".dll")
"""Compiled or native code that Python can import but the scanner cannot read."""


def is_blocked_module(name: str) -> bool:
    """True when ``name`` is a blocked module or one of its submodules."""
    return any(name == blocked or name.startswith(blocked + ".") for blocked in BLOCKED_MODULES)


def is_blocked_call(qualified: str) -> bool:
    """True when the fully qualified name is a blocked function."""
    if qualified in BLOCKED_CALLS:
        return True
    module, _, attribute = qualified.rpartition(".")
    prefixes = BLOCKED_CALL_PREFIXES.get(module, ())
    return any(attribute.startswith(prefix) for prefix in prefixes)


def exposes_blocked_names(module: str) -> bool:
    """True when ``from module import *`` would bind a blocked function."""
    if module in BLOCKED_CALL_PREFIXES:
        return True
    return any(name.startswith(module + ".") for name in BLOCKED_CALLS)
