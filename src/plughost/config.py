"""Configuration: one Settings object, built once at start-up and passed down.

This is the only module that reads the process environment (through pydantic-settings).
"""

from __future__ import annotations

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
    host: str = "127.0.0.1"
    port: int = 8080

    max_archive_bytes: int = 524_288_000
    max_archive_entries: int = 1000
    manifest_timeout_s: float = 20.0
    multipart_overhead_bytes: int = 1_048_576

    # deployment (local backend)
    backend: str = "local"
    max_concurrent_deployments: int = 4
    default_deploy_eta_s: int = 10
    replica_start_timeout_s: float = 120.0
    replica_call_timeout_s: float = 60.0
    drain_timeout_s: float = 30.0
    reconcile_interval_s: float = 0.2
    max_start_crashes: int = 3

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
        description="manifest dependencies pip-installed for replicas: those the server's "
        "environment lacks | all | none",
    )
    ray_replica_pip: str = Field(
        default="", description="comma-separated pip packages added to every replica"
    )
    ray_health_check_period_s: float = Field(default=5.0, gt=0)

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
    def work_dir(self) -> Path:
        return self.resolved_home / "work"

    @property
    def egress_namespaces(self) -> frozenset[str]:
        return frozenset(x.strip() for x in self.sandbox_egress_namespaces.split(",") if x.strip())

    @property
    def admin_key_path(self) -> Path:
        return self.resolved_home / "admin-key"
