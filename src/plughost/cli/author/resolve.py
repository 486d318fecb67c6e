"""Pure helpers of the author's CLI: which plugin a PLUGIN argument means, JSON
arguments. No network and no server, so the unit tests pin them directly."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from plughost.cli.author.errors import CliError

FINAL_STATUSES = frozenset({"deployed", "failed", "not_deployed"})


def version_key(version: str) -> tuple[int, ...]:
    """Numeric sort key of an `X.Y.Z` version (a part that is not a number counts as 0)."""
    parts = version.lstrip("vV").split(".")
    return tuple(int(p) if p.isdigit() else 0 for p in parts)


def resolve_plugin(plugins: Iterable[Mapping[str, Any]], ref: str) -> Mapping[str, Any]:
    """The listed plugin ``ref`` names: an exact plugin_id, else the newest version of the
    name ``ref`` (highest version, then latest created_at). Raises CliError when none."""
    rows = list(plugins)
    for row in rows:
        if row.get("plugin_id") == ref:
            return row
    named = [row for row in rows if row.get("name") == ref]
    if not named:
        raise CliError(f"no plugin with id or name {ref!r} in this namespace")
    return max(
        named, key=lambda r: (version_key(str(r.get("version", ""))), str(r.get("created_at")))
    )


def parse_json_object(value: str | None, what: str) -> dict[str, Any] | None:
    """A JSON object given inline or as ``@path``; None when ``value`` is None."""
    if value is None:
        return None
    text = value
    if value.startswith("@"):
        try:
            text = Path(value[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            raise CliError(f"{what}: cannot read {value[1:]}: {exc.strerror}") from exc
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(f"{what} is not valid JSON: {exc}") from exc
    if not isinstance(parsed, dict):
        raise CliError(f"{what} must be a JSON object, got {type(parsed).__name__}")
    return parsed


def parse_secrets(pairs: Iterable[str] | None) -> dict[str, str]:
    """``--secret NAME=VALUE`` options as a dict (a later NAME wins); CliError naming the
    option (never its value) when one has no ``=`` or an empty name."""
    secrets: dict[str, str] = {}
    for position, pair in enumerate(pairs or [], 1):
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise CliError(f"--secret number {position} must be NAME=VALUE")
        secrets[name.strip()] = value
    return secrets


def is_final(status: Mapping[str, Any]) -> bool:
    """Whether a status document is a final state (deployed, failed, not_deployed)."""
    return str(status.get("status")) in FINAL_STATUSES
