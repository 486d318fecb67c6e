"""What one replica of a local group is launched from: its :class:`ReplicaSpec` (a cold
start's), and the :class:`~.pool.Claim` that loads the release into a replica pool member
instead (the member's socket, secret, output, sandbox and uid; the release's files,
environment, options and learned preload)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import orjson

from plughost.backends.base import BASE_ENV, GroupSpec
from plughost.backends.local.adopt import Adoption
from plughost.backends.local.launch import ReplicaSpec, build_replica_env
from plughost.backends.local.pool import Claim, Member
from plughost.config import Settings
from plughost.domain.serve_config import serving_option
from plughost.replica.auth import new_secret
from plughost.sandbox.host import Sandbox, models_of


@dataclass(frozen=True)
class SpecMaker:
    """Builds the replica specs of one group (its release, this backend's settings)."""

    spec: GroupSpec
    settings: Settings
    socket_dir: Path
    sandbox: Sandbox | None
    adoption: Adoption | None
    container: Any

    def replica(self, replica_id: str, with_sandbox: bool = True) -> ReplicaSpec:
        """A cold start's spec (``with_sandbox``: a bubblewrap launch, which leases a uid)."""
        spec, settings = self.spec, self.settings
        env = {**BASE_ENV, "HOME": str(spec.plugin_dir), **spec.env}
        # the namespace's models at their real paths; a bubblewrap launch names its mounts
        models = self.sandbox.models if self.sandbox is not None else models_of(settings)
        env.update(models.env(spec.namespace_id, wrapped=False))
        detached = self.adoption is not None
        launch = None
        if self.sandbox is not None and with_sandbox:
            launch = self.sandbox.replica_launch(
                spec.plugin_dir,
                spec.namespace_id,
                spec.serve_config,
                env_dir=spec.env_path,
                detached=detached,
            )
        output = self.adoption.registry.output_path(replica_id) if self.adoption else None
        return ReplicaSpec(
            plugin_dir=spec.plugin_dir,
            socket_path=self.socket_dir / f"{replica_id}.sock",
            init_kwargs=dict(spec.init_kwargs),
            env=env,
            start_timeout_s=settings.replica_start_timeout_s,
            call_timeout_s=settings.replica_call_timeout_s,
            drain_timeout_s=settings.drain_timeout_s,
            sandbox=launch,
            # with an environment, its build already checked them (and the check costs the
            # replica a scan of every installed distribution)
            requirements=() if spec.env_path else spec.requirements,
            env_path=spec.env_path,
            kill_on_call_timeout=True,
            serving=serving_option(spec.serve_config),
            secret=new_secret(),
            output_path=output,
            detached=detached,
            orphan_timeout_s=settings.replica_orphan_timeout_s,
            container=self.container,
        )

    def claim(self, member: Member, sandbox: Sandbox, preload: str | None) -> Claim:
        """The release as a pool member receives it: the environment a bubblewrap launch of
        the release would have had, the worker options that depend on the release, and
        ``preload`` (the JSON an earlier replica of the release learned)."""
        base = self.replica(member.replica_id, with_sandbox=False)
        own = member.spec
        spec = replace(
            base, socket_path=own.socket_path, secret=own.secret, output_path=own.output_path,
            sandbox=own.sandbox,
        )
        env = build_replica_env(base)
        env.update(sandbox.claim_env(self.spec.namespace_id))
        options = {
            "--init-kwargs": orjson.dumps(spec.init_kwargs).decode(),
            "--drain-timeout": repr(float(spec.drain_timeout_s)),
        }
        if spec.requirements:
            options["--requirements"] = orjson.dumps(list(spec.requirements)).decode()
        if spec.serving is not None:
            options["--serving"] = spec.serving
        models = sandbox.models.folder(self.spec.namespace_id)
        learned = orjson.loads(preload) if preload else None
        return Claim(spec, self.spec.plugin_dir, models, env, options, learned)
