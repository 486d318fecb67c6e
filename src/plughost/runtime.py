"""The runtime container: every long-lived object of one server, built from Settings."""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from plughost.backends.base import Backend
from plughost.backends.local import LocalBackend
from plughost.config import Settings
from plughost.control.controller import Controller
from plughost.control.leader_backend import LeaderBackend
from plughost.control.leader_run import Cluster
from plughost.control.workspace import Workspace
from plughost.domain.scope import PluginScope
from plughost.domain.states import Status
from plughost.observation import Observation, build_observation
from plughost.persistence.db import Database
from plughost.persistence.releases import Releases
from plughost.routing.table import RouteTable
from plughost.sandbox.host import Sandbox, config_from_settings
from plughost.services.accounts import Accounts
from plughost.services.deployments import Deployments
from plughost.services.plugins import Plugins
from plughost.services.uploads import Uploads
from plughost.storage.base import ArchiveStore
from plughost.storage.factory import open_archive_store
from plughost.storage.signing import UrlSigner

log = logging.getLogger("plughost")


@dataclass
class Runtime:
    settings: Settings
    db: Database
    accounts: Accounts
    store: ArchiveStore
    signer: UrlSigner
    uploads: Uploads
    plugins: Plugins
    deployments: Deployments
    controller: Controller
    sandbox: Sandbox | None = None
    observation: Observation | None = None  # logs, watches, metrics (issue 13)
    cluster: Cluster | None = None  # several servers on one database (issue 16)

    def download_url(self, scope: PluginScope, plugin_id: str, base_url: str) -> str:
        """A signed GET URL of the plugin's archive, valid for an hour (the store's own
        presigned URL when it has them: S3)."""
        key = self.plugins.storage_key(scope, plugin_id)
        direct = self.store.presign_get(key, 3600)
        if direct is not None:
            return direct
        expires = int(time.time()) + 3600
        resource = f"/v1/_store/archives/{key}"
        sig = self.signer.signature("GET", resource, expires)
        return f"{base_url.rstrip('/')}{resource}?expires={expires}&signature={sig}"

    def on_enable(self, scope: PluginScope, plugin_id: str, deploy: bool) -> str:
        """Deployment side of enable, in the SDK's words: `skipped` (deploy=false), `pending`
        (a realtime deployment was queued) or `deployed` (batch only: nothing to start)."""
        if not deploy:
            return "skipped"
        result = self.deployments.deploy(scope, plugin_id, None)
        return "deployed" if result.get("deployment_type") == "batch_only" else "pending"


def write_admin_key(settings: Settings, key: str) -> None:
    path = settings.admin_key_path
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(key + "\n")
    os.chmod(path, 0o600)


def make_backend(
    settings: Settings,
    sandbox: Sandbox | None = None,
    releases: Releases | None = None,
    owner: str = "plughost",
) -> Backend:
    if settings.backend == "local":
        # replicas outlive the server and the next one adopts them (issue 14)
        return LocalBackend(settings, sandbox, live_releases=_live_ids(releases))
    if settings.backend == "ray":
        return make_ray_backend(settings, releases, owner)
    raise ValueError(f"unknown PLUGHOST_BACKEND {settings.backend!r} (available: local, ray)")


def _live_ids(releases: Releases | None) -> Callable[[], set[int]] | None:
    """The ids of the releases that may have replicas (pending, in progress, deployed)."""
    if releases is None:
        return None
    live = {Status.PENDING, Status.IN_PROGRESS, Status.DEPLOYED}
    return lambda: {rel.id for rel in releases.with_status(live)}


def make_ray_backend(settings: Settings, releases: Releases | None, owner: str) -> Backend:
    """The Ray Serve backend; `releases` tells its orphan sweep which releases are live."""
    try:
        from plughost.backends.ray_serve import RayBackend
    except ImportError as exc:
        raise ValueError(
            f"PLUGHOST_BACKEND=ray needs Ray Serve: pip install 'plughost[ray]' ({exc})"
        ) from exc
    live = {Status.PENDING, Status.IN_PROGRESS, Status.DEPLOYED}

    def wanted() -> set[int]:
        if releases is None:  # nothing known: keep every application
            raise RuntimeError("no releases table to sweep against")
        return {rel.id for rel in releases.with_status(live)}

    # Each Serve replica runs the plugin in a sandboxed worker on its node (SECURITY.md).
    return RayBackend(settings, owner, wanted)


def backend_owner(accounts: Accounts) -> str:
    """A stable tag of this installation (derived from its database's signing secret) that
    keeps two servers sharing a Ray cluster out of each other's applications."""
    return hashlib.sha256(b"plughost-ray-owner:" + accounts.signing_secret()).hexdigest()[:8]


def build_runtime(settings: Settings) -> Runtime:
    """Open the database (migrating it), bootstrap accounts and wire the services."""
    home = settings.resolved_home
    home.mkdir(parents=True, exist_ok=True)
    db = Database(settings.resolved_database_url)
    db.migrate()
    accounts = Accounts(db)
    boot = accounts.bootstrap(settings.bootstrap_key)
    if boot.created_key:
        write_admin_key(settings, boot.created_key)
        # Shown once on the console, on purpose: this is the operator's first credential.
        log.warning(
            "created the first API key: %s (also written to %s)",
            boot.created_key,
            settings.admin_key_path,
        )
    store = open_archive_store(settings)
    signer = UrlSigner(accounts.signing_secret())
    sandbox = build_sandbox(settings)
    uploads = Uploads(settings, db, store, signer)
    uploads.limits = replace(
        uploads.limits,
        manifest_command=sandbox.manifest_command if sandbox.enabled else None,
        skip_scan=settings.unsafe_skip_scan,
    )
    releases = Releases(db)
    routes = RouteTable()
    workspace = Workspace(settings.resolved_home / "deployments", store, uploads.limits)
    deployments: Deployments
    owner = backend_owner(accounts)
    backend: Backend
    if db.is_sqlite:
        backend = make_backend(settings, sandbox, releases, owner)
        sandbox.node_reports = getattr(backend, "sandbox_report", None)  # Ray: per node
    else:  # several servers may share the database: built once this one leads
        backend = LeaderBackend(
            settings.backend, lambda: make_backend(settings, sandbox, releases, owner)
        )
        backend.on_built.append(
            lambda real: setattr(sandbox, "node_reports", getattr(real, "sandbox_report", None))
        )
    controller = Controller(
        settings,
        releases,
        backend,
        routes,
        workspace,
        plugin_info=lambda pk: deployments.plugin_info(pk),
    )
    deployments = Deployments(settings, db, releases, controller, routes)
    plugins = Plugins(db, store, deployments)
    observation = build_observation(settings, db, deployments)
    controller.last_lines = observation.logs.last_lines
    controller.request_metrics = deployments.request_metrics  # the rollout guard reads them
    controller.replica_output = observation.replica_output
    uploads.on_validation_failed = observation.validation.failed
    cluster = Cluster(settings, db, releases, accounts, controller, routes, owner)
    cluster.on_plugin_removed = deployments.plugin_removed  # deleted or disabled elsewhere
    return Runtime(
        settings, db, accounts, store, signer, uploads, plugins, deployments, controller, sandbox,
        observation, cluster,
    )


def build_sandbox(settings: Settings) -> Sandbox:
    """Measure the sandbox layers (SandboxUnavailable in strict mode when one is missing)."""
    if settings.unsafe_skip_scan:
        log.warning(
            "PLUGHOST_UNSAFE_SKIP_SCAN is set: uploads are NOT scanned; only the sandbox "
            "stands between plugin code and this machine. Never set this outside tests."
        )
    return Sandbox.create(config_from_settings(settings))
