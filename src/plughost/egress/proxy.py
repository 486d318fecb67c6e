"""The server's egress proxy: HTTP CONNECT, and ``GET http://...`` in absolute form.

It listens on one Unix socket per namespace and plugin folder (a release's, or a batch job's),
each in a folder of its own that the sandbox binds read-only at
:data:`plughost.egress.EGRESS_MOUNT`: which socket a connection arrives on says which
namespace (and plugin folder) it comes from, and plugin code cannot claim another one. Each
request is checked against the namespace's allowlist as it is then
(:func:`plughost.egress.policy.decide`); a refusal is answered ``403`` with the reason in the
status line, and the connection closed. An allowed one is connected to the address the check
resolved, then bytes are relayed both ways until both sides are done or nothing moved for the
idle time. Every connection is logged (namespace, caller, destination, decision, bytes).

The proxy runs its own asyncio loop in a thread of the server, so a slow download never
delays the server's own loop; its sockets are made on demand (:meth:`EgressProxy.bind_dir`),
and an earlier server's folders are listened on again at start (:meth:`EgressProxy.restore`),
so replicas the server adopts keep their way out. A batch job's socket closes with its last
worker, a release's once its group stopped (:meth:`EgressProxy.release_gone`); a clean stop
removes the folders no detached replica needs, and the root once it is empty.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import socket
import stat
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from plughost.egress import SOCKET_NAME
from plughost.egress.folders import is_release
from plughost.egress.policy import Decision, PatternError, Resolver, decide, parse_patterns
from plughost.egress.wire import Limits, Record, Refused, answer, parse_head

log = logging.getLogger("plughost.egress")

Allowlist = Callable[[str], Sequence[str]]
HEAD_LIMIT = 16 * 1024
CHUNK = 64 * 1024
OWNER_FILE = "owner.json"


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass
class EgressProxy:
    """The proxy of one server: ``root`` holds a folder per (namespace, caller)."""

    root: Path
    allowlist: Allowlist
    limits: Limits = field(default_factory=Limits)
    resolver: Resolver = system_resolver
    on_record: Callable[[Record], None] | None = None
    names: Callable[[], Iterable[str]] = tuple  # the namespaces that may have an allowlist
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _loop: asyncio.AbstractEventLoop | None = field(default=None, init=False)
    _thread: threading.Thread | None = field(default=None, init=False)
    _servers: dict[Path, asyncio.AbstractServer] = field(default_factory=dict, init=False)
    _open: Counter[str] = field(default_factory=Counter, init=False)
    _users: Counter[Path] = field(default_factory=Counter, init=False)  # sandboxes per folder
    _callers: dict[Path, str] = field(default_factory=dict, init=False)
    _done: set[Path] = field(default_factory=set, init=False)  # releases whose group stopped
    _inodes: dict[Path, tuple[int, int]] = field(default_factory=dict, init=False)  # our sockets

    # -- the sockets ---------------------------------------------------------------------------
    def wants(self, namespace_id: str | None) -> bool:
        """Whether the namespace has an allowlist (its plugins get a socket)."""
        if namespace_id is None:
            return False
        try:
            return bool(self.allowlist(namespace_id))
        except Exception:  # an unreadable allowlist allows nothing
            log.exception("egress: cannot read the allowlist of %s", namespace_id)
            return False

    def allowlisted(self) -> list[str]:
        """The namespaces whose plugins reach the network through this proxy (``/healthz``)."""
        return sorted(ns for ns in set(self.names()) if self.wants(ns))

    def folder_of(self, namespace_id: str, caller: str) -> Path:
        digest = hashlib.sha256(f"{namespace_id}\0{caller}".encode()).hexdigest()[:16]
        return self.root / digest

    def bind_dir(self, namespace_id: str | None, caller: str, count: bool = True) -> Path | None:
        """The folder (holding the listening socket) to bind into a sandbox of
        ``namespace_id`` whose plugin folder is ``caller``; None when the namespace has no
        allowlist. ``count``: a sandbox uses it until :meth:`unbind` (else only listen)."""
        if namespace_id is None or not self.wants(namespace_id):
            return None
        folder = self.folder_of(namespace_id, caller)
        with self._lock:
            if folder not in self._servers:
                self._listen(folder, namespace_id, caller)
            self._done.discard(folder)  # a release started (again)
            self._users[folder] += int(count)
        return folder

    def unbind(self, folder: Path) -> None:
        """A sandbox given ``folder`` has ended. A batch job's socket closes with its last
        worker; a release's once its group stopped too (:meth:`release_gone`): replicas
        adopted after a restart use it uncounted while the group runs."""
        with self._lock:
            self._users[folder] -= 1
            if (
                self._users[folder] > 0
                or folder not in self._servers
                or (is_release(self._callers.get(folder, "")) and folder not in self._done)
            ):
                return
            server = self._close(folder)
        self._drop(folder, server)

    def release_gone(self, namespace_id: str, caller: str) -> None:
        """No replica of the release is left on this server (its group stopped: undeploy,
        rollout done, failed, server stop): its socket closes, at once or with the last
        sandbox still starting."""
        folder = self.folder_of(namespace_id, caller)
        with self._lock:
            if folder not in self._servers:
                return
            self._done.add(folder)
            if self._users[folder] > 0:
                return
            server = self._close(folder)
        self._drop(folder, server)

    def _close(self, folder: Path) -> asyncio.AbstractServer | None:
        """Forget ``folder``'s listener (under the lock); closed by :meth:`_drop`."""
        self._users.pop(folder, None)
        self._callers.pop(folder, None)
        self._done.discard(folder)
        return self._servers.pop(folder, None)

    def _drop(self, folder: Path, server: asyncio.AbstractServer | None = None) -> None:
        """Close ``server`` and remove ``folder`` with what is in it (unless it is not ours)."""
        if server is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(server.close)
        if not self._ours(folder):
            return
        for name in (SOCKET_NAME, OWNER_FILE):
            with contextlib.suppress(OSError):
                (folder / name).unlink()
        with contextlib.suppress(OSError):
            folder.rmdir()

    def _ours(self, folder: Path) -> bool:
        """Whether ``folder``'s socket file is (still) the one this proxy bound there: in a
        takeover the successor on the same home listens in the same folders before this
        server stops, and its sockets must stay."""
        known = self._inodes.pop(folder, None)
        try:
            info = (folder / SOCKET_NAME).lstat()
        except OSError:
            return True
        return known is None or (info.st_dev, info.st_ino) == known

    def restore(self) -> int:
        """Listen again in the folders an earlier server left whose namespace still has an
        allowlist (its replicas may be adopted); remove the others. How many listen."""
        if not self.root.is_dir():
            return 0
        count = 0
        for folder in sorted(self.root.iterdir()):
            try:
                owner = json.loads((folder / OWNER_FILE).read_text())
                namespace, caller = str(owner["namespace"]), str(owner["caller"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if self.wants(namespace) and folder == self.folder_of(namespace, caller):
                self.bind_dir(namespace, caller, count=False)
                count += 1
            else:
                self._drop(folder)
        return count

    def _listen(self, folder: Path, namespace_id: str, caller: str) -> None:
        loop = self._started()
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = self.root.lstat()
        if info.st_uid != os.getuid() or not stat.S_ISDIR(info.st_mode):
            raise RuntimeError(f"{self.root} is not a folder of this user: no egress socket")
        os.chmod(self.root, 0o700)  # only the server (and bubblewrap, as it) goes through
        folder.mkdir(mode=0o755, exist_ok=True)
        os.chmod(folder, 0o755)  # the sandbox's uid enters its own folder
        (folder / OWNER_FILE).write_text(json.dumps({"namespace": namespace_id, "caller": caller}))
        path = folder / SOCKET_NAME
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(str(path))
            info = path.lstat()
            self._inodes[folder] = (info.st_dev, info.st_ino)
            os.chmod(path, 0o666)  # any sandbox uid that sees it (only this namespace's)
            sock.listen(128)
            sock.setblocking(False)
            handler = partial(self._serve, namespace_id, caller)
            start = asyncio.start_unix_server(handler, sock=sock, limit=HEAD_LIMIT)
            server = asyncio.run_coroutine_threadsafe(start, loop).result(30)
        except BaseException:
            sock.close()
            raise
        self._servers[folder] = server
        self._callers[folder] = caller
        log.info("egress: proxy socket for namespace %s (%s) at %s", namespace_id, caller, path)

    def _started(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="plughost-egress", daemon=True)
            thread.start()
            self._loop, self._thread = loop, thread
        return self._loop

    def stop(self) -> None:
        """Close every listener and the proxy's loop (open relays are cut). The folders of
        releases whose group was left running (keep-on-stop: the next server adopts them)
        stay, their sockets gone; the others go, and the root once it is empty."""
        with self._lock:
            loop, thread, servers = self._loop, self._thread, list(self._servers.items())
            kept = {f for f, _ in servers if is_release(self._callers.get(f, ""))} - self._done
            self._loop, self._thread, self._servers = None, None, {}
        if loop is None or thread is None:
            with contextlib.suppress(OSError):
                self.root.rmdir()  # only when empty
            return

        async def close() -> None:
            for _, server in servers:
                server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        for folder, _ in servers:
            if folder in kept:
                if self._ours(folder):
                    with contextlib.suppress(OSError):
                        (folder / SOCKET_NAME).unlink()
            else:
                self._drop(folder)
        with contextlib.suppress(OSError):
            self.root.rmdir()  # only when empty: no detached replica needs a folder
        with contextlib.suppress(RuntimeError):
            loop.close()

    # -- one connection ------------------------------------------------------------------------
    async def _serve(
        self,
        namespace: str,
        caller: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        record = Record(namespace, caller)
        self._open[namespace] += 1
        try:
            busy = self._open[namespace] > self.limits.max_connections
            await self._handle(namespace, reader, writer, record, busy)
        except Refused as exc:
            record.reason = exc.reason
            with contextlib.suppress(Exception):
                await answer(writer, exc.status, exc.reason)
        except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
            record.reason = record.reason or f"{type(exc).__name__}: {exc}"
        finally:
            self._open[namespace] -= 1
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            (log.info if record.decision == "allowed" else log.warning)("%s", record.line())
            if self.on_record is not None:
                self.on_record(record)

    async def _handle(
        self,
        namespace: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        record: Record,
        busy: bool,
    ) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.limits.idle_timeout_s)
        except asyncio.LimitOverrunError as exc:
            raise Refused(431, "request head too large") from exc
        lines = head.decode("latin-1").split("\r\n")
        method, _, host, port, request = parse_head(lines)
        record.method, record.destination = method, f"{host}:{port}"
        if busy:  # answered once the head is read: the client is not cut mid-request
            raise Refused(503, f"too many egress connections for {namespace}")
        decision = await self._decide(namespace, host, port)
        if not decision.allowed or decision.address is None:
            raise Refused(403, f"refused by the egress policy: {decision.reason}")
        record.destination += f" [{decision.address}]"
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(decision.address, port), self.limits.connect_timeout_s
            )
        except (OSError, TimeoutError) as exc:
            record.decision = "failed"
            raise Refused(502, f"cannot connect to {host}:{port}: {exc}") from exc
        record.decision = "allowed"
        try:
            if request is None:
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                await writer.drain()
            else:
                up_writer.write(request)
                record.sent += len(request)
            await self._pump(reader, writer, up_reader, up_writer, record)
        finally:
            up_writer.close()

    async def _decide(self, namespace: str, host: str, port: int) -> Decision:
        try:
            patterns = parse_patterns(self.allowlist(namespace))
        except PatternError as exc:
            return Decision(False, f"the namespace's allowlist is invalid: {exc}")
        try:
            return await asyncio.wait_for(
                decide(patterns, host, port, self.resolver), self.limits.connect_timeout_s
            )
        except TimeoutError:
            return Decision(False, f"resolving {host} timed out")

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        up_reader: asyncio.StreamReader,
        up_writer: asyncio.StreamWriter,
        record: Record,
    ) -> None:
        loop = asyncio.get_running_loop()
        last = [loop.time()]
        idle = self.limits.idle_timeout_s

        async def copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter, up: bool) -> None:
            while True:
                try:
                    data = await asyncio.wait_for(src.read(CHUNK), idle)
                except TimeoutError:
                    if loop.time() - last[0] >= idle:
                        raise
                    continue
                if not data:
                    break
                last[0] = loop.time()
                dst.write(data)
                await dst.drain()
                if up:
                    record.sent += len(data)
                else:
                    record.received += len(data)
            if dst.can_write_eof():
                with contextlib.suppress(OSError):
                    dst.write_eof()

        tasks = [
            asyncio.ensure_future(copy(reader, up_writer, True)),
            asyncio.ensure_future(copy(up_reader, writer, False)),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                if task.exception() is not None:
                    record.reason = f"closed: {type(task.exception()).__name__}"
        finally:
            for task in tasks:
                task.cancel()
