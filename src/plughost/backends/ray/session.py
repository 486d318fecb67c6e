"""The server's connection to Ray and Serve: every blocking Ray call of the backend lives here.

Callers run these methods in worker threads (``asyncio.to_thread``); none of them touches
the event loop. Ray is imported lazily so plughost imports without the ``ray`` extra.
"""

from __future__ import annotations

import inspect
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import plughost
from plughost.backends.ray import private as ray_private
from plughost.backends.ray.options import APP_LOGGING, AppState
from plughost.config import Settings

log = logging.getLogger("plughost.backend.ray")

# Shipped with the plughost package, never needed by a replica.
PACKAGE_EXCLUDES = ["__pycache__", "*.pyc"]
PICKLE_RACE_RETRIES = 3
RAY_CLIENT_REFUSED = (
    "PLUGHOST_RAY_ADDRESS={address}: Ray Client (ray://) addresses are not supported: the "
    "server keeps direct channels to the replicas' workers (a Unix socket on its own node, "
    "the node's address otherwise), which a Ray Client driver outside the cluster cannot "
    "reach. Run plughost on a machine of the cluster and give the GCS address (host:6379)"
)

T = TypeVar("T")


class ServeSession:
    """Connects to (or starts) Ray, starts Serve without its HTTP proxy, uploads packages,
    deploys, deletes and reads the status of applications."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.owns_cluster = not settings.ray_address.strip()
        self.connected = False
        self.node_id = ""
        self._plughost_uri = ""
        self._scratch = Path(tempfile.mkdtemp(prefix="plughost-ray-"))
        self._serve_lock = threading.Lock()

    @property
    def address(self) -> str:
        return self.settings.ray_address.strip() or "local"

    # -- connection -----------------------------------------------------------------------
    def connect(self) -> None:
        """ray.init (a local instance owned by this server, or joining a cluster), then
        serve.start with the proxy disabled: plughost's router is the only way in."""
        import ray
        from ray import serve

        logging.getLogger("ray.serve").setLevel(logging.WARNING)
        common: dict[str, Any] = {
            "logging_level": logging.WARNING,
            "log_to_driver": False,
            "ignore_reinit_error": True,
        }
        if self.owns_cluster:
            ray.init(
                address="local",  # a new instance, even if `ray start` runs on this machine
                num_cpus=self.settings.ray_num_cpus or os.cpu_count() or 1,
                include_dashboard=False,
                object_store_memory=self.settings.ray_object_store_mb * 1024 * 1024,
                **common,
            )
        else:
            address = self.settings.ray_address.strip()
            if address.startswith("ray://"):
                raise ValueError(RAY_CLIENT_REFUSED.format(address=address))
            ray.init(address=address, **common)
        serve.start(proxy_location="Disabled", logging_config=APP_LOGGING)
        self.node_id = str(ray.get_runtime_context().get_node_id())
        self.connected = True

    def directory(self, owner: str) -> Any:
        """The server's replica directory actor (created, or found after a restart)."""
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        from plughost.backends.ray.directory import NAMESPACE, ReplicaDirectory, directory_name

        actor = ray.remote(ReplicaDirectory).options(
            name=directory_name(owner),
            namespace=NAMESPACE,
            lifetime="detached",
            get_if_exists=True,
            num_cpus=0,
            max_concurrency=1000,
            # on this server's node: anywhere else, the death of that node would take the
            # listing with it while every replica (registered once) lived on
            scheduling_strategy=NodeAffinitySchedulingStrategy(self.node_id, soft=False),
        )
        return actor.remote()

    @staticmethod
    def alive_nodes() -> set[str]:
        """The ids of the cluster's live nodes (one GCS call)."""
        import ray

        return {str(n["NodeID"]) for n in ray.nodes() if n.get("Alive")}

    @staticmethod
    def kill(actor: Any) -> None:
        import ray

        ray.kill(actor)

    def close(self) -> None:
        """Disconnect; a Ray instance this server started stops with it."""
        import ray

        self.connected = False
        if ray.is_initialized():
            ray.shutdown()
        shutil.rmtree(self._scratch, ignore_errors=True)

    # -- packages -------------------------------------------------------------------------
    def upload(self, directory: Path, tag: str = "", parent: bool = False) -> str:
        """Upload a folder as a runtime_env package; returns its ``gcs://`` URI.

        ``tag`` is added to the content hash so each release gets a package (and a working
        directory on the nodes) of its own, as each local release has its own folder.
        ``parent`` keeps the folder itself in the package (py_modules). Re-uploading an
        existing package only refreshes its pin.
        """
        excludes = PACKAGE_EXCLUDES if parent else []
        uri = ray_private.package_uri(str(directory), excludes)
        if tag:
            uri = uri.removesuffix(".zip") + f"_{tag}.zip"
        ray_private.upload_package(uri, str(self._scratch), str(directory), parent, excludes, log)
        return uri

    def plughost_package(self) -> str:
        """The plughost package as a py_module: a cluster need not have plughost installed.

        Hashed and uploaded once per server process (the code this server runs does not
        change under it; hashing the package took ~0.1 s of every deploy); later calls only
        refresh its pin."""
        if self._plughost_uri:
            self.pin([self._plughost_uri], 1800)
            return self._plughost_uri
        self._plughost_uri = self.upload(Path(plughost.__file__).resolve().parent, parent=True)
        return self._plughost_uri

    @staticmethod
    def pin(uris: list[str], expiration_s: int) -> None:
        """Keep packages in the cluster while replicas may still need to (re)start from them."""
        for uri in uris:
            ray_private.pin_package(uri, expiration_s)

    # -- applications ---------------------------------------------------------------------
    def _serve(self, call: Callable[[], T]) -> T:
        """Run one Serve API call, one at a time.

        Serve builds its configs by registering modules in cloudpickle's process-wide
        "pickle by value" set and removing them again, so two calls in two threads (a deploy
        and a status read) can trip over each other; Ray's own router thread may still do so,
        hence the retry."""
        for attempt in range(PICKLE_RACE_RETRIES):
            with self._serve_lock:
                try:
                    return call()
                except ValueError as exc:
                    if "pickle by value" not in str(exc) or attempt + 1 == PICKLE_RACE_RETRIES:
                        raise
            time.sleep(0.05)
        raise AssertionError("unreachable")

    def deploy(self, name: str, options: dict[str, Any], init_args: tuple[Any, ...]) -> None:
        """Create or replace application ``name`` without waiting for it to run."""
        from ray import serve

        from plughost.backends.ray.replica import PluginReplica

        accepted = inspect.signature(serve.deployment).parameters
        dropped = sorted(set(options) - set(accepted))
        if dropped:  # options newer than the installed Ray
            log.info("this Ray release ignores deployment options %s", ", ".join(dropped))

        def run() -> None:
            kwargs = {k: v for k, v in options.items() if k in accepted}
            app = serve.deployment(**kwargs)(PluginReplica).bind(*init_args)
            ray_private.run_app(app, name, APP_LOGGING)

        self._serve(run)

    def delete(self, name: str) -> None:
        """Ask Serve to delete ``name`` (does not wait)."""
        self._serve(lambda: ray_private.delete_app(name))

    def handle(self, name: str) -> Any:
        from ray import serve

        return self._serve(lambda: serve.get_app_handle(name))

    def app_status(self, name: str) -> str:
        """The status of one application alone (RUNNING, DEPLOYING, ...; NOT_STARTED when
        Serve has none of that name): a small controller call, unlike :meth:`status`."""
        return _enum_text(self._serve(lambda: ray_private.app_status(name)))

    def status(self) -> dict[str, AppState]:
        """Every Serve application and its state."""
        from ray import serve

        apps: dict[str, AppState] = {}
        for name, app in self._serve(serve.status).applications.items():
            deployments = list(app.deployments.values())
            dep = deployments[0] if deployments else None
            apps[name] = AppState(
                status=_enum_text(app.status),
                message=app.message or "",
                deployment_status=_enum_text(dep.status) if dep else "",
                trigger=_enum_text(dep.status_trigger) if dep else "",
                running=_running(dep.replica_states) if dep else 0,
                deployment_message=(dep.message or "") if dep else "",
            )
        return apps


def _running(replica_states: dict[Any, int] | None) -> int:
    return sum(n for state, n in (replica_states or {}).items() if _enum_text(state) == "RUNNING")


def _enum_text(value: Any) -> str:
    return str(getattr(value, "value", value) or "")
