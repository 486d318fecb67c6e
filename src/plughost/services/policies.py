"""Every namespace's policy (quotas and egress allowlist) in memory: :class:`PolicyBook`.

Loaded at start, reloaded at once after a write through this server, and every
``PLUGHOST_QUOTA_REFRESH_S`` when the table's stamp (row count and newest change, one small
aggregate query) moved: servers sharing one database, and the admin CLI writing to it
straight, converge within that time. A full reload every :data:`FULL_EVERY` checks heals a
change the stamp missed (two servers' clocks apart).

The data plane reads :attr:`PolicyBook.gates` (namespace -> :class:`RateGate`), which holds
only namespaces with a request rate: with no rate set, a call costs one dict probe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from plughost.config import Settings
from plughost.domain.quotas import NamespacePolicy, QuotaExceededError, RateGate, check_fields
from plughost.persistence.db import Database
from plughost.persistence.policies import PolicyRows, Stamp

log = logging.getLogger("plughost.quotas")

FULL_EVERY = 15  # stamp checks between full reloads


class PolicyBook:
    """Namespace policies, their rate gates and the quota refusals counted per namespace."""

    def __init__(
        self,
        rows: PolicyRows,
        refresh_s: float = 2.0,
        batch_retry_after_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rows = rows
        self.refresh_s = refresh_s
        self.batch_retry_after_s = batch_retry_after_s
        self.clock = clock  # the token buckets' (tests drive a manual one)
        self._policies: Mapping[str, NamespacePolicy] = {}
        self.gates: dict[str, RateGate] = {}  # only namespaces with a request rate
        self.rejected: Counter[tuple[str, str]] = Counter()  # (namespace, quota) -> refusals
        self._stamp: Stamp | None = None
        self._lock = threading.Lock()  # one reload at a time
        self._task: asyncio.Task[None] | None = None
        self.load()

    # -- what the others ask -----------------------------------------------------------------
    def policy(self, namespace_id: str) -> NamespacePolicy:
        """The namespace's policy (no limit when none was set)."""
        found = self._policies.get(namespace_id)
        return found if found is not None else NamespacePolicy(namespace_id)

    def egress_allow(self, namespace_id: str) -> tuple[str, ...]:
        """The namespace's egress allowlist (``host[:port]`` patterns); () = no network."""
        found = self._policies.get(namespace_id)
        return found.egress_allow if found is not None else ()

    def egress_namespaces(self) -> list[str]:
        """The namespaces given an egress allowlist (``/healthz``)."""
        return [ns for ns, policy in self._policies.items() if policy.egress_allow]

    def max_memory_mb(self, namespace_id: str) -> int | None:
        """The namespace's memory quota in MB (None: no limit)."""
        found = self._policies.get(namespace_id)
        return found.max_memory_mb if found is not None else None

    def max_replicas(self, namespace_id: str) -> int | None:
        found = self._policies.get(namespace_id)
        return found.max_replicas if found is not None else None

    def check_batch_jobs(self, namespace_id: str | None) -> None:
        """Before a batch job is queued: 429 QuotaExceededError when the namespace has
        ``max_batch_jobs`` jobs queued or running (a database count, only when set)."""
        if namespace_id is None:
            return
        limit = self.policy(namespace_id).max_batch_jobs
        if limit is None:
            return
        active = self.rows.active_batch_jobs(namespace_id)
        if active >= limit:
            self.rejected[(namespace_id, "max_batch_jobs")] += 1
            raise QuotaExceededError(
                f"namespace quota max_batch_jobs={limit} reached: namespace {namespace_id!r} "
                f"has {active} batch job(s) queued or running; submit again once one ends",
                {
                    "namespace_id": namespace_id,
                    "quota": "max_batch_jobs",
                    "limit": limit,
                    "in_use": active,
                },
                status=429,
                retry_after_s=self.batch_retry_after_s,
            )

    def refused_deploy(self, namespace_id: str, quota: str) -> None:
        """Count a deploy the replicas or memory quota refused."""
        self.rejected[(namespace_id, quota)] += 1

    # -- admin ------------------------------------------------------------------------------
    def get(self, namespace_id: str) -> NamespacePolicy:
        """The stored policy (NotFoundError for no such namespace)."""
        return self.rows.get(namespace_id)

    def put(self, namespace_id: str, raw: Mapping[str, Any]) -> NamespacePolicy:
        """Check and store a change (only the fields given; None clears one), then apply it
        here at once. ValidationError, NotFoundError."""
        policy = self.rows.put(namespace_id, check_fields(raw))
        self.load()
        return policy

    # -- keeping memory current ---------------------------------------------------------------
    def load(self) -> None:
        """Read the whole table and apply it."""
        with self._lock:
            stamp = self.rows.stamp()
            self._apply(self.rows.load_all())
            self._stamp = stamp

    def refresh(self) -> bool:
        """Reload when the table's stamp moved; True when it did."""
        if self.rows.stamp() == self._stamp:
            return False
        self.load()
        return True

    def _apply(self, policies: dict[str, NamespacePolicy]) -> None:
        self._policies = policies
        # the gates dict is changed key by key (each change atomic): the event loop may be
        # reading it; a gate whose rates did not change keeps its buckets
        for ns in [ns for ns in self.gates if ns not in policies]:
            self.gates.pop(ns, None)
        for ns, policy in policies.items():
            limited = policy.requests_per_second is not None or (
                policy.key_requests_per_second is not None
            )
            gate = self.gates.get(ns)
            if not limited:
                self.gates.pop(ns, None)
            elif gate is None or not gate.same_rates(policy):
                self.gates[ns] = RateGate(policy, self.clock, self.rejected)

    def start(self) -> None:
        """Check the database every ``refresh_s`` from now on (on the running loop)."""
        if self._task is None:
            self._task = asyncio.create_task(self._follow(), name="plughost-policies")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task

    async def _follow(self) -> None:
        checks = 0
        while True:
            await asyncio.sleep(self.refresh_s)
            checks += 1
            try:
                if checks % FULL_EVERY == 0:
                    await asyncio.to_thread(self.load)
                else:
                    await asyncio.to_thread(self.refresh)
            except asyncio.CancelledError:
                raise
            except Exception:  # the next check heals it
                log.warning("reading namespace policies failed", exc_info=True)


def build_policy_book(settings: Settings, db: Database) -> PolicyBook:
    """The server's book, loaded; the local autoscalers of this process clamp to its
    ``max_replicas`` and ``max_memory_mb`` (plughost.backends.local.autoscale)."""
    from plughost.backends.local.autoscale import CEILING

    book = PolicyBook(PolicyRows(db), settings.quota_refresh_s, settings.quota_batch_retry_after_s)
    CEILING.limits = book.policy
    return book


def attach_policies(
    book: PolicyBook, batch_service: Any, collector: Any, request_metrics: Any
) -> None:
    """Hand the book to the batch submissions (``max_batch_jobs``) and add the per-namespace
    families to ``/metrics`` (plughost.metrics.namespaces)."""
    from plughost.metrics.namespaces import NamespaceMetrics

    batch_service.quota = book.check_batch_jobs
    collector.extra.append(
        NamespaceMetrics(
            request_metrics, book.rejected, collector.replicas, book.rows.running_batch_jobs
        )
    )
