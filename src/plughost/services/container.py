"""The server's answer to plugin code's container calls (``container.secrets``,
``container.llm``), whatever transport brought them (:mod:`plughost.domain.container`).

The organization is the caller's scope, never something the request says: a release's
namespace (looked up once, then kept) or a batch job's own organization. Each namespace has
at most ``PLUGHOST_CONTAINER_MAX_CONCURRENCY`` calls in flight (more wait for a slot) and each
call, waiting included, is bounded by ``PLUGHOST_CONTAINER_CALL_TIMEOUT_S``. Secret values go
back only to the plugin that asked; they are never logged here. The LLM key is used here and
never leaves the server.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol

from sqlalchemy import select

from plughost.config import Settings
from plughost.domain.container import (
    BAD_REQUEST,
    LLM_GENERATE,
    MODEL_LOADS,
    PLUGIN_CALL,
    PLUGIN_HAS,
    SECRETS_GET,
    SECRETS_LIST,
    TIMED_OUT,
    UNAVAILABLE,
    ContainerScope,
    check_request,
    error_reply,
    ok_reply,
)
from plughost.metrics.model_loads import ModelLoadMetrics
from plughost.persistence.db import Database
from plughost.persistence.tables import Namespace
from plughost.services.container_plugins import PluginRoutes, call_plugin, has_plugin
from plughost.services.llm import LlmClient, LlmFailure

log = logging.getLogger("plughost.container")

LLM_KEY_SECRET = "llm_api_key"  # the organization secret used when the server has no key
MAX_NAME_CHARS = 255

OrgOf = Callable[[str], "str | None"]


class SecretSource(Protocol):
    """Where secret values come from (:class:`plughost.services.secrets.Secrets`, or the
    author CLI's ``--secret`` values); both methods block, so they run in a thread."""

    def get(self, org_id: str, name: str) -> str | None: ...

    def names(self, org_id: str) -> list[str]: ...


def namespace_owner(db: Database) -> OrgOf:
    """``org_of(namespace_id)``: the namespace's organization from the database (blocking)."""

    def org_of(namespace_id: str) -> str | None:
        with db.session() as s:
            row = s.scalars(select(Namespace.organization_id).where(Namespace.id == namespace_id))
            return row.first()

    return org_of


class _Failure(Exception):
    def __init__(self, type_name: str, message: str) -> None:
        super().__init__(message)
        self.type_name = type_name
        self.message = message


class ContainerService:
    """Answers container calls (implements :class:`~plughost.domain.container.ContainerCalls`)."""

    def __init__(
        self,
        settings: Settings,
        secrets: SecretSource | None,
        org_of: OrgOf,
        llm: LlmClient | None = None,
        model_loads: ModelLoadMetrics | None = None,
        plugins: PluginRoutes | None = None,
    ) -> None:
        """``secrets`` None: secret reads answer that this server keeps none. ``org_of``
        finds a namespace's organization (blocking). ``llm`` defaults to one built from
        ``settings``. ``model_loads`` counts the model loads plugins report (a new one when
        None; /metrics shows this object's). ``plugins``: the route table through which a
        plugin calls another one deployed in its namespace (None: no such calls)."""
        self.settings = settings
        self.secrets = secrets
        self._org_of = org_of
        self.llm = llm if llm is not None else LlmClient(settings)
        self.model_loads = model_loads if model_loads is not None else ModelLoadMetrics()
        self.plugins = plugins
        self._orgs: dict[str, str] = {}
        self._slots: dict[str, asyncio.Semaphore] = {}

    async def call(self, scope: ContainerScope, request: Any) -> dict[str, Any]:
        """The reply to one request (never raises; failures are error replies)."""
        try:
            target, args = check_request(request)
        except (TypeError, ValueError) as exc:
            return error_reply(BAD_REQUEST, str(exc))
        if target == MODEL_LOADS:  # counted at once: no organization, no slot
            return self._load_report(scope, args)
        limit = self.settings.container_call_timeout_s
        slots = self._slots.setdefault(
            scope.namespace_id or "", asyncio.Semaphore(self.settings.container_max_concurrency)
        )
        try:
            async with asyncio.timeout(limit):
                async with slots:
                    org = await self._organization(scope)
                    if target in (PLUGIN_HAS, PLUGIN_CALL):
                        return await self._plugin(target, scope.namespace_id or "", args)
                    return ok_reply(await self._dispatch(target, args, org, scope))
        except TimeoutError:
            return error_reply(
                TIMED_OUT,
                f"{target} did not finish within {limit:g} s (PLUGHOST_CONTAINER_CALL_TIMEOUT_S)",
            )
        except _Failure as exc:
            return error_reply(exc.type_name, exc.message)
        except LlmFailure as exc:
            return error_reply(exc.type_name, exc.message)
        except Exception as exc:
            log.exception("container call %s failed", target)
            return error_reply(UNAVAILABLE, f"the server failed {target}: {type(exc).__name__}")

    def _load_report(self, scope: ContainerScope, args: dict[str, Any]) -> dict[str, Any]:
        model, outcome, seconds = args.get("model"), args.get("outcome"), args.get("seconds")
        if not isinstance(model, str) or not model or len(model) > MAX_NAME_CHARS:
            return error_reply(BAD_REQUEST, "a load report names its model (a short string)")
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            return error_reply(BAD_REQUEST, "a load report gives its duration in seconds")
        self.model_loads.record(scope.namespace_id or "", model, str(outcome), float(seconds))
        return ok_reply(None)

    async def _plugin(self, target: str, namespace: str, args: dict[str, Any]) -> dict[str, Any]:
        if self.plugins is None:
            return error_reply(UNAVAILABLE, "this server does not let plugins call plugins")
        if target == PLUGIN_HAS:
            return has_plugin(self.plugins, namespace, args)
        return await call_plugin(self.plugins, namespace, args)

    async def _organization(self, scope: ContainerScope) -> str:
        if scope.organization_id:
            return scope.organization_id
        namespace = scope.namespace_id or ""
        org = self._orgs.get(namespace)
        if org is None and namespace:
            org = await asyncio.to_thread(self._org_of, namespace)
            if org:
                self._orgs[namespace] = org
        if not org:
            raise _Failure(UNAVAILABLE, "the plugin's namespace belongs to no organization")
        return org

    async def _dispatch(
        self, target: str, args: dict[str, Any], org: str, scope: ContainerScope
    ) -> Any:
        if target == SECRETS_GET:
            return await self._secret(org, _secret_name(args.get("name")))
        if target == SECRETS_LIST:
            return sorted(await asyncio.to_thread(self._source().names, org))
        if target == LLM_GENERATE:
            return await self._generate(args, org, scope.namespace_id or "")
        raise _Failure(BAD_REQUEST, f"unknown target {target!r}")  # check_request let it pass

    def _source(self) -> SecretSource:
        if self.secrets is None:
            raise _Failure(UNAVAILABLE, "this server keeps no organization secrets")
        return self.secrets

    async def _secret(self, org: str, name: str) -> str | None:
        return await asyncio.to_thread(self._source().get, org, name)

    async def _generate(self, args: dict[str, Any], org: str, namespace: str) -> dict[str, Any]:
        llm = self.llm
        org_key = None
        if llm.configured and not llm.has_key and self.secrets is not None:
            org_key = await self._secret(org, LLM_KEY_SECRET)
        return await llm.generate(args, org_key, namespace)

    async def aclose(self) -> None:
        await self.llm.aclose()


def _secret_name(name: Any) -> str:
    if not isinstance(name, str) or not name or len(name) > MAX_NAME_CHARS:
        raise _Failure(BAD_REQUEST, "a secret name is a non-empty string of at most 255 characters")
    return name
