"""Configuration: one Settings object, built once at start-up and passed down.

This is the only module that reads the process environment (through pydantic-settings).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Server settings; every field can be set as `PLUGHOST_<FIELD>` in the environment."""

    model_config = SettingsConfigDict(env_prefix="PLUGHOST_", extra="ignore")

    home: Path = Field(default=Path("./.plughost"), description="data folder: db, archives, keys")
    database_url: str = Field(default="", description="SQLAlchemy URL; empty = SQLite in home")
    bootstrap_key: str = Field(default="", description="first API key; empty = generate one")
    public_url: str = Field(default="", description="base URL used in presigned URLs")
    # several servers on one PostgreSQL database (plughost.control.leader_run)
    peer_url: str = Field(
        default="", description="how other servers reach this one; empty = http://host:port"
    )
    host: str = "127.0.0.1"
    port: int = 8080
    # `plughost serve --workers N`: server processes sharing the port (plughost.workers);
    # more than 1 needs PostgreSQL
    workers: int = Field(default=1, ge=1, le=64)

    # archive store (issue 16): plugin archives on S3 or an S3-compatible server
    storage_url: str = Field(
        default="",
        description="empty: archives in $PLUGHOST_HOME/archives; s3://bucket/prefix: on S3 "
        "(needs the `s3` extra; region and credentials from boto3's usual chain)",
    )
    s3_endpoint_url: str = Field(
        default="", description="S3-compatible endpoint (MinIO, moto); empty = AWS"
    )
    s3_connect_timeout_s: float = Field(default=5.0, gt=0)

    max_archive_bytes: int = 524_288_000
    max_archive_entries: int = 1000
    manifest_timeout_s: float = 20.0
    multipart_overhead_bytes: int = 1_048_576
    # archive intakes (unpack, scan, manifest child) running at once, each in a worker
    # thread; more wait their turn (plughost.services.intake_gate)
    intake_concurrency: int = Field(default=0, ge=0, description="0 = the machine's cores")
    # log one line per event-loop stall longer than this, naming the code that blocked it
    # (plughost.loopwatch); the test suite sets it for every server it starts
    loop_stall_ms: float = Field(default=0.0, ge=0, description="0 = no loop watchdog")

    # deployment (local backend)
    backend: str = "local"
    max_concurrent_deployments: int = 4
    default_deploy_eta_s: int = 10
    replica_start_timeout_s: float = 120.0
    replica_call_timeout_s: float = 60.0
    drain_timeout_s: float = 30.0
    reconcile_interval_s: float = 0.2
    max_start_crashes: int = 3
    # issue 17: a local group scaled to zero keeps one replica process started ahead of need
    # (sandboxed, the worker imported, the plugin not loaded: backends/local_spare.py)
    warm_spare: bool = True
    # ... which, inside its sandbox, also imports the plugin's dependencies as the release's
    # last replica start learned them (torch for MiniLM: most of its cold start, and most of
    # the spare's memory while it waits; plughost.worker.preload)
    spare_preload: bool = True
    # a small process holds a copy of the listening socket: after a crash of the server the
    # port stays open (connections queue) this long for the next server (plughost.keeper);
    # 0: no keeper, a crash closes the port
    port_keep_s: float = Field(default=60.0, ge=0)
    # how long a call to a route whose release is being restored after a server start waits
    # for it before a 503 with Retry-After (issue 14)
    restore_hold_s: float = Field(default=30.0, ge=0)
    # a deliberate stop (SIGTERM, Ctrl-C) leaves the local replicas running for the next
    # server to adopt (issue 14: upgrades and takeovers); a crash always leaves them
    keep_replicas_on_stop: bool = False
    # a local replica that has had no server connected for this long ends itself (0: never;
    # it then waits for the next server on the same home, which adopts or stops it)
    replica_orphan_timeout_s: float = Field(default=600.0, ge=0)

    # Ray Serve backend (PLUGHOST_BACKEND=ray, needs the `ray` extra)
    ray_address: str = Field(
        default="",
        description="empty: start a local Ray owned by the server; auto, host:port or "
        "ray://host:port: join that cluster",
    )
    ray_num_cpus: int = Field(default=0, ge=0, description="CPUs of the owned local Ray; 0 = all")
    ray_object_store_mb: int = Field(default=256, ge=80, description="owned local Ray only")
    ray_replica_num_cpus: float = Field(
        default=0.1, ge=0, description="CPUs a replica reserves when serve_config has no num_cpus"
    )
    ray_pip: Literal["missing", "all", "off"] = Field(
        default="missing",
        description="manifest dependencies pip-installed by Ray for replicas: missing (none: "
        "the plugin environment built on the server ships as a py_module) | all | off",
    )
    ray_replica_pip: str = Field(
        default="", description="comma-separated pip packages added to every replica"
    )
    ray_health_check_period_s: float = Field(default=5.0, gt=0)

    # plugin environments: manifest `dependencies` the base set lacks, installed with uv
    plugin_install: bool = Field(
        default=True, description="install missing manifest dependencies (off: they fail)"
    )
    plugin_index_url: str = Field(default="", description="index uv installs from; empty = PyPI")
    plugin_uv_cache_dir: str = Field(
        default="", description="uv's download cache; empty = $PLUGHOST_HOME/uv-cache"
    )
    plugin_build_sdists: bool = Field(
        default=False, description="let uv build source distributions (runs their build code)"
    )
    plugin_build_timeout_s: float = Field(default=600.0, gt=0)

    # sandbox of plugin code (see SECURITY.md)
    sandbox: Literal["off", "auto", "strict"] = Field(
        default="auto", description="off | auto (use what the machine has) | strict (all layers)"
    )
    sandbox_bwrap: str = Field(default="bwrap", description="bubblewrap executable")
    sandbox_egress_namespaces: str = Field(
        default="", description="comma-separated namespace ids whose plugins may use the network"
    )
    sandbox_memory_gb: float = Field(default=2.0, gt=0, description="RLIMIT_AS default")
    sandbox_max_open_files: int = Field(default=1024, gt=0)
    sandbox_max_processes: int = Field(default=256, gt=0, description="RLIMIT_NPROC per replica")
    sandbox_max_file_mb: int = Field(default=64, gt=0, description="RLIMIT_FSIZE")
    sandbox_tmp_mb: int = Field(default=64, gt=0, description="size of the private /tmp")
    sandbox_uid_base: int = Field(default=1_900_000_000, gt=0)
    sandbox_uid_count: int = Field(default=65_536, gt=0)
    unsafe_skip_scan: bool = Field(
        default=False, description="TESTS ONLY: skip the upload scanner (the sandbox must hold)"
    )

    # batch jobs (a plugin's pipeline.py over a data set)
    batch_max_jobs: int = Field(default=2, gt=0, description="batch jobs running at once")
    batch_max_workers: int = Field(
        default=0, ge=0, description="worker processes per job at most; 0 = the machine's cores"
    )
    batch_max_input_bytes: int = Field(default=10 * 1024**3, gt=0)
    batch_chunk_rows: int = Field(
        default=1024, gt=0, description="rows per chunk (rounded up to a multiple of batch_size)"
    )
    batch_worker_start_timeout_s: float = Field(default=120.0, gt=0)
    unsafe_batch_ray_in_process: bool = Field(
        default=False,
        description="BENCH ONLY: on Ray, run batch pipelines in Ray's actors, unsandboxed",
    )

    # observation (issue 13): /metrics access and the replicas' kept output
    metrics_public: bool = Field(
        default=False, description="serve /metrics without a key (else an admin key)"
    )
    logs_release_cap_mb: float = Field(default=8.0, gt=0, description="kept output per release")
    logs_total_cap_mb: float = Field(default=1024.0, gt=0, description="kept output, all releases")
    logs_rate_kb_s: float = Field(
        default=1024.0, gt=0, description="a release's output beyond this rate is dropped"
    )
    # debugging: log every close(2) that fails with EBADF, with its stack (plughost.fdcheck);
    # the test suite sets it for every server it starts
    fd_check: bool = Field(default=False, description="log failed closes (EBADF) with stacks")

    @property
    def intake_slots(self) -> int:
        return self.intake_concurrency or max(1, os.cpu_count() or 1)

    @property
    def resolved_home(self) -> Path:
        return self.home.expanduser().resolve()

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.resolved_home / 'plughost.db'}"

    @property
    def archive_dir(self) -> Path:
        return self.resolved_home / "archives"

    @property
    def archive_cache_dir(self) -> Path:
        """Local copies of archives kept on S3, read to validate and deploy them."""
        return self.resolved_home / "archive-cache"

    @property
    def work_dir(self) -> Path:
        return self.resolved_home / "work"

    @property
    def batch_dir(self) -> Path:
        return self.resolved_home / "batches"

    @property
    def envs_dir(self) -> Path:
        return self.resolved_home / "envs"

    @property
    def uv_cache_dir(self) -> Path:
        if self.plugin_uv_cache_dir:
            return Path(self.plugin_uv_cache_dir).expanduser().resolve()
        return self.resolved_home / "uv-cache"

    @property
    def egress_namespaces(self) -> frozenset[str]:
        return frozenset(x.strip() for x in self.sandbox_egress_namespaces.split(",") if x.strip())

    @property
    def logs_dir(self) -> Path:
        return self.resolved_home / "logs"

    @property
    def replicas_dir(self) -> Path:
        """The local replica registry (issue 14): one record and one output file each."""
        return self.resolved_home / "replicas"

    @property
    def admin_key_path(self) -> Path:
        return self.resolved_home / "admin-key"
