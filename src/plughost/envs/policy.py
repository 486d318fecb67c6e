"""What a manifest's ``dependencies`` may name, checked before anything is resolved.

Refused (the release fails, naming the line): option lines (``-e``, ``-r``, ``-c``,
``--index-url``, ``--extra-index-url``, ``-f`` / ``--find-links``, any other ``-...``), direct
URLs (``pkg @ https://...``, ``git+...``, any ``scheme://``) and local paths (``./x``,
``../x``, ``/abs``, ``~/x``, ``file:``). A dependency is a name from the configured index,
with extras, versions and markers; nothing else can redirect where code comes from.

Warned about, never refused: a name one edit away (Damerau-Levenshtein distance 1, after PEP
503 normalisation) from one of the most-downloaded packages (:mod:`.popular`), the usual
shape of a typosquat (``requets``, ``numpyy``, ``pandsa``). Exact popular names are fine.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from plughost.envs.keying import BadRequirement
from plughost.envs.popular import POPULAR_PACKAGES

_DRIVE = re.compile(r"^[A-Za-z]:[\\/]")
_ARCHIVES = (".whl", ".zip", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".tar")
_VCS = ("git+", "hg+", "svn+", "bzr+")
_PATH_STARTS = ("./", "../", ".\\", "..\\", "/", "\\", "~")
_LEADING_NAME = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
POLICY_HINT = "a dependency names a package of the configured index (PLUGHOST_PLUGIN_INDEX_URL)"


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def refusal(entry: str) -> str | None:
    """Why the dependency line ``entry`` is refused, or None when it is a plain requirement."""
    text = entry.strip()
    if not text:
        return None
    if text.startswith("-"):
        return "an installer option line"
    lowered = text.lower()
    if lowered.startswith(_VCS):
        return "a version-control URL"
    if lowered.startswith("file:"):
        return "a local path (file:)"
    if text in (".", ".."):
        return "a local path"
    if text.startswith(_PATH_STARTS) or _DRIVE.match(text):
        return "a local path"
    if "://" in text:
        return "a direct URL"
    if lowered.split(";")[0].strip().endswith(_ARCHIVES):
        return "an archive file"
    if "@" in text.split(";")[0]:
        return "a direct URL (name @ url)"
    return None


def check_dependencies(entries: Iterable[str]) -> None:
    """BadRequirement naming the first dependency line the policy refuses."""
    for entry in entries:
        reason = refusal(entry)
        if reason is not None:
            raise BadRequirement(
                f"dependency {entry.strip()!r} is refused: {reason}; {POLICY_HINT}"
            )


def one_edit_apart(a: str, b: str) -> bool:
    """Whether the Damerau-Levenshtein (optimal string alignment) distance of ``a`` and
    ``b`` is exactly 1: one insertion, deletion, substitution or swap of neighbours."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diffs = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
        if len(diffs) == 1:
            return True
        i = diffs[0]
        return len(diffs) == 2 and diffs[1] == i + 1 and a[i] == b[i + 1] and a[i + 1] == b[i]
    short, long = (a, b) if len(a) < len(b) else (b, a)
    i = 0
    while i < len(short) and short[i] == long[i]:
        i += 1
    return short[i:] == long[i + 1 :]


def look_alike(name: str) -> str | None:
    """The popular package the (normalised) ``name`` is one edit away from, or None."""
    name = _normalise(name)
    if name in POPULAR_PACKAGES:
        return None
    for popular in sorted(POPULAR_PACKAGES):
        if one_edit_apart(name, popular):
            return popular
    return None


def typo_warnings(entries: Iterable[str]) -> list[str]:
    """One warning per dependency whose name looks like a popular package's, in order."""
    warnings: list[str] = []
    for entry in entries:
        match = _LEADING_NAME.match(entry)
        if match is None:
            continue
        popular = look_alike(match.group(1))
        if popular is not None:
            warnings.append(
                f"warning: dependency {match.group(1)!r} is one edit away from the popular "
                f"package {popular!r}; check its spelling (look-alike names are a common way "
                "to ship malware)"
            )
    return warnings
