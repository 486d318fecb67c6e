"""The local replica registry: what a server needs to find, check and adopt the
replicas an earlier server on the same home started, or to stop them.

One record per replica, ``<home>/replicas/<replica id>.json`` (0600, written atomically:
a temporary file renamed over it), written as soon as the process is spawned and removed
when it exits or is stopped; beside it the replica's output file (``.out``) and how far a
server has read it (``.pos``, :mod:`.replica_output`). A record names the release and
deployment, a hash of the release's files, the environment folder, the process (pid and
its start time in clock ticks since boot, from ``/proc``, so a reused pid is never taken for
it), the socket and the per-replica secret (:mod:`plughost.replica.auth`). A server adopts a
replica only when all of these check out and the process answers the handshake with the
secret; a pid alone never is enough, and a process whose start time differs is never
signalled.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import signal
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import orjson

log = logging.getLogger("plughost.backend.registry")

RECORD_SUFFIX = ".json"
OUTPUT_SUFFIX = ".out"
HASH_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class ReplicaRecord:
    replica_id: str
    release_id: int
    deployment_name: str
    code_hash: str
    env_path: str | None
    pid: int
    start_time: int
    socket_path: str
    secret: str
    output_path: str
    uid: int | None = None
    server_pid: int = 0  # the server that started or adopted it, and its start time
    server_start_time: int = 0

    @classmethod
    def from_json(cls, raw: bytes) -> ReplicaRecord:
        data = orjson.loads(raw)
        if not isinstance(data, dict):
            raise TypeError("a replica record is a JSON object")
        fields = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        record = cls(**fields)
        if not isinstance(record.pid, int) or not isinstance(record.release_id, int):
            raise TypeError("bad pid or release id")
        return record


class ReplicaRegistry:
    """The records in one folder (created 0700)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)

    def output_path(self, replica_id: str) -> Path:
        return self.folder / f"{replica_id}{OUTPUT_SUFFIX}"

    def write(self, record: ReplicaRecord) -> None:
        data = orjson.dumps(asdict(record), option=orjson.OPT_INDENT_2)
        fd, tmp = tempfile.mkstemp(prefix=".rec-", dir=self.folder)  # 0600
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(tmp, self.folder / f"{record.replica_id}{RECORD_SUFFIX}")
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def remove(self, replica_id: str, output_too: bool = True) -> None:
        """Forget a replica (its record; its output files too unless ``output_too`` is off)."""
        names = [RECORD_SUFFIX, *((OUTPUT_SUFFIX, ".pos") if output_too else ())]
        for suffix in names:
            with contextlib.suppress(FileNotFoundError):
                (self.folder / f"{replica_id}{suffix}").unlink()

    def load(self) -> list[ReplicaRecord]:
        """Every readable record; an unreadable one is logged and removed."""
        records: list[ReplicaRecord] = []
        for path in sorted(self.folder.glob(f"*{RECORD_SUFFIX}")):
            try:
                records.append(ReplicaRecord.from_json(path.read_bytes()))
            except (OSError, ValueError, TypeError) as exc:
                log.warning("dropping unreadable replica record %s: %s", path.name, exc)
                with contextlib.suppress(OSError):
                    path.unlink()
        return records


def process_start_time(pid: int) -> int | None:
    """The process's start time (clock ticks since boot); None when it is gone or a zombie."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    fields = raw[raw.rindex(b")") + 2 :].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])  # field 22 of stat(5); fields[0] is field 3


def is_running(record: ReplicaRecord) -> bool:
    """Whether the recorded process (that pid with that start time) still runs."""
    return process_start_time(record.pid) == record.start_time


def server_running(record: ReplicaRecord) -> bool:
    """Whether the server that owns the replica still runs (then it is not ours to take)."""
    if record.server_pid == os.getpid():
        return False
    return process_start_time(record.server_pid) == record.server_start_time


def open_pidfd(pid: int, start_time: int) -> int | None:
    """A pidfd of that very process (checked after opening it, so the pid cannot be reused
    between the check and the signals sent through it), or None."""
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return None
    if process_start_time(pid) != start_time:
        os.close(fd)
        return None
    return fd


def signal_recorded(record: ReplicaRecord, signum: int) -> bool:
    """Send ``signum`` to the recorded process if it is still that process; SIGKILL goes to
    its whole process group (it leads its own session). Whether it was signalled."""
    fd = open_pidfd(record.pid, record.start_time)
    if fd is None:
        return False
    try:
        if signum == signal.SIGKILL:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(record.pid, signal.SIGKILL)
        signal.pidfd_send_signal(fd, signum)
    except ProcessLookupError:
        return False
    finally:
        os.close(fd)
    return True


def code_hash(folder: Path) -> str:
    """SHA-256 over the folder's files (relative path and content, in path order)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        with path.open("rb") as f:
            while chunk := f.read(HASH_CHUNK):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()


def socket_folder(home: Path) -> Path:
    """A short folder for the replicas' sockets (Unix socket paths are limited to ~107
    bytes), the same for every server on ``home``, so a later one finds them; private to
    this uid (a folder someone else made, or an open one, is not used)."""
    tag = hashlib.sha256(str(home).encode()).hexdigest()[:10]
    folder = Path(tempfile.gettempdir()) / f"plughost-{os.getuid()}-{tag}"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        info = folder.lstat()
        if info.st_uid == os.getuid() and (info.st_mode & 0o777) == 0o700 and folder.is_dir():
            return folder
        log.warning("%s is not a private folder of this user; using a fresh one", folder)
    except OSError as exc:
        log.warning("cannot use %s for replica sockets: %s", folder, exc)
    return Path(tempfile.mkdtemp(prefix="plughost-"))
