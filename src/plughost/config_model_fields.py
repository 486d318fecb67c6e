"""The settings of namespace models (weights uploaded once, loaded by plugins); a part of
:class:`plughost.config.Settings` like the classes of :mod:`plughost.config_fields`."""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings


class ModelFields(BaseSettings):
    """Namespace models: where their files are unpacked for plugins, and how large they may be."""

    # -- namespace models
    models_cache_dir: str = Field(
        default="",
        description="folder of the namespace models' unpacked files on this machine "
        "(`blobs/<sha256>/` once per content, `ns/<namespace>/` hard links plugins see "
        "read-only); empty: `$PLUGHOST_HOME/models`",
    )
    model_max_bytes: int = Field(
        default=5 * 1024**3,
        gt=0,
        description="largest model archive accepted, and most bytes it may unpack to (5 GiB)",
    )
    # the variable plugin processes also get (PLUGHOST_HF_CACHE), so one name reads the same
    # on both sides of the sandbox
    hf_cache_dir: str = Field(
        default="",
        validation_alias=AliasChoices("PLUGHOST_HF_CACHE", "hf_cache_dir"),
        description="a local Hugging Face cache plugins may read (mounted read-only, offline); "
        "empty: none",
    )
