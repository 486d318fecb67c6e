"""Source distributions in plugin environments: refused by default, built in a sandbox when
allowed.

Building an sdist runs its build script (``setup.py``, an in-tree build backend): code of the
package's author, on the server. With ``PLUGHOST_PLUGIN_ONLY_BINARY`` on (the default) uv
runs with ``--no-build`` and a dependency that has no wheel fails the release with
:func:`only_binary_message`, naming it. With it off, every uv step of the build runs inside
bubblewrap (:func:`sandbox_prefix`): an empty read-only root holding only the system folders,
the interpreter and the server's import path (read-only), a file index (read-only), and the
build's scratch folder (read-write, at ``/build``), where uv's cache also lives, so a build
script cannot reach ``$PLUGHOST_HOME``, write outside the build, or poison the cache other
environments share. All capabilities are dropped, and the process tree dies with the server.
The network is shared when the index is reached through it (an ``http(s)`` index: the build
script can reach what the server can), and unshared for a ``file://`` index.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

from plughost.sandbox.bwrap import MountPlan, bwrap_command, plughost_root, runtime_paths

BUILD_MOUNT = "/build"
PRIVATE_CACHE = ".uv-cache"
_NO_WHEEL = re.compile(
    r"([A-Za-z0-9][A-Za-z0-9._-]*?)(?:==[^\s,]+)?\s+(?:has no usable wheels|has no wheels)",
)
_NO_BUILD_HINTS = ("building from source is disabled", "--no-build", "no-build")


def only_binary_message(uv_text: str, requirements: tuple[str, ...] | list[str]) -> str | None:
    """The plain refusal when uv failed because a dependency exists only as an sdist (None
    when uv failed for another reason)."""
    flat = " ".join(uv_text.split())
    if not any(hint in flat for hint in _NO_BUILD_HINTS) and "no usable wheels" not in flat:
        return None
    names = list(dict.fromkeys(m.group(1) for m in _NO_WHEEL.finditer(flat)))
    which = ", ".join(names) if names else ", ".join(requirements)
    return (
        f"refused: {which} exists only as a source distribution, and this server installs "
        "wheels only (PLUGHOST_PLUGIN_ONLY_BINARY): building it would run its build script on "
        "the server. Use a version published as a wheel"
    )


def file_index_dir(index_url: str) -> Path | None:
    """The folder of a ``file://`` index, which the sandbox must see (the parent of a
    ``simple`` folder, where its files usually sit beside it); None for other URLs."""
    if not index_url.startswith("file:"):
        return None
    path = Path(unquote(urlparse(index_url).path)).resolve()
    path = path.parent if path.name == "simple" else path
    return path if path.exists() else None


def sandbox_prefix(
    bwrap: str, scratch: Path, index_url: str, hidden: tuple[Path, ...]
) -> list[str] | None:
    """``bwrap ... --`` running a uv step with ``scratch`` at ``/build``; None when bubblewrap
    is not installed."""
    found = shutil.which(bwrap)
    if found is None:
        return None
    index = file_index_dir(index_url)
    plan = MountPlan(
        plugin_dir=scratch,  # also read-only at /plugin (the working folder): harmless
        runtime_paths=runtime_paths([plughost_root()]),
        hidden=hidden,
        share_net=index is None,  # a file index needs no network, so the build gets none
        extra_ro=(index,) if index is not None else (),
    )
    argv = bwrap_command(found, plan)
    at = argv.index("--remount-ro")  # binds of our own go in before the root turns read-only
    own = ["--bind", str(scratch), BUILD_MOUNT, "--cap-drop", "ALL", "--new-session"]
    own += ["--setenv", "TMPDIR", f"{BUILD_MOUNT}/.tmp", "--setenv", "HOME", f"{BUILD_MOUNT}/.tmp"]
    return argv[:at] + own + argv[at:]


def inside(path: Path, scratch: Path) -> str:
    """``path`` (in ``scratch``) as the sandboxed uv sees it."""
    return str(Path(BUILD_MOUNT) / path.relative_to(scratch))
