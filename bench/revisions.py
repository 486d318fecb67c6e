"""plughost at one git revision: its exported source, an interpreter that imports it, its
server, and every process that server started.

A replica is started as ``<server's interpreter> -I -m <replica module>`` and ``-I`` ignores
PYTHONPATH, so a revision is made importable by the interpreter itself: a throwaway venv whose
site-packages holds two .pth files, the exported ``src/`` first, then this checkout's
site-packages for the dependencies. A path line in a .pth only appends a folder to
``sys.path`` (the .pth files inside the appended folder are not read, so this checkout's own
editable install does not come along), and the sandbox binds every ``sys.path`` folder of the
server for its replicas, so server and replicas alike run the exported code.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench import procstat
from bench.plughost_sys import REPO, BenchError, PlughostServer, free_port

WORKTREE = "worktree"  # the side that runs this checkout as installed, uncommitted edits included


def git(*args: str) -> str:
    """A read-only git command in this checkout; its stdout, stripped."""
    out = subprocess.run(
        ["git", "--no-optional-locks", "-C", str(REPO), *args],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise BenchError(f"git {' '.join(args)}: {out.stderr.strip()}")
    return out.stdout.strip()


def export_src(rev: str, dest: Path) -> Path:
    """``src/`` of ``rev`` extracted under ``dest`` (git archive | tar); no worktree state is
    touched. Only ``src/`` is taken: the plugin, the bench and the load come from this
    checkout, so both sides get the same input."""
    dest.mkdir(parents=True)
    archive = subprocess.Popen(
        ["git", "-C", str(REPO), "archive", "--format=tar", rev, "src"], stdout=subprocess.PIPE
    )
    assert archive.stdout is not None
    untar = subprocess.run(["tar", "-x", "-C", str(dest)], stdin=archive.stdout, check=False)
    archive.stdout.close()
    if archive.wait() != 0 or untar.returncode != 0:
        raise BenchError(f"could not export {rev}:src into {dest}")
    return dest / "src"


def _run(cmd: list[str]) -> str:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    if out.returncode != 0:
        raise BenchError(f"{' '.join(cmd)} failed: {out.stderr[-1000:]}")
    return out.stdout.strip()


def make_interpreter(src: Path, venv: Path) -> str:
    """A venv interpreter whose ``import plughost`` finds ``src`` first, with ``python -I``
    too; every other import resolves in the running interpreter's site-packages."""
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(_run([str(python), "-I", "-c", purelib]))
    # .pth files are read in name order: the revision's source must come before the folder
    # that holds this checkout's plughost metadata and dependencies
    (site / "00-plughost-revision.pth").write_text(f"{src}\n")
    deps = dict.fromkeys(sysconfig.get_paths()[key] for key in ("purelib", "platlib"))
    (site / "01-project-site-packages.pth").write_text("".join(f"{p}\n" for p in deps))
    return str(python)


def plughost_package(python: str) -> Path:
    """The folder ``python -I`` imports plughost from (what a replica would import)."""
    code = "import plughost, pathlib; print(pathlib.Path(plughost.__file__).resolve().parent)"
    return Path(_run([python, "-I", "-c", code]))


def compile_tree(python: str, src: Path) -> None:
    """Byte-compile ``src``: replicas see it read-only in the sandbox, and a replica module
    the server never imported would otherwise be compiled again by every replica start."""
    _run([python, "-m", "compileall", "-q", "-j", "0", str(src)])


def replica_module(src: Path) -> str:
    """The module a revision runs as its replica process (it was renamed once)."""
    return "plughost.replica" if (src / "plughost" / "replica").is_dir() else "plughost.worker"


@dataclass
class RevisionServer(PlughostServer):
    """`plughost serve` run by a given interpreter (PlughostServer always uses this one)."""

    python: str = sys.executable

    def start(self, timeout: float = 60.0) -> RevisionServer:
        self.port = self.port or free_port()
        self.home.mkdir(parents=True, exist_ok=True)
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("PLUGHOST_") and k != "PYTHONPATH"
        }
        env.update(PLUGHOST_HOME=str(self.home), PLUGHOST_BOOTSTRAP_KEY=self.key)
        # a replica kept for adoption after a stop ends itself after a minute, not ten
        env["PLUGHOST_REPLICA_ORPHAN_TIMEOUT_S"] = "60"
        env.update(self.extra_env)
        self.log_path = self.home / f"server-{self.port}.log"
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [self.python, "-m", "plughost", "serve", "--port", str(self.port)]
                + ["--log-level", "warning"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=self.home,
            )
        self._wait_healthy(timeout)
        return self

    def _wait_healthy(self, timeout: float) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"plughost exited at start:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise BenchError(f"plughost did not become healthy in {timeout:.0f}s:\n{self.log_tail()}")


def _start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (None when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read().decode(errors="replace")
    except OSError:
        return None
    return int(raw[raw.rfind(")") + 2 :].split()[19])


@dataclass
class Reaper:
    """Every process seen under our servers, by pid and start time.

    A local replica leads its own session and outlives a stopped server on purpose (the next
    server adopts it), so stopping the server is not enough; the start time keeps a reused
    pid from ever being signalled.
    """

    seen: dict[int, int] = field(default_factory=dict)

    def note(self, roots: list[int]) -> None:
        for pid in procstat.tree(roots):
            ticks = _start_ticks(pid)
            if ticks is not None and pid != os.getpid():
                self.seen[pid] = ticks

    def alive(self) -> list[int]:
        return [pid for pid, ticks in self.seen.items() if _start_ticks(pid) == ticks]

    def reap(self, grace: float = 2.0) -> int:
        """SIGTERM what is left, SIGKILL what is still there after ``grace``; returns how
        many were left to end."""
        left = self.alive()
        found = len(left)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in left:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + grace
            while left and time.monotonic() < deadline:
                time.sleep(0.05)
                left = self.alive()
        return found


@dataclass
class Side:
    """One side of the comparison: a revision (or the worktree), its interpreter, its server."""

    name: str  # "baseline" or "head"
    rev: str  # a revision, or WORKTREE
    label: str
    commit: str
    python: str
    src: Path
    server: RevisionServer | None = None
    plugin_id: str = ""  # the plugin the load runs against
    replica_argv: str = ""  # one replica's command line, as proof of the code it runs

    @property
    def replica_module(self) -> str:
        return replica_module(self.src)

    def replica_pids(self) -> list[int]:
        """The replica interpreters of this server (not their sandbox wrappers)."""
        assert self.server is not None
        head = f"{self.python} -I -m {self.replica_module}"
        return [
            pid
            for pid in procstat.tree([self.server.pid])
            if procstat.cmdline(pid).startswith(head)
        ]


def prepare_side(name: str, rev: str, work: Path) -> Side:
    """Export ``rev`` and build its interpreter (WORKTREE: this checkout and interpreter),
    then prove that ``python -I`` imports plughost from that source."""
    if rev == WORKTREE:
        commit = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", "src")
        label = f"worktree {commit}" + (" + uncommitted" if dirty else "")
        python, src = sys.executable, REPO / "src"
    else:
        commit = git("rev-parse", "--short", f"{rev}^{{commit}}")
        label = rev if rev == commit or commit.startswith(rev) else f"{rev} ({commit})"
        src = export_src(commit, work / f"tree-{name}")
        python = make_interpreter(src, work / f"venv-{name}")
    found = plughost_package(python)
    if found != (src / "plughost").resolve():
        raise BenchError(f"{name}: `{python} -I` imports plughost from {found}, not {src}")
    compile_tree(python, src)
    return Side(name, rev, label, commit, python, src)
