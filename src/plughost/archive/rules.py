"""Rule tables for the static security scan.

The tables are data: add a name here and the scanner enforces it. They hold the contract's
baseline (a floor) plus names that reach the same capabilities by another door. Names are
fully qualified after alias resolution (``from os import system as s`` makes ``s`` mean
``os.system``); names without a dot are builtins.

Standard library only: the scan child loads this module by path, outside the plughost package.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

BLOCKED_MODULES: frozenset[str] = frozenset(
    {
        # contract baseline
        "subprocess",
        "ctypes",
        "socket",
        "multiprocessing",
        "threading",
        # processes, threads, sockets and native code under other names
        "_thread",
        "_posixsubprocess",
        "_socket",
        "_ctypes",
        "_multiprocessing",
        "asyncio.subprocess",
        "concurrent.futures.process",
        "cffi",
        "pty",
        "posix",
        "nt",
        "webbrowser",
        # importing by computed name, or loading code the scanner never sees
        "importlib",
        "imp",
        "zipimport",
        "pkgutil",
        "runpy",
        "site",
        "pydoc",
        "logging.config",
        # running code held in strings
        "code",
        "codeop",
        "timeit",
        "pdb",
        "bdb",
        "trace",
        "profile",
        "cProfile",
        "doctest",
        # deserialisers that run code named by their data
        "pickle",
        "_pickle",
        "shelve",
        "marshal",
        "dill",
        "cloudpickle",
        "joblib",
        # reaching every object of the interpreter
        "builtins",
        "gc",
        # the host's internals are not a plugin API (plugins get the runtime API: shared.*
        # and engine.*, see docs/plugin-runtime.md)
        "plughost",
    }
)
"""Importing one of these, or any submodule of one, is a finding."""

COMMON_ATTRIBUTE_WORDS: frozenset[str] = frozenset(
    {"code", "codeop", "trace", "profile", "site", "gc", "imp", "nt", "bdb", "pdb", "doctest"}
)
"""Blocked module names that are also ordinary attribute names (``opentelemetry.trace``):
importing them is still refused, but reaching them as an attribute of another module is not
reported."""

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
        "help",
        "io.open",
        "io.open_code",
        "io.FileIO",
        "_io.open",
        "_io.FileIO",
        "os.open",
        "os.fdopen",
        "os.kill",
        "os.killpg",
        "codecs.open",
        "asyncio.create_subprocess_exec",
        "asyncio.create_subprocess_shell",
        "concurrent.futures.ProcessPoolExecutor",
        "types.CodeType",
        "types.FunctionType",
        # the interpreter's import machinery, frames and hooks
        "sys.modules",
        "sys.meta_path",
        "sys.path_hooks",
        "sys.path_importer_cache",
        "sys._getframe",
        "sys.settrace",
        "sys.setprofile",
        "sys.breakpointhook",
        "inspect.currentframe",
        "inspect.stack",
        "inspect.trace",
        "inspect.getouterframes",
        "inspect.getinnerframes",
    }
)
"""Calling, referencing or importing one of these fully qualified names is a finding."""

BLOCKED_CALL_PREFIXES: Mapping[str, tuple[str, ...]] = {
    "os": ("exec", "spawn", "fork", "posix_spawn"),
}
"""``module: prefixes``: any ``module.<prefix>...`` name is blocked (``os.execve``...)."""

BLOCKED_ATTRIBUTES: frozenset[str] = frozenset(
    {
        # frames and code objects: the way from any function to its module's globals
        "f_globals",
        "f_builtins",
        "f_locals",
        "f_back",
        "f_code",
        "gi_frame",
        "gi_code",
        "cr_frame",
        "cr_code",
        "ag_frame",
        "ag_code",
        "tb_frame",
        # event-loop methods that start processes (loop.subprocess_exec(...))
        "subprocess_exec",
        "subprocess_shell",
    }
)
"""Attributes (and bare names) refused on any object, besides unsafe dunder names."""

SAFE_DUNDER_NAMES: frozenset[str] = frozenset(
    {
        # identity and documentation
        "__name__",
        "__qualname__",
        "__module__",
        "__doc__",
        "__file__",
        "__path__",
        "__package__",
        "__version__",
        "__author__",
        "__all__",
        "__main__",
        "__pycache__",
        "__debug__",
        "__annotations__",
        "__slots__",
        "__wrapped__",
        # classes and objects
        "__class__",
        "__dict__",
        "__mro__",
        "__bases__",
        "__base__",
        "__init__",
        "__new__",
        "__post_init__",
        "__init_subclass__",
        "__set_name__",
        "__class_getitem__",
        "__setattr__",
        "__delattr__",
        "__get__",
        "__set__",
        "__delete__",
        "__dir__",
        "__sizeof__",
        "__copy__",
        "__deepcopy__",
        "__getstate__",
        "__setstate__",
        # typing and pydantic introspection
        "__args__",
        "__origin__",
        "__parameters__",
        "__orig_bases__",
        "__fields__",
        "__fields_set__",
        "__config__",
        "__root__",
        "__dataclass_fields__",
        "__signature__",
        # protocols
        "__call__",
        "__enter__",
        "__exit__",
        "__aenter__",
        "__aexit__",
        "__await__",
        "__iter__",
        "__next__",
        "__aiter__",
        "__anext__",
        "__len__",
        "__length_hint__",
        "__getitem__",
        "__setitem__",
        "__delitem__",
        "__missing__",
        "__contains__",
        "__reversed__",
        "__repr__",
        "__str__",
        "__format__",
        "__bytes__",
        "__hash__",
        "__bool__",
        "__fspath__",
        "__array__",
        "__array_interface__",
        "__cuda_array_interface__",
        "__dlpack__",
        "__dlpack_device__",
        # comparison and arithmetic
        "__eq__",
        "__ne__",
        "__lt__",
        "__le__",
        "__gt__",
        "__ge__",
        "__neg__",
        "__pos__",
        "__abs__",
        "__invert__",
        "__complex__",
        "__int__",
        "__float__",
        "__index__",
        "__round__",
        "__trunc__",
        "__floor__",
        "__ceil__",
        "__divmod__",
        "__rdivmod__",
        *(
            f"__{prefix}{operator}__"
            for prefix in ("", "r", "i")
            for operator in (
                "add",
                "sub",
                "mul",
                "matmul",
                "truediv",
                "floordiv",
                "mod",
                "pow",
                "lshift",
                "rshift",
                "and",
                "xor",
                "or",
            )
        ),
    }
)
"""Dunder names a plugin may use as an attribute, a bare name or inside a string.

Every other ``__name__``-shaped name is refused: that covers the introspection ways out
(``__subclasses__``, ``__globals__``, ``__builtins__``, ``__code__``, ``__closure__``,
``__self__`` of a builtin function (the builtins module), ``__getattribute__``, ``__loader__``,
``__spec__``, ``__reduce__``...) without having to list them. ``__dict__`` is allowed except
on an imported module, where it is a lookup by computed name.
"""

ATTRIBUTE_GETTERS: frozenset[str] = frozenset({"getattr", "setattr", "delattr"})
"""Builtins that reach an attribute by a name given as data; allowed only as direct calls."""

ATTRIBUTE_GETTER_FACTORIES: frozenset[str] = frozenset(
    {"operator.attrgetter", "operator.methodcaller"}
)
"""Callables built from attribute names; their names must be constant and allowed."""

NAMESPACE_GETTERS: frozenset[str] = frozenset({"globals", "locals", "vars"})
"""Builtins returning a namespace dictionary; see the scanner for how each may be used."""

COMPILED_SUFFIXES: tuple[str, ...] = (".pyc", ".pyo")
NATIVE_SUFFIXES: tuple[str, ...] = (".so", ".pyd", ".dylib", ".dll", ".exe")
PACKAGE_ARCHIVE_SUFFIXES: tuple[str, ...] = (".egg", ".whl", ".pyz", ".egg-link")
PATH_CONFIG_SUFFIXES: tuple[str, ...] = (".pth",)
UNSCANNABLE_SUFFIXES: tuple[str, ...] = (
    *COMPILED_SUFFIXES,
    *NATIVE_SUFFIXES,
    *PACKAGE_ARCHIVE_SUFFIXES,
    *PATH_CONFIG_SUFFIXES,
)
"""Files Python can import or act on but the scanner cannot read: refused by name."""

IMPORTABLE_SUFFIXES: tuple[str, ...] = (".py", ".pyc", ".pyo", ".pyw")
"""Member names that make a nested zip file importable through ``zipimport``."""

RESERVED_MODULES: Mapping[str, str] = {
    "plughost": "the plughost package",
    "plughost_plugin": "the package plughost loads plugins as",
    "shared": "plughost's 'shared' package (shared.plugins.inference.serve)",
    "engine": "plughost's 'engine' package (engine.plugins.extractors.pipeline)",
    "sitecustomize": "the interpreter's start-up hook",
    "usercustomize": "the interpreter's start-up hook",
}
"""Top-level module names a plugin may not define, with what each would shadow."""

_DUNDER = re.compile(r"__[A-Za-z0-9][A-Za-z0-9_]*?__")


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


def is_unsafe_name(name: str) -> bool:
    """True for an attribute or bare name the scanner refuses on any object."""
    if name in BLOCKED_ATTRIBUTES:
        return True
    return is_dunder(name) and name not in SAFE_DUNDER_NAMES


def is_dunder(name: str) -> bool:
    """True for a ``__name__``-shaped identifier."""
    return len(name) > 4 and name.startswith("__") and name.endswith("__")


def unsafe_names_in_text(text: str) -> list[str]:
    """Unsafe dunder or frame attribute names mentioned anywhere in ``text``, in order."""
    found = [name for name in _DUNDER.findall(text) if name not in SAFE_DUNDER_NAMES]
    found.extend(
        name
        for name in sorted(BLOCKED_ATTRIBUTES)
        if name.startswith(("f_", "gi_", "cr_", "ag_", "tb_")) and _mentions(text, name)
    )
    return list(dict.fromkeys(found))


def _mentions(text: str, name: str) -> bool:
    return re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", text) is not None
