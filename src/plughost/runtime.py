"""The runtime container: every long-lived object of one server, built from Settings."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass

from plughost.config import Settings
from plughost.persistence.db import Database
from plughost.services.accounts import Accounts
from plughost.backends.base import Backend
from plughost.backends.local import LocalBackend
from plughost.control.controller import Controller
from plughost.control.workspace import Workspace
from plughost.persistence.releases import Releases
from plughost.routing.table import RouteTable
from plughost.services.deployments import Deployments
from plughost.services.plugins import Plugins
from plughost.services.uploads import Scope, Uploads
from plughost.storage.local import LocalArchiveStore
from plughost.storage.signing import UrlSigner

log = logging.getLogger("plughost")


@dataclass
class Runtime:
    settings: Settings
    db: Database
    accounts: Accounts
    store: LocalArchiveStore
    signer: UrlSigner
    uploads: Uploads
    plugins: Plugins
    deployments: Deployments
    controller: Controller

    def download_url(self, scope: Scope, plugin_id: str, base_url: str) -> str:
        """A signed GET URL of the plugin's archive, valid for an hour."""
        key = self.plugins.storage_key(scope, plugin_id)
        expires = int(time.time()) + 3600
        resource = f"/v1/_store/archives/{key}"
        sig = self.signer.signature("GET", resource, expires)
        return f"{base_url.rstrip('/')}{resource}?expires={expires}&signature={sig}"

    def on_enable(self, scope: Scope, plugin_id: str, deploy: bool) -> str:
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


def make_backend(settings: Settings) -> Backend:
    if settings.backend == "local":
        return LocalBackend(settings)
    raise ValueError(f"unknown PLUGHOST_BACKEND {settings.backend!r} (available: local)")


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
    store = LocalArchiveStore(settings.archive_dir)
    signer = UrlSigner(accounts.signing_secret())
    uploads = Uploads(settings, db, store, signer)
    releases = Releases(db)
    routes = RouteTable()
    workspace = Workspace(settings.resolved_home / "deployments", store, uploads.limits)
    deployments: Deployments
    controller = Controller(
        settings,
        releases,
        make_backend(settings),
        routes,
        workspace,
        plugin_info=lambda pk: deployments.plugin_info(pk),
    )
    deployments = Deployments(settings, db, releases, controller, routes)
    plugins = Plugins(db, store, deployments)
    return Runtime(settings, db, accounts, store, signer, uploads, plugins, deployments, controller)
