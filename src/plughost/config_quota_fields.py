"""The settings of namespace quotas (replicas, memory, batch jobs, requests per second) and their defaults; a part of :class:`plughost.config.Settings` like the classes of
:mod:`plughost.config_fields`."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings


class QuotaFields(BaseSettings):
    """Settings of namespace quotas (replicas, memory, batch jobs, requests per second) and their defaults."""

    quota_refresh_s: float = Field(
        default=2.0,
        gt=0,
        le=300,
        description="how often a server checks the database for namespace policies (quotas, "
        "egress allowlists) changed by another server or the admin CLI (one small aggregate "
        "query); a change made through this server's own API applies at once",
    )
    quota_batch_retry_after_s: float = Field(
        default=5.0,
        gt=0,
        le=5,
        description="`Retry-After` (seconds) of a batch submission refused because the "
        "namespace runs `max_batch_jobs` jobs already (429)",
    )
