"""Configuration: one Settings object, built once at start-up and passed down.

This is the only module that reads the process environment (through pydantic-settings).
"""

from __future__ import annotations

from pathlib import Path

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
    def admin_key_path(self) -> Path:
        return self.resolved_home / "admin-key"
