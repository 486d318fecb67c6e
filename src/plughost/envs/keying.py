"""What a plugin environment holds and the key it is stored under.

An environment is keyed by the normalised set of requirements it installs, the interpreter
(implementation, version, platform), the index URL, whether source builds are allowed, and a
fingerprint of the base set (the server's own distributions, which the environment is
layered over and resolved against). Two releases whose manifests list the same missing
packages, in any order or spelling (``Foo_Bar>=1,<2`` and ``foo-bar<2,>=1``), share one.
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
from dataclasses import dataclass

# packaging is imported inside the functions that parse: the server starts without it, and it
# loads with the first requirement a plugin environment is planned for

KEY_CHARS = 24


class BadRequirement(ValueError):
    """A manifest dependency that is not a valid requirement string."""


def normalise_requirement(entry: str) -> str:
    """One PEP 508 requirement in canonical spelling: name normalised, extras sorted,
    specifiers sorted (packaging's own order), marker as packaging prints it."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    try:
        req = Requirement(entry.strip())
    except InvalidRequirement as exc:
        raise BadRequirement(f"invalid dependency {entry!r}: {exc}") from None
    text = canonicalize_name(req.name)
    if req.extras:
        text += "[" + ",".join(sorted(canonicalize_name(e) for e in req.extras)) + "]"
    if req.url:
        text += f" @ {req.url}"
    else:
        text += ",".join(sorted(str(s) for s in req.specifier))
    if req.marker is not None:
        text += f" ; {req.marker}"
    return text


def normalise_requirements(entries: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The sorted, de-duplicated canonical spelling of ``entries`` (blank ones dropped)."""
    return tuple(sorted({normalise_requirement(e) for e in entries if e.strip()}))


def base_distributions() -> dict[str, str]:
    """The base set: every distribution importable by the server's interpreter,
    canonical name -> version (versions that are not PEP 440 are left out)."""
    import importlib.metadata

    from packaging.utils import canonicalize_name
    from packaging.version import InvalidVersion, Version

    found: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"] if dist.metadata else None
        if not name:
            continue
        try:
            Version(dist.version)
        except InvalidVersion:
            continue
        found.setdefault(canonicalize_name(name), dist.version)
    return found


def requirement_name(pin: str) -> str:
    """The canonical distribution name of the requirement ``pin`` (``pin`` itself when it
    is not a requirement string)."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    try:
        return canonicalize_name(Requirement(pin).name)
    except InvalidRequirement:
        return pin


def constraints_text(base: dict[str, str]) -> str:
    """The base set as uv constraints: a plugin package that needs numpy gets the server's."""
    return "".join(f"{name}=={version}\n" for name, version in sorted(base.items()))


def interpreter_tag() -> str:
    """Implementation, version and platform: what decides which wheels fit."""
    impl = sys.implementation.name
    major, minor = sys.version_info[:2]
    return f"{impl}-{major}.{minor}-{sys.platform}-{platform.machine()}"


@dataclass(frozen=True)
class EnvKey:
    """The inputs of one environment and their hash (its folder name)."""

    requirements: tuple[str, ...]
    interpreter: str
    index_url: str
    build_sdists: bool
    base_fingerprint: str

    @property
    def digest(self) -> str:
        payload = json.dumps(
            {
                "requirements": list(self.requirements),
                "interpreter": self.interpreter,
                "index_url": self.index_url,
                "build_sdists": self.build_sdists,
                "base": self.base_fingerprint,
            },
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:KEY_CHARS]


def fingerprint(base: dict[str, str]) -> str:
    return hashlib.sha256(constraints_text(base).encode()).hexdigest()[:16]
