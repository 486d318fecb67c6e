"""The settings of policy on what plugin environments may install, and model archives; a part of :class:`plughost.config.Settings` like the classes of
:mod:`plughost.config_fields`."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings


class SupplyFields(BaseSettings):
    """Settings of policy on what plugin environments may install, and model archives."""

    # -- plugin environments: what a manifest's dependencies may pull in
    plugin_only_binary: bool = Field(
        default=True,
        description="install wheels only: a dependency that exists only as a source "
        "distribution fails the release, naming it. false (or `plugin_build_sdists` on): "
        "source distributions are built, with uv running inside bubblewrap (read-only system, "
        "no `$PLUGHOST_HOME`, a private cache), and refused where bubblewrap is missing",
    )
    # -- container.llm: bounds of the LLM gateway
    llm_max_prompt_bytes: int = Field(
        default=4 * 1024 * 1024,
        gt=0,
        description="largest `messages` of one `container.llm` request, in bytes of JSON "
        "(images given as data URLs count); a larger one is refused before it reaches the "
        "endpoint",
    )
    llm_requests_per_minute: int = Field(
        default=600,
        ge=0,
        description="`container.llm` requests one namespace's plugins may make in any 60 s; "
        "more are refused with an `LLMRateLimited` error saying when to retry; 0: no bound",
    )
