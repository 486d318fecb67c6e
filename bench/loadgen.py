"""An asyncio HTTP/1.1 load generator, run as its own process; prints one JSON line of results.

``python -m bench.loadgen URL [URL ...] --body JSON --header 'K: V' --mode closed -c 32 -d 5``
``python -m bench.loadgen URL --mode open --rate 400 -d 5``

- closed: ``-c`` connections, each sends its next request when the last answer arrived (like
  wrk). URLs are used round-robin over the connections.
- open: requests are *scheduled* at a fixed rate whatever the server does; latency runs from
  the scheduled time, so queueing inside the server is not hidden (no coordinated omission).
  Up to ``--max-conns`` keep-alive connections are used.
- ``-d 0`` runs until SIGTERM/SIGINT (used while the harness redeploys under load).

Raw asyncio streams (no httpx) keep the client's own CPU cost low. Latencies are reported in
microseconds; ``errors`` counts non-2xx answers by status, ``conn_errors`` failed exchanges.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from collections import Counter
from urllib.parse import urlsplit


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    k = min(len(sorted_values) - 1, max(0, round(q / 100 * (len(sorted_values) - 1))))
    return sorted_values[k]


class Target:
    def __init__(self, url: str, method: str, body: bytes, headers: list[str]) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += headers
        if method != "GET" or body:
            lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        self.request = ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class Connection:
    def __init__(self, target: Target) -> None:
        self.target = target
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def exchange(self) -> tuple[int, bytes]:
        """Send one request and read the whole answer; returns the status code and, for a
        non-2xx answer, the body (for the error samples)."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(
                self.target.host, self.target.port
            )
        assert self.reader is not None
        self.writer.write(self.target.request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        chunked = False
        close = False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            lname = name.strip().lower()
            if lname == b"content-length":
                length = int(value)
            elif lname == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
            elif lname == b"connection" and b"close" in value.lower():
                close = True
        body = b""
        if chunked:
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).strip() or b"0", 16)
                body += (await self.reader.readexactly(size + 2))[:size]
                if size == 0:
                    break
        elif length:
            body = await self.reader.readexactly(length)
        if close:
            self.close()
        return status, (b"" if 200 <= status < 300 else body)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


class Stats:
    def __init__(self) -> None:
        self.latencies_us: list[float] = []
        self.statuses: Counter[int] = Counter()
        self.conn_errors = 0
        self.error_samples: list[str] = []

    def record(self, answer: tuple[int, bytes], started: float) -> None:
        status, body = answer
        self.latencies_us.append((time.perf_counter() - started) * 1e6)
        self.statuses[status] += 1
        if body and len(self.error_samples) < 5:
            self.error_samples.append(f"HTTP {status}: {body[:300].decode(errors='replace')}")

    def fail(self, exc: BaseException) -> None:
        self.conn_errors += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(f"{type(exc).__name__}: {exc}")


async def closed_loop(
    targets: list[Target], concurrency: int, stop: asyncio.Event, stats: Stats
) -> None:
    async def worker(i: int) -> None:
        conn = Connection(targets[i % len(targets)])
        while not stop.is_set():
            started = time.perf_counter()
            try:
                stats.record(await conn.exchange(), started)
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                stats.fail(exc)
                conn.close()
                await asyncio.sleep(0.001)
        conn.close()

    await asyncio.gather(*(worker(i) for i in range(concurrency)))


async def open_loop(
    targets: list[Target], rate: float, max_conns: int, stop: asyncio.Event, stats: Stats
) -> None:
    idle: list[Connection] = []
    slots = asyncio.Semaphore(max_conns)
    tasks: set[asyncio.Task[None]] = set()

    async def one(target: Target, scheduled: float) -> None:
        async with slots:
            conn = idle.pop() if idle and idle[-1].target is target else Connection(target)
            try:
                stats.record(await conn.exchange(), scheduled)
                idle.append(conn)
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                stats.fail(exc)
                conn.close()

    start = time.perf_counter()
    i = 0
    while not stop.is_set():
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(targets[i % len(targets)], scheduled))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        i += 1
    if tasks:
        await asyncio.wait(tasks, timeout=10)


async def run(args: argparse.Namespace) -> dict[str, object]:
    body = args.body.encode()
    targets = [Target(u, args.method, body, args.header) for u in args.urls]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if args.duration > 0:
        loop.call_later(args.duration, stop.set)
    stats = Stats()
    started = time.perf_counter()
    if args.mode == "closed":
        await closed_loop(targets, args.concurrency, stop, stats)
    else:
        await open_loop(targets, args.rate, args.max_conns, stop, stats)
    elapsed = time.perf_counter() - started
    lat = sorted(stats.latencies_us)
    ok = sum(n for s, n in stats.statuses.items() if 200 <= s < 300)
    return {
        "mode": args.mode,
        "concurrency": args.concurrency if args.mode == "closed" else None,
        "rate": args.rate if args.mode == "open" else None,
        "duration_s": elapsed,
        "requests": len(lat),
        "ok": ok,
        "rps": ok / elapsed if elapsed else 0.0,
        "errors": {str(s): n for s, n in stats.statuses.items() if not 200 <= s < 300},
        "conn_errors": stats.conn_errors,
        "error_samples": stats.error_samples,
        "p50_us": percentile(lat, 50),
        "p90_us": percentile(lat, 90),
        "p99_us": percentile(lat, 99),
        "max_us": lat[-1] if lat else 0.0,
        "mean_us": sum(lat) / len(lat) if lat else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("urls", nargs="+")
    parser.add_argument("--method", default="POST")
    parser.add_argument("--body", default="")
    parser.add_argument("--header", action="append", default=[])
    parser.add_argument("--mode", choices=("closed", "open"), default="closed")
    parser.add_argument("-c", "--concurrency", type=int, default=1)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--max-conns", type=int, default=256)
    parser.add_argument("-d", "--duration", type=float, default=5.0)
    args = parser.parse_args()
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:
        loop_factory = None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        result = runner.run(run(args))
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
