"""plughost's observation routes: logs, deployment history, the status watch,
per-plugin figures and the namespace list. The wire shapes below are fixed; the CLI and the
dashboard rely on them. Every route takes the usual API key and answers errors in the usual
shape. Times are ISO 8601 UTC with a `Z` suffix and microseconds.

GET /v1/namespaces/{ns}/plugins/{plugin_id}/logs?since=&limit=&follow=&release_id=
    The replicas' output (local backend): stdout, stderr and `logging` records, kept per
    release and replica under $PLUGHOST_HOME/logs, capped per release.
    - since: an ISO 8601 time (exclusive: lines strictly after it; pass back `next_since`)
      or a relative age `30s`, `10m`, `2h`, `1d`; absent = the newest `limit` lines.
    - limit: 1..5000, default 200. With `since`, the OLDEST `limit` lines after it (page
      forward with `next_since`); without, the NEWEST `limit` lines.
    - release_id: only that release's lines; absent = every release of the plugin id.
    Answer (JSON):
        {"plugin_id": str, "namespace_id": str,
         "lines": [{"time": iso, "release_id": int, "replica": str,
                    "stream": "stdout" | "stderr" | "log", "line": str}, ...],   # oldest first
         "truncated": bool,     # lines of the asked window are missing from the answer:
                                # past `limit`, or dropped by the per-release size cap
         "next_since": iso | null}   # the time of the last line returned (else `since`)
    `replica` names the replica process: `r{release}-{pid}` (its process id on the server,
    so a restarted replica has a new name);
    `plughost` marks lines the server writes itself (e.g. "... lines dropped: cap").
    follow=true: `text/event-stream`; first the lines the same query would answer, then new
    ones as they are written, one event per line: `data: {line object}\\n\\n` (the first
    window sends at most 256 KiB of lines; a `plughost` line says how many it left out). A comment
    line `: keepalive` every 15 s (PLUGHOST_STREAM_KEEPALIVE_S); the stream runs until the
    client closes it or PLUGHOST_STREAM_MAX_LIFETIME_S passed (it then ends with the comment
    `: end of stream: lifetime reached, reconnect`; reconnect with `since` = the last time).
    A line's terminal control characters (ESC, CR, BS, DEL, C1, bidi controls; not tab) come
    escaped as visible text: `\\x1b` for ESC, `\\x0d` for CR, `\\u202e` for a bidi override
    (plughost.logs.terminal); lines are cut to PLUGHOST_LOG_LINE_MAX_BYTES with a marker
    `[... N bytes cut]`.

Event streams (logs follow, status watch) are bounded (plughost.api.stream_bounds): past
PLUGHOST_STREAMS_MAX_PER_NAMESPACE open in the namespace a new one is refused with 429, past
PLUGHOST_STREAMS_MAX_OPEN in all with 503, both with `Retry-After`.

GET /v1/namespaces/{ns}/plugins/{plugin_id}/deployments?limit=
    The plugin id's releases, newest first (limit 1..200, default 50), with their events,
    and the alias moves of the plugin's name (deploys, rollbacks, undeploys):
        {"plugin_id", "namespace_id", "name", "version",
         "alias": {"name", "route", "release_id", "version"} | null,   # current alias target
         "deployments": [
            {"release_id": int, "version": str,
             "status": str,     # the release's own status: queued, pending, in_progress,
                                # deployed, failed, not_deployed, superseded
             "outcome": "deployed" | "failed" | "undeployed" | "superseded" | "running",
             "queued_at", "started_at", "deployed_at", "finished_at": iso | null,
             "duration_s": float | null,     # queue exit to serving (successful rollouts)
             "message": str | null, "error": str | null,
             "events": [{"time": iso, "from": str | null, "to": str, "message": str | null,
                         "duration_s": float | null}]}],   # oldest first; duration_s: time
                                                           # spent in `from`
         "alias_moves": [{"time": iso, "name": str,
                          "from_release_id": int | null, "from_version": str | null,
                          "to_release_id": int | null, "to_version": str | null,
                          "reason": "deploy" | "rollback" | "undeploy"}]}   # newest first

GET /v1/namespaces/{ns}/plugins/{plugin_id}/status?watch=true
    `text/event-stream`: one `data: {status body}\\n\\n` event at once, then one per change
    of the status body (status, message, error, release, deployed...; ETA ticks alone are not
    changes), each exactly the JSON the plain status endpoint answers. The stream ends after
    the event carrying a final status: `deployed`, `failed` or `not_deployed`, and also
    once the current state is final when the watch starts. Keepalive comments every 15 s;
    the lifetime bound ends it cleanly too (clients then read the status again).
    Without watch (or watch=false) the route answers the usual JSON.

GET /v1/namespaces/{ns}/plugins/{plugin_id}/metrics
    Recent figures of the plugin id's serving release, for the dashboard:
        {"plugin_id", "namespace_id", "release_id": int | null,
         "replicas": {"desired": int, "ready": int, "restarts": int} | null,
         "totals": {"requests": int, "errors": int, "in_flight": int},
         "series": [{"time": iso, "requests_per_s": float, "errors_per_s": float,
                     "p50_ms": float | null, "p99_ms": float | null}]}   # oldest first,
                                                                         # one per 5 s
GET /v1/namespaces
    The namespaces the key reaches: {"namespaces": [{"namespace_id", "name",
    "organization_id", "created_at"}], "total": int}
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header, Request
from fastapi.responses import Response, StreamingResponse
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from plughost.api.deps import NamespaceScope, PrincipalDep, RuntimeDep
from plughost.api.responses import OrjsonResponse
from plughost.api.stream_bounds import bounded, slots_of
from plughost.domain.scope import PluginScope
from plughost.errors import ForbiddenError, ServiceUnavailableError
from plughost.logs import query
from plughost.logs.store import LogLine
from plughost.metrics.collector import content_type, render
from plughost.server.observation import Observation
from plughost.server.wiring import Runtime
from plughost.services.accounts import DEFAULT_ORG
from plughost.services.observe import PluginKey

router = APIRouter(prefix="/v1/namespaces", tags=["observation"])
metrics_router = APIRouter(tags=["observation"])

# a follow's first window is kept to this much text (the newest lines without `since`)
FIRST_WINDOW_MAX_BYTES = 256 * 1024
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _observation(rt: Runtime) -> Observation:
    if rt.observation is None:
        raise ServiceUnavailableError("observation is not running")
    return rt.observation


@router.get("")
def list_namespaces(principal: PrincipalDep, rt: RuntimeDep) -> dict[str, Any]:
    rows = [
        ns for ns in rt.accounts.list_namespaces(principal.organization_id)
        if principal.reaches(ns["namespace_id"])
    ]
    return {"namespaces": rows, "total": len(rows)}


@router.get("/{namespace_id}/plugins/{plugin_id:plugin_id}/deployments")
def deployments(
    scope: NamespaceScope, rt: RuntimeDep, plugin_id: str, limit: int = 50
) -> dict[str, Any]:
    return _observation(rt).observe.history(scope, plugin_id, limit)


# may stream, so no return type for FastAPI to encode: the dict goes through orjson
@router.get(
    "/{namespace_id}/plugins/{plugin_id:plugin_id}/logs",
    response_model=None,
    response_class=OrjsonResponse,
)
async def logs(
    scope: NamespaceScope,
    rt: RuntimeDep,
    plugin_id: str,
    since: str | None = None,
    limit: int = query.DEFAULT_LIMIT,
    follow: bool = False,
    release_id: int | None = None,
) -> dict[str, Any] | StreamingResponse:
    obs = _observation(rt)
    if not follow:
        return await run_in_threadpool(
            obs.observe.logs_body, scope, plugin_id, since, limit, release_id)
    key = await run_in_threadpool(obs.observe.plugin, scope, plugin_id)
    after = query.parse_since(since)
    query.check_limit(limit)
    return _bounded_response(rt, scope, _follow(obs, key, after, limit, release_id))


def _bounded_response(
    rt: Runtime, scope: PluginScope, events: AsyncIterator[bytes]
) -> StreamingResponse:
    """An event stream within the server's bounds (:mod:`plughost.api.stream_bounds`)."""
    settings = rt.settings
    # refused: ``events`` never ran, so it holds nothing (it follows once iterated)
    slot = slots_of(rt, settings).acquire(scope.namespace_id or "")
    body = bounded(events, slot, settings.stream_keepalive_s, settings.stream_max_lifetime_s)
    # the slot is given back by the stream's end, or here if the body never ran
    return StreamingResponse(body, media_type="text/event-stream", headers=SSE_HEADERS,
                             background=BackgroundTask(slot.release))


async def _follow(
    obs: Observation, key: PluginKey, since: float | None, limit: int, release_id: int | None
) -> AsyncIterator[bytes]:
    """The window the plain query answers, then every new line (see the module docstring)."""
    queue: asyncio.Queue[LogLine] = asyncio.Queue(maxsize=10_000)
    missed = 0

    def push(entry: LogLine) -> None:
        nonlocal missed
        if release_id is not None and entry.release_id != release_id:
            return
        try:
            queue.put_nowait(entry)
        except asyncio.QueueFull:
            missed += 1

    token = object()
    plugin_key = (key.namespace_id, key.plugin_id)
    obs.logs.follow(plugin_key, token, push)
    try:
        window, _ = await asyncio.to_thread(obs.observe.log_lines, key, since, limit, release_id)
        first, left_out = query.cap_window(window, FIRST_WINDOW_MAX_BYTES, since is None)
        del window
        last = first[-1].time if first else (since or 0.0)
        if left_out:
            yield _event(_note(first[0] if since is None else first[-1], (
                f"[plughost] {left_out} {'older' if since is None else 'later'} lines of "
                "this window not sent on the stream: page them with GET .../logs")))
        first.reverse()
        while first:  # each line let go once sent
            yield _event(query.wire(first.pop()))
        while True:  # keepalives and the lifetime: plughost.api.stream_bounds.bounded
            entry = await queue.get()
            if missed:
                yield _event(_note(entry, f"[plughost] {missed} lines not sent: the client "
                                   "read too slowly"))
                missed = 0
            if entry.time > last:  # already sent with the first window otherwise
                last = entry.time
                yield _event(query.wire(entry))
    finally:
        obs.logs.unfollow(plugin_key, token)


def _note(entry: LogLine, text: str) -> dict[str, Any]:
    """A line of the server's own on a stream, at ``entry``'s time and release."""
    return {"time": query.iso_time(entry.time), "release_id": entry.release_id,
            "replica": "plughost", "stream": "log", "line": text}


def _event(data: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"


@router.get("/{namespace_id}/plugins/{plugin_id:plugin_id}/metrics")
def plugin_metrics(scope: NamespaceScope, rt: RuntimeDep, plugin_id: str) -> dict[str, Any]:
    obs = _observation(rt)
    key = obs.observe.plugin(scope, plugin_id)
    status = rt.deploy_status.status(scope, plugin_id)
    serving = [r for r, g in list(rt.controller.groups.items())
               if g.spec.namespace_id == key.namespace_id
               and g.spec.deployment_name == f"custom_plugin_{key.plugin_id}"]
    release = max(serving) if serving else None
    stats = rt.deploy_status.request_metrics.by_plugin.get((key.namespace_id, key.plugin_id))
    series = obs.sampler.series.get((key.namespace_id, key.plugin_id), ())
    return {
        "plugin_id": key.plugin_id,
        "namespace_id": key.namespace_id,
        "status": status.get("status"),
        "release_id": release,
        "replicas": obs.sampler.group_figures(release) if release is not None else None,
        "totals": {
            "requests": stats.requests if stats else 0,
            "errors": stats.errors if stats else 0,
            "in_flight": stats.in_flight if stats else 0,
        },
        "series": [
            {"time": query.iso_time(s.time), "requests_per_s": round(s.requests_per_s, 3),
             "errors_per_s": round(s.errors_per_s, 3), "p50_ms": s.p50_ms, "p99_ms": s.p99_ms}
            for s in series
        ],
    }


def status_stream(rt: Runtime, scope: PluginScope, plugin_id: str) -> StreamingResponse:
    """``GET .../status?watch=true`` (called by the status route)."""
    obs = _observation(rt)
    key = obs.observe.plugin(scope, plugin_id)

    async def events() -> AsyncIterator[bytes]:
        stream = obs.watches.watch(scope, key.plugin_id, key.pk)
        try:
            async for body in stream:
                if body is not None:  # None: the watch's own keepalive tick, sent by bounded
                    yield _event(body)
        finally:
            with contextlib.suppress(Exception):
                await stream.aclose()  # type: ignore[attr-defined]

    return _bounded_response(rt, scope, events())


@metrics_router.get("/metrics", response_class=Response)
def metrics(
    rt: RuntimeDep,
    request: Request,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Response:
    """Prometheus text format; without PLUGHOST_METRICS_PUBLIC=true an admin key is needed:
    a key of the bootstrap organization that reaches every namespace."""
    if not rt.settings.metrics_public:
        principal = rt.accounts.authenticate(authorization)
        if principal.organization_id != DEFAULT_ORG or principal.namespaces is not None:
            raise ForbiddenError("/metrics needs an admin key (or PLUGHOST_METRICS_PUBLIC=true)")
    body = render(_observation(rt).collector)
    return Response(body, media_type=content_type())

