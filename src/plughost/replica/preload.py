"""What a warm spare imports ahead of its byte: the plugin's dependencies.

A replica learns them while it loads the plugin: the top-level modules that the load added
to ``sys.modules`` and that live outside the plugin folder and the runtime API (torch,
sentence_transformers, numpy: never the plugin's own code), and the environment variables
the load set (a plugin that sets ``HF_HUB_OFFLINE`` before importing a hub library must see
it set when the spare imports that library). It sends them in its ready handshake; the group
passes the latest to its next spare (``--preload``), which, once inside every sandbox layer,
sets those variables and imports those modules, then waits. A variable whose name looks like
a credential (``HF_TOKEN``, ``OPENAI_API_KEY``) is not learned: the list is on the spare's
command line. On MiniLM the import of sentence_transformers and torch is most of a start
(``bench.elastic``: ``cold_minilm``).

The list comes from a replica of the same release and is imported only in that release's
own sandbox, so it grants nothing its code could not do anyway. An import that fails is
skipped (the plugin's load then fails or not, as it would have); the list is bounded.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

MAX_MODULES = 400
MAX_ENV = 64
MAX_VALUE_CHARS = 4096
SKIP = frozenset({"__main__", "__mp_main__"})


_baseline: tuple[frozenset[str], dict[str, str]] | None = None


def mark_baseline() -> None:
    """A spare, before it applies what it was given: the worker learns against this state,
    so a replica started from a spare passes the list on whole (not only what it added)."""
    global _baseline
    _baseline = (frozenset(sys.modules), dict(os.environ))


def baseline() -> tuple[frozenset[str], dict[str, str]]:
    """The modules and environment to learn against: the spare's mark, else now."""
    return _baseline if _baseline is not None else (frozenset(sys.modules), dict(os.environ))


def _inside(path: str | None, folders: Iterable[Path]) -> bool:
    if not path:
        return False
    resolved = Path(path).resolve()
    return any(resolved.is_relative_to(folder) for folder in folders)


def _module_file(module: Any) -> str | None:
    file = getattr(module, "__file__", None)
    if file:
        return str(file)
    paths = getattr(module, "__path__", None)  # a namespace package: its first folder
    try:
        return str(next(iter(paths))) if paths is not None else None
    except (StopIteration, TypeError):
        return None


def learn(
    before: Iterable[str],
    env_before: dict[str, str],
    own_folders: Iterable[Path],
    skip_prefixes: tuple[str, ...] = (),
) -> dict[str, Any]:
    """``{"modules": [...], "env": {...}}``: top-level modules imported since ``before`` that
    are not under ``own_folders`` (the plugin folder, the runtime API) nor named with one of
    ``skip_prefixes``, in import order; and the variables set or changed since ``env_before``."""
    folders = [Path(f).resolve() for f in own_folders]
    seen = set(before)
    tops: dict[str, None] = {}
    for name in list(sys.modules):
        if name in seen:
            continue
        top = name.partition(".")[0]
        if top in tops or top in SKIP or not top.isidentifier() or top.startswith(skip_prefixes):
            continue
        module = sys.modules.get(top)
        if module is None or _inside(_module_file(module), folders):
            continue
        tops[top] = None
        if len(tops) == MAX_MODULES:
            break
    env = {k: v for k, v in os.environ.items() if env_before.get(k) != v and _env_entry(k, v)}
    return {"modules": list(tops), "env": dict(list(env.items())[:MAX_ENV])}


# a variable named with one of these words is never learned: the list rides on the spare's
# command line, which every local user can read (/proc/PID/cmdline)
SECRET_WORDS = frozenset({
    "KEY", "APIKEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "PASS", "CREDENTIAL",
    "CREDENTIALS", "AUTH", "COOKIE", "SESSION", "PRIVATE", "DSN",
})


def _env_entry(key: Any, value: Any) -> bool:
    return (
        isinstance(key, str) and isinstance(value, str) and bool(key) and "=" not in key
        and "\0" not in key + value and len(key) + len(value) <= MAX_VALUE_CHARS
        and not SECRET_WORDS & set(key.upper().split("_"))
    )


def clean(spec: Any) -> dict[str, Any] | None:
    """What is kept of a replica's report (the server keeps it, the spare applies it): module
    names that are identifiers and string variables, bounded; None when nothing is left."""
    if not isinstance(spec, dict):
        return None
    modules = spec.get("modules")
    names = [
        m for m in (modules if isinstance(modules, list) else [])
        if isinstance(m, str) and m.isidentifier() and m not in SKIP
    ][:MAX_MODULES]
    env = spec.get("env")
    pairs = [(k, v) for k, v in (env.items() if isinstance(env, dict) else ()) if _env_entry(k, v)]
    if not names and not pairs:
        return None
    return {"modules": names, "env": dict(pairs[:MAX_ENV])}


def apply(spec: Any) -> list[str]:
    """Set ``spec["env"]`` and import ``spec["modules"]`` (what :func:`clean` keeps of them),
    with fd 1 and ``sys.stdout`` on stderr meanwhile (the handshake's channel stays clean);
    the names that failed."""
    kept = clean(spec)
    if kept is None:
        return []
    os.environ.update(kept["env"])
    failed: list[str] = []
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        for name in kept["modules"]:
            try:
                importlib.import_module(name)
            except BaseException:  # noqa: BLE001 - the plugin's load meets it again, or not
                failed.append(name)
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
    return failed
