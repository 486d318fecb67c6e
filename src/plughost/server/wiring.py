"""The runtime container: every long-lived object of one server, built from Settings."""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from plughost.backends.base import Backend
from plughost.backends.local.backend import LocalBackend
from plughost.batch.bell import JobBell
from plughost.batch.scheduler import BatchScheduler
from plughost.batch.service import BatchService
from plughost.batch.wiring import BatchPart
from plughost.cluster.leader_backend import LeaderBackend
from plughost.cluster.member import Cluster, build_elector
from plughost.config import Settings
from plughost.control.controller import Controller
from plughost.control.workspace import Workspace
from plughost.dataplane.inference import Inference
from plughost.dataplane.routes import RouteTable
from plughost.domain.container import ContainerCalls
from plughost.domain.scope import PluginScope
from plughost.domain.states import Status
from plughost.egress.setup import add_allowlist, build_egress
from plughost.logs.masking import SecretMask
from plughost.metrics.collector import ValidationFailures
from plughost.metrics.requests import RequestMetrics
from plughost.metrics.window import RecentWindow
from plughost.persistence.db import Database
from plughost.persistence.models import ModelRows
from plughost.persistence.releases import Releases
from plughost.sandbox.host import Sandbox, config_from_settings
from plughost.server.observation import Observation, build_logs, build_observation, release_output
from plughost.services.accounts import Accounts
from plughost.services.container import ContainerService, namespace_owner
from plughost.services.deploy import DeployCommands
from plughost.services.lookup import PluginLookup
from plughost.services.model_files import ModelFiles
from plughost.services.models import NamespaceModels
from plughost.services.plugins import Plugins
from plughost.services.policies import PolicyBook, attach_policies, build_policy_book
from plughost.services.secret_box import open_secret_box
from plughost.services.secrets import Secrets, load_mask_table
from plughost.services.status import DeploymentStatus
from plughost.services.uploads import Uploads
from plughost.storage.base import ArchiveStore
from plughost.storage.factory import open_archive_store
from plughost.storage.signing import UrlSigner

log = logging.getLogger("plughost")


@dataclass
class Runtime:
    """Every long-lived object of one server, each built complete by :func:`build_runtime`."""

    settings: Settings
    db: Database
    accounts: Accounts
    store: ArchiveStore
    signer: UrlSigner
    uploads: Uploads
    plugins: Plugins
    deployments: DeployCommands  # deploy, undeploy, rollback
    deploy_status: DeploymentStatus  # status bodies and ETAs
    inference: Inference  # the data plane's calls
    controller: Controller
    batches: BatchPart
    observation: Observation  # logs, watches, metrics
    secrets: Secrets  # organization secrets (the API, the container, the log mask)
    container: ContainerService  # plugin code's container calls (secrets, LLM)
    models: NamespaceModels  # namespace models: their rows, archives and local files
    cluster: Cluster | None = None  # several servers on one database
    sandbox: Sandbox | None = None
    policies: PolicyBook | None = None  # namespace quotas and egress allowlists

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

    def stop_egress(self) -> None:
        """Close the egress proxy (after the replicas)."""
        if self.sandbox is not None and self.sandbox.egress_proxy is not None:
            self.sandbox.egress_proxy.stop()

    def sandbox_status(self) -> dict[str, Any]:
        """What ``GET /healthz`` reports of the sandbox: its layers on this machine and, for a
        backend whose replicas run on other machines (Ray), its report per node."""
        if self.sandbox is None:
            return {"mode": "off"}
        status = self.sandbox.status()
        nodes = self.controller.backend.sandbox_report()
        if nodes is not None:
            status["ray_nodes"] = nodes
        return status


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
    container: ContainerCalls | None = None,
) -> Backend:
    if settings.backend == "local":
        # replicas outlive the server and the next one adopts them
        return LocalBackend(
            settings, sandbox, live_releases=_live_ids(releases), container=container
        )
    if settings.backend == "ray":
        return make_ray_backend(settings, releases, owner, container)
    raise ValueError(f"unknown PLUGHOST_BACKEND {settings.backend!r} (available: local, ray)")


def _live_ids(releases: Releases | None) -> Callable[[], set[int]] | None:
    """The ids of the releases that may have replicas (pending, in progress, deployed)."""
    if releases is None:
        return None
    live = {Status.PENDING, Status.IN_PROGRESS, Status.DEPLOYED}
    return lambda: {rel.id for rel in releases.with_status(live)}


def make_ray_backend(
    settings: Settings,
    releases: Releases | None,
    owner: str,
    container: ContainerCalls | None = None,
) -> Backend:
    """The Ray Serve backend; `releases` tells its orphan sweep which releases are live."""
    try:
        from plughost.backends.ray.serve import RayBackend
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
    return RayBackend(settings, owner, wanted, container)


def backend_owner(accounts: Accounts) -> str:
    """A stable tag of this installation (derived from its database's signing secret) that
    keeps two servers sharing a Ray cluster out of each other's applications."""
    return hashlib.sha256(b"plughost-ray-owner:" + accounts.signing_secret()).hexdigest()[:8]


def build_runtime(settings: Settings) -> Runtime:
    """Open the database (migrating it), bootstrap accounts and build every service, each
    complete, after what it needs."""
    home = settings.resolved_home
    home.mkdir(parents=True, exist_ok=True)
    db = Database(settings.resolved_database_url)
    # a new (or older) schema is migrated by a child process, so alembic never stays in
    # this one; the sandbox's self-test runs meanwhile
    migration = db.start_migration()
    sandbox = build_sandbox(settings)
    sandbox.egress_proxy = build_egress(settings, sandbox)  # allowlisted namespaces' way out
    if migration is not None:
        migration.wait()
    accounts = Accounts(db)
    _bootstrap(settings, accounts)
    store = open_archive_store(settings)
    signer = UrlSigner(accounts.signing_secret())
    secrets, mask = build_secrets(settings, db)
    routes = RouteTable()  # before the container: plugins call plugins through it
    container = ContainerService(settings, secrets, namespace_owner(db), plugins=routes)
    # what the observation side counts and stores, before those who report to it
    logs = build_logs(settings, mask.mask)  # replicas' lines, secret values masked
    validation = ValidationFailures()
    request_metrics = RequestMetrics()
    recent = RecentWindow()
    uploads = Uploads(
        settings, db, store, signer,
        manifest_command=sandbox.manifest_command if sandbox.enabled else None,
        skip_scan=settings.unsafe_skip_scan,
        on_validation_failed=validation.failed,
    )
    models = build_models(settings, db, store, uploads)
    releases = Releases(db)
    workspace = Workspace(settings.resolved_home / "deployments", store, uploads.limits)
    owner = backend_owner(accounts)
    backend: Backend
    if db.is_sqlite:
        backend = make_backend(settings, sandbox, releases, owner, container)
    else:  # several servers may share the database: built once this one leads
        backend = LeaderBackend(
            settings.backend,
            lambda: make_backend(settings, sandbox, releases, owner, container),
        )
    lookup = PluginLookup(db)
    policies = build_policy_book(settings, db)  # before those who enforce its quotas
    sandbox.cap_namespaces(policies.max_memory_mb)  # each namespace's parent cgroup
    add_allowlist(sandbox.egress_proxy, policies.egress_allow, policies.egress_namespaces)
    elector = build_elector(settings, db)
    controller = Controller(
        settings, releases, backend, routes, workspace, lookup.info,
        last_lines=logs.last_lines,
        replica_output=release_output(logs),
        request_metrics=request_metrics,  # the rollout guard reads them
        gate=elector.is_leader if elector is not None else None,
        fence=elector.fence if elector is not None else None,
    )
    deploy_status = DeploymentStatus(
        settings, releases, controller, routes, lookup, request_metrics, recent
    )
    deployments = DeployCommands(settings, releases, controller, lookup, deploy_status, policies)
    inference = Inference(
        settings, routes, controller.restores, request_metrics, lookup, rate_gates=policies.gates
    )
    plugins = Plugins(db, store, deployments)
    observation = build_observation(
        db, logs, validation, deploy_status, request_metrics, recent, container.model_loads
    )
    cluster = Cluster(
        settings, db, releases, accounts, controller, routes, owner,
        on_plugin_removed=deployments.plugin_removed,  # deleted or disabled elsewhere
        elector=elector,
    )
    batches = build_batches(
        settings, db, store, signer, uploads, sandbox, controller, cluster, container,
        mask.mask_org,
    )
    attach_policies(policies, batches.service, observation.collector, request_metrics)
    return Runtime(
        settings, db, accounts, store, signer, uploads, plugins, deployments, deploy_status,
        inference, controller, batches, observation, secrets, container, models, cluster,
        sandbox, policies=policies,
    )


def build_models(
    settings: Settings, db: Database, store: ArchiveStore, uploads: Uploads
) -> NamespaceModels:
    """Namespace models, sharing the plugins' intake gate; their files laid out again for
    this machine (those missing fetched from the store) before the server takes requests."""
    models = NamespaceModels(
        settings, ModelRows(db), store, ModelFiles(settings, store), uploads.gate
    )
    models.restore()
    return models


def build_secrets(settings: Settings, db: Database) -> tuple[Secrets, SecretMask]:
    """The secrets service and the log mask it keeps current (loaded once here)."""
    box = open_secret_box(settings, db)
    mask = SecretMask(lambda: load_mask_table(db, box))
    mask.refresh()
    return Secrets(db, box, mask), mask


def _bootstrap(settings: Settings, accounts: Accounts) -> None:
    """Create the first API key on a new database, shown once and written to a file."""
    boot = accounts.bootstrap(settings.bootstrap_key)
    if boot.created_key:
        write_admin_key(settings, boot.created_key)
        # Shown once on the console, on purpose: this is the operator's first credential.
        log.warning(
            "created the first API key: %s (also written to %s)",
            boot.created_key,
            settings.admin_key_path,
        )


def build_batches(
    settings: Settings,
    db: Database,
    store: ArchiveStore,
    signer: UrlSigner,
    uploads: Uploads,
    sandbox: Sandbox,
    controller: Controller,
    cluster: Cluster,
    container: ContainerCalls | None = None,
    mask: Callable[[str, str], str] | None = None,
) -> BatchPart:
    """The batch service and its scheduler (which shares the replicas' environments)."""
    bell = JobBell()
    service = BatchService(settings, db, store, signer, bell)
    scheduler = BatchScheduler(
        settings, service, store, uploads.limits, sandbox, controller.envs, container, mask
    )
    return BatchPart(settings, service, scheduler, controller.backend, cluster.until_leading)


def build_sandbox(settings: Settings) -> Sandbox:
    """Measure the sandbox layers (SandboxUnavailable in strict mode when one is missing)."""
    if settings.unsafe_skip_scan:
        log.warning(
            "PLUGHOST_UNSAFE_SKIP_SCAN is set: uploads are NOT scanned; only the sandbox "
            "stands between plugin code and this machine. Never set this outside tests."
        )
    return Sandbox.create(config_from_settings(settings))
