"""Masking organization secrets in the output lines plugin code writes.

Every line a replica writes passes :meth:`SecretMask.mask` on the event loop before it is
stored, followed or echoed, so the check must cost little and never wait: the mask reads an
immutable table (namespace -> organization, organization -> its secret values) swapped in
whole, and finding nothing to mask costs one dictionary read and one substring search per
value. The table is reloaded

- at once, in the writer's thread, when this server changes a secret (:meth:`refresh`);
- before a value is handed to plugin code that the table does not hold yet
  (:meth:`learn`), so a value a plugin got from the server is masked in its first line;
- in a background thread when it is older than ``ttl_s`` and a line arrives, or when a line
  comes from a namespace the table does not know: that catches secrets changed by another
  server on the same database or by the admin CLI.

Values shorter than :data:`MIN_MASKED_CHARS` are not masked: replacing every ``1`` or ``ab``
in a plugin's output would garble it, and such a value is guessed faster than hidden.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

MASK = "***"
MIN_MASKED_CHARS = 4
# a namespace the table does not know (created since) asks for a reload at most this often
UNKNOWN_RETRY_S = 1.0

log = logging.getLogger("plughost.logs")


@dataclass(frozen=True)
class MaskTable:
    """``orgs``: every namespace's organization. ``values``: each organization's secret
    values worth masking, longest first (a value inside a longer one is masked with it)."""

    orgs: Mapping[str, str] = field(default_factory=dict)
    values: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @staticmethod
    def build(orgs: Mapping[str, str], secrets: Iterable[tuple[str, str]]) -> MaskTable:
        """From namespace -> organization and (organization, value) pairs."""
        grouped: dict[str, set[str]] = {}
        for org_id, value in secrets:
            if len(value) >= MIN_MASKED_CHARS:
                grouped.setdefault(org_id, set()).add(value)
        values = {
            org: tuple(sorted(found, key=len, reverse=True)) for org, found in grouped.items()
        }
        return MaskTable(dict(orgs), values)


def mask_values(values: tuple[str, ...], text: str) -> str:
    """``text`` with each of ``values`` replaced by :data:`MASK`."""
    for value in values:
        if value in text:
            text = text.replace(value, MASK)
    return text


def _start_thread(target: Callable[[], None]) -> None:
    threading.Thread(target=target, name="plughost-secret-mask", daemon=True).start()


class SecretMask:
    """See the module docstring. ``load`` reads the table (blocking: a database read);
    ``background`` runs a refresh off the calling thread (tests pass one that runs it at
    once); ``clock`` measures the table's age."""

    def __init__(
        self,
        load: Callable[[], MaskTable],
        ttl_s: float = 10.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        background: Callable[[Callable[[], None]], None] = _start_thread,
    ) -> None:
        self._load = load
        self.ttl_s = ttl_s
        self._clock = clock
        self._background = background
        self._table = MaskTable()
        self._loaded_at = float("-inf")
        self._lock = threading.Lock()  # one reload at a time
        self._pending = False  # a background reload is on its way

    # -- the log path (event loop) ----------------------------------------------------------
    def mask(self, namespace_id: str, text: str) -> str:
        """``text`` with the secret values of the namespace's organization masked."""
        table = self._table
        org_id = table.orgs.get(namespace_id)
        self._reload_if_due(org_id is not None)
        if org_id is None:
            return text
        values = table.values.get(org_id)
        return mask_values(values, text) if values else text

    def mask_org(self, org_id: str, text: str) -> str:
        """``text`` with the organization's secret values masked (for output whose
        organization is known: a batch worker's)."""
        self._reload_if_due(True)
        values = self._table.values.get(org_id)
        return mask_values(values, text) if values else text

    # -- reloads (any thread) ---------------------------------------------------------------
    def refresh(self) -> None:
        """Reload the table now (blocking). A failed load keeps the old table (logged) until
        the next reload is due."""
        with self._lock:
            started = self._clock()
            try:
                table = self._load()
            except Exception:  # the log path keeps the table it has
                log.exception("reloading the secret mask failed; keeping the previous one")
                table = self._table
            self._table, self._loaded_at = table, started

    def learn(self, org_id: str, value: str) -> None:
        """Called before ``value`` is handed to plugin code of ``org_id``: reload first when
        the table would not mask it yet (blocking; from a worker thread)."""
        if len(value) >= MIN_MASKED_CHARS and value not in self._table.values.get(org_id, ()):
            self.refresh()

    def _reload_if_due(self, known: bool) -> None:
        """A background reload when the table is older than ``ttl_s``, or than
        :data:`UNKNOWN_RETRY_S` for a line of a namespace it does not know."""
        if self._pending:
            return
        age = self._clock() - self._loaded_at
        if age <= (self.ttl_s if known else min(self.ttl_s, UNKNOWN_RETRY_S)):
            return
        self._pending = True

        def run() -> None:
            try:
                self.refresh()
            finally:
                self._pending = False

        self._background(run)
