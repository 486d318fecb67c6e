"""Build plugin environments with uv: the manifest dependencies the base set lacks, installed
into a folder of their own that replicas put on ``sys.path`` after the server's site-packages.

Layout under ``$PLUGHOST_HOME/envs``: ``<key>/site`` (the import folder, mounted read-only
into replicas) and ``<key>/env.json`` (what it holds and how long it took to build). A build
happens in a temporary folder beside it and is renamed into place, so a folder that exists
is complete; one asyncio lock per key makes concurrent rollouts of the same set build once.

Two uv steps, both given the base set as constraints (so versions agree with what the server
runs): ``uv pip compile`` resolves the whole set (metadata only), then ``uv pip install
--target --no-deps`` installs the resolved packages the base set does not already have. A
package depending on numpy therefore uses the server's numpy and never downloads one.
Source distributions are refused while ``plugin_only_binary`` is on (the default): building
one runs its code. With it off they are built, every uv step running in bubblewrap
(:mod:`.sdists`). Dependencies that are URLs, paths or installer options are refused before
anything runs, and look-alikes of popular names are warned about (:mod:`.policy`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import shutil
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from plughost.config import Settings
from plughost.envs.keying import (
    EnvKey,
    base_distributions,
    constraints_text,
    fingerprint,
    interpreter_tag,
    normalise_requirements,
    requirement_name,
)
from plughost.envs.policy import check_dependencies
from plughost.envs.sdists import PRIVATE_CACHE, inside, only_binary_message, sandbox_prefix
from plughost.sandbox.requirements import missing_requirements

log = logging.getLogger("plughost.envs")

SITE = "site"
META = "env.json"
DEFAULT_S_PER_PACKAGE = 3.0
MAX_MESSAGE_CHARS = 2000
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_NOISE = ("Using CPython", "Using Python", "Resolved ", "Prepared ", "Installed ", "Audited ")


class EnvBuildFailed(Exception):
    """uv could not resolve, download or install the set; the message is uv's own."""


@dataclass(frozen=True)
class EnvPlan:
    """One environment a release needs: its key and where it lives."""

    key: EnvKey
    folder: Path

    @property
    def requirements(self) -> tuple[str, ...]:
        return self.key.requirements

    @property
    def site(self) -> Path:
        """The folder replicas put on ``sys.path``."""
        return self.folder / SITE

    def exists(self) -> bool:
        return (self.folder / META).is_file()


@dataclass
class EnvBuilder:
    """Plans and builds environments under ``root``; ``enabled`` False plans none."""

    root: Path
    cache_dir: Path
    index_url: str = ""
    build_sdists: bool = False
    timeout_s: float = 600.0
    enabled: bool = True
    uv: str = ""
    python: str = sys.executable
    bwrap: str = "bwrap"
    _base: dict[str, str] | None = None
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    _per_package_s: list[float] | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> EnvBuilder:
        return cls(
            root=settings.envs_dir,
            cache_dir=settings.uv_cache_dir,
            index_url=settings.plugin_index_url,
            build_sdists=settings.plugin_build_sdists or not settings.plugin_only_binary,
            bwrap=settings.sandbox_bwrap,
            timeout_s=settings.plugin_build_timeout_s,
            enabled=settings.plugin_install,
        )

    # -- planning (blocking: call in a thread) -----------------------------------------------
    def base(self) -> dict[str, str]:
        if self._base is None:
            self._base = base_distributions()
        return self._base

    def plan(self, entries: tuple[str, ...], plugin_dir: Path | None = None) -> EnvPlan | None:
        """The environment for the manifest ``entries`` the base set lacks; None when the
        base set has them all or installation is off (the replica then names what is missing).
        Raises BadRequirement for an entry that is not a requirement string, or one the
        policy refuses (a URL, a path, an option line: :mod:`.policy`), installation on or off."""
        check_dependencies(entries)
        if not self.enabled:
            return None
        missing = missing_requirements(list(entries), plugin_dir, installed=self.base())
        if not missing:
            return None
        key = EnvKey(
            requirements=normalise_requirements(missing),
            interpreter=interpreter_tag(),
            index_url=self.index_url,
            build_sdists=self.build_sdists,
            base_fingerprint=fingerprint(self.base()),
        )
        return EnvPlan(key, self.root / key.digest)

    def estimate_s(self, plan: EnvPlan) -> float:
        """Seconds a build of ``plan`` likely takes: the median per-package time of earlier
        builds (or a fixed figure) times its package count."""
        if self._per_package_s is None:
            self._per_package_s = _recorded_per_package(self.root)
        per = statistics.median(self._per_package_s) if self._per_package_s else None
        return max(1.0, (per or DEFAULT_S_PER_PACKAGE) * len(plan.requirements))

    # -- building ----------------------------------------------------------------------------
    async def ensure(self, plan: EnvPlan) -> Path:
        """The environment's import folder, built first when missing; raises EnvBuildFailed.
        Cancelling kills uv and leaves nothing behind."""
        if plan.exists():
            return plan.site
        lock = self._locks.setdefault(plan.folder.name, asyncio.Lock())
        async with lock:
            if not plan.exists():
                await self._build(plan)
        return plan.site

    async def _build(self, plan: EnvPlan) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f".build-{plan.folder.name}-", dir=self.root))
        started = time.monotonic()
        try:
            pins = await self._resolve(plan, scratch)
            install = [p for p in pins if requirement_name(p) not in self.base()]
            await self._install(install, scratch / SITE)
            seconds = time.monotonic() - started
            _write_meta(scratch, plan, pins, install, seconds)
            _publish(scratch, plan.folder)
        except BaseException:
            await asyncio.to_thread(shutil.rmtree, scratch, True)
            raise
        if self._per_package_s is not None:
            self._per_package_s.append(seconds / max(1, len(plan.requirements)))
        log.info("built plugin environment %s in %.1f s: %s", plan.folder.name, seconds, install)

    async def _resolve(self, plan: EnvPlan, scratch: Path) -> list[str]:
        (scratch / "requirements.in").write_text("".join(f"{r}\n" for r in plan.requirements))
        (scratch / "base.txt").write_text(constraints_text(self.base()))
        out = await self._uv(
            "compile",
            self._path(scratch / "requirements.in", scratch),
            "--constraints",
            self._path(scratch / "base.txt", scratch),
            "--no-header",
            "--no-annotate",
            requirements=plan.requirements,
            scratch=scratch,
        )
        return [line.strip() for line in out.splitlines() if line.strip() and line[0] != "#"]

    async def _install(self, pins: list[str], site: Path) -> None:
        site.mkdir()
        if pins:
            target = self._path(site, site.parent)
            await self._uv(
                "install", "--target", target, "--no-deps", *pins, requirements=pins,
                scratch=site.parent,
            )  # fmt: skip

    def _path(self, path: Path, scratch: Path) -> str:
        """``path`` as uv sees it: in the sandbox of sdist builds, the scratch is /build."""
        return inside(path, scratch) if self.build_sdists else str(path)

    def _uv_argv(self, command: str, args: tuple[str, ...], cache: str = "") -> list[str]:
        argv = [self.uv or _find_uv(), "pip", command, *args]
        argv += ["--python", self.python, "--cache-dir", cache or str(self.cache_dir)]
        argv += ["--no-config"]
        argv += ["--quiet"] if command == "compile" else []
        if self.index_url:
            argv += ["--index-url", self.index_url]
        if not self.build_sdists:
            argv.append("--no-build")
        return argv

    def _sandboxed(self, command: str, args: tuple[str, ...], scratch: Path) -> list[str]:
        """The argv of a uv step that may build sdists: inside bubblewrap (:mod:`.sdists`),
        with a cache of its own in the scratch folder."""
        prefix = sandbox_prefix(self.bwrap, scratch, self.index_url, (self.root.parent,))
        if prefix is None:
            raise EnvBuildFailed(
                "building source distributions (PLUGHOST_PLUGIN_ONLY_BINARY off) needs "
                f"bubblewrap, and {self.bwrap!r} is not installed"
            )
        (scratch / ".tmp").mkdir(exist_ok=True)
        cache = inside(scratch / PRIVATE_CACHE, scratch)
        return [*prefix, *self._uv_argv(command, args, cache)]

    async def _uv(
        self,
        command: str,
        *args: str,
        requirements: tuple[str, ...] | list[str],
        scratch: Path | None = None,
    ) -> str:
        """Run one ``uv pip`` command; its stdout. Raises EnvBuildFailed with uv's message
        (the plain refusal when only wheels are allowed and a dependency has none)."""
        if self.build_sdists and scratch is not None:
            argv = self._sandboxed(command, args, scratch)
        else:
            argv = self._uv_argv(command, args)
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        try:
            async with asyncio.timeout(self.timeout_s):
                out, err = await proc.communicate()
        except BaseException as exc:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await asyncio.shield(proc.wait())
            if isinstance(exc, TimeoutError):
                raise EnvBuildFailed(
                    f"installing {', '.join(requirements)} took over {self.timeout_s:g} s"
                ) from None
            raise
        if proc.returncode != 0:
            text = uv_message(err.decode("utf-8", "replace"))
            refused = None if self.build_sdists else only_binary_message(text, requirements)
            raise EnvBuildFailed(
                f"could not install the plugin's dependencies ({', '.join(requirements)}): "
                + (refused or text)
            )
        return out.decode("utf-8", "replace")


def uv_message(stderr: str) -> str:
    """uv's error text without colours, progress lines or blank lines, at most 2,000 chars
    (its end, where the cause is)."""
    lines = [_ANSI.sub("", line).rstrip() for line in stderr.splitlines()]
    kept = [x for x in lines if x.strip() and not x.lstrip().startswith(_NOISE)]
    text = "\n".join(kept) or "uv failed without a message"
    return text if len(text) <= MAX_MESSAGE_CHARS else "..." + text[-MAX_MESSAGE_CHARS:]


def _find_uv() -> str:
    from uv import find_uv_bin

    return find_uv_bin()


def _write_meta(
    scratch: Path, plan: EnvPlan, pins: list[str], install: list[str], seconds: float
) -> None:
    meta = {
        "requirements": list(plan.requirements),
        "resolved": pins,
        "installed": install,
        "interpreter": plan.key.interpreter,
        "index_url": plan.key.index_url,
        "build_seconds": round(seconds, 3),
    }
    (scratch / META).write_text(json.dumps(meta, indent=1))
    for leftover in ("requirements.in", "base.txt", f"{SITE}/.lock"):
        (scratch / leftover).unlink(missing_ok=True)
    for folder in (PRIVATE_CACHE, ".tmp"):  # of sandboxed sdist builds
        shutil.rmtree(scratch / folder, ignore_errors=True)


def _publish(scratch: Path, folder: Path) -> None:
    """Rename the finished build into place (replicas run as another uid: world-readable)."""
    os.chmod(scratch, 0o755)
    try:
        os.rename(scratch, folder)
    except OSError:
        if not (folder / META).is_file():
            raise
        shutil.rmtree(scratch, ignore_errors=True)  # another process finished it first


def _recorded_per_package(root: Path) -> list[float]:
    """Per-package build seconds of the environments already on disk."""
    found: list[float] = []
    for meta in root.glob(f"*/{META}"):
        try:
            data = json.loads(meta.read_text())
            found.append(float(data["build_seconds"]) / max(1, len(data["requirements"])))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return found
