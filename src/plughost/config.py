"""Configuration: one Settings object, built once at start-up and passed down.

This is the only module that reads the process environment (through pydantic-settings).
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic_settings import SettingsConfigDict

from plughost.config_cgroup_fields import CgroupFields
from plughost.config_egress_fields import EgressFields
from plughost.config_fields import (
    BatchFields,
    ContainerFields,
    CoreFields,
    EnvironmentFields,
    ObservationFields,
    RayFields,
    SandboxFields,
    model_map,
)
from plughost.config_input_fields import InputFields
from plughost.config_model_fields import ModelFields
from plughost.config_quota_fields import QuotaFields
from plughost.config_supply_fields import SupplyFields
from plughost.config_surface_fields import SurfaceFields


class Settings(
    SupplyFields,
    SurfaceFields,
    InputFields,
    EgressFields,
    QuotaFields,
    CgroupFields,
    ModelFields,
    ObservationFields,
    BatchFields,
    SandboxFields,
    ContainerFields,
    EnvironmentFields,
    RayFields,
    CoreFields,
):
    """Server settings; every field can be set as `PLUGHOST_<FIELD>` in the environment.

    Each field's ``description`` is its entry in docs/configuration.md, which
    ``python -m plughost.config_reference`` writes from this class.
    """

    model_config = SettingsConfigDict(env_prefix="PLUGHOST_", extra="ignore")

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
    def llm_models(self) -> dict[str, str]:
        """``llm_model_map`` decoded (checked when the settings are built)."""
        return model_map(self.llm_model_map)

    @property
    def egress_namespaces(self) -> frozenset[str]:
        return frozenset(x.strip() for x in self.sandbox_egress_namespaces.split(",") if x.strip())

    @property
    def logs_dir(self) -> Path:
        return self.resolved_home / "logs"

    @property
    def replicas_dir(self) -> Path:
        """The local replica registry: one record and one output file each."""
        return self.resolved_home / "replicas"

    @property
    def models_dir(self) -> Path:
        """The namespace models' local files (``models_cache_dir``, else the home's ``models``)."""
        if self.models_cache_dir:
            return Path(self.models_cache_dir).expanduser().resolve()
        return self.resolved_home / "models"

    @property
    def secrets_key_path(self) -> Path:
        """The generated key of organization secrets (SQLite; see ``secrets_key``)."""
        return self.resolved_home / "secrets-key"

    @property
    def admin_key_path(self) -> Path:
        return self.resolved_home / "admin-key"
