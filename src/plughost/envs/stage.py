"""The controller's environment step: in a release's ``pending`` phase, find or build the
environment its manifest dependencies need, say which in the release's status message, and
tell the status endpoint how long the build should still take."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from plughost.config import Settings
from plughost.envs.builder import EnvBuilder, EnvPlan
from plughost.envs.policy import typo_warnings

log = logging.getLogger("plughost.envs")

Note = Callable[[str], Awaitable[object]]


class PluginEnvironments:
    """Environments of releases; one per server, shared by every rollout."""

    def __init__(self, builder: EnvBuilder) -> None:
        self.builder = builder
        self._deadlines: dict[int, float] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> PluginEnvironments:
        return cls(EnvBuilder.from_settings(settings))

    async def prepare(
        self,
        release_id: int,
        dependencies: tuple[str, ...],
        plugin_dir: Path | None = None,
        note: Note | None = None,
    ) -> Path | None:
        """The import folder release ``release_id`` runs with (built now if need be), or None
        when the base set has every dependency or installation is off. ``note`` receives the
        status message ("building ..." / "reusing ...", and a warning for each dependency
        named like a popular package: those stay in the release's events). Raises EnvBuildFailed or
        BadRequirement; cancelling stops the build."""
        if not dependencies:
            return None
        for warning in typo_warnings(dependencies):  # visible, never blocking (.policy)
            log.warning("release %s: %s", release_id, warning)
            if note is not None:
                await note(warning)
        plan = await asyncio.to_thread(self.builder.plan, dependencies, plugin_dir)
        if plan is None:
            return None
        if plan.exists():
            if note is not None:
                await note(reuse_message(plan))
            return plan.site
        self._deadlines[release_id] = time.monotonic() + self.builder.estimate_s(plan)
        try:
            if note is not None:
                await note(build_message(plan))
            return await self.builder.ensure(plan)
        finally:
            self._deadlines.pop(release_id, None)

    def build_seconds_left(self, release_id: int) -> float | None:
        """Estimated seconds until the release's environment is built; None when no build
        of it runs."""
        deadline = self._deadlines.get(release_id)
        if deadline is None:
            return None
        return max(1.0, deadline - time.monotonic())


def dependencies_of(manifest: dict[str, Any]) -> tuple[str, ...]:
    """The manifest's ``dependencies`` as strings."""
    return tuple(str(d) for d in manifest.get("dependencies") or ())


def _packages(plan: EnvPlan) -> str:
    count = len(plan.requirements)
    return f"{count} package{'s' if count != 1 else ''} ({', '.join(plan.requirements)})"


def build_message(plan: EnvPlan) -> str:
    return f"building the plugin environment: {_packages(plan)}"


def reuse_message(plan: EnvPlan) -> str:
    return f"reusing the plugin environment {plan.folder.name}: {_packages(plan)}"
