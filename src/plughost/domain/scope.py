"""Where a plugin lives: the caller's organization and, for namespace routes, a namespace."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PluginScope:
    """A namespace of an organization, or the organization itself (namespace_id None).

    Named apart from ASGI's ``Scope`` (the request dict), which the API layer also uses.
    """

    organization_id: str
    namespace_id: str | None

    @property
    def key(self) -> str:
        return self.namespace_id or ""

    def fields(self) -> dict[str, str]:
        if self.namespace_id:
            return {"namespace_id": self.namespace_id}
        return {"organization_id": self.organization_id}
