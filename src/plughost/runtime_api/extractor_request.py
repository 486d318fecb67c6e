"""The ``extractor_request`` a batch runner gives a plugin's ``build_steps`` / ``extract``.

Mixpeek's two templates read it differently: one reads
``extractor_request.extractor_config.parameters`` (and ``.input_mappings``), the other
``extractor_request.parameters``. :func:`build_extractor_request` returns one object that
answers both. Plain dataclasses, standard library only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ExtractorConfig:
    """The extractor part of a request: its name, version, parameters and input mappings."""

    feature_extractor_name: str | None = None
    version: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    input_mappings: dict[str, Any] = field(default_factory=dict)


@dataclass
class ExtractorRequest:
    """What ``build_steps(extractor_request, ...)`` receives.

    ``parameters`` is the same dict object as ``extractor_config.parameters``.
    """

    extractor_config: ExtractorConfig
    parameters: dict[str, Any]
    namespace_id: str | None = None


def build_extractor_request(
    parameters: Mapping[str, Any] | None = None,
    input_mappings: Mapping[str, Any] | None = None,
    name: str | None = None,
    version: str | None = None,
    namespace_id: str | None = None,
) -> ExtractorRequest:
    """An :class:`ExtractorRequest` holding copies of ``parameters`` and ``input_mappings``
    (empty dicts when None)."""
    params = dict(parameters or {})
    config = ExtractorConfig(
        feature_extractor_name=name,
        version=version,
        parameters=params,
        input_mappings=dict(input_mappings or {}),
    )
    return ExtractorRequest(extractor_config=config, parameters=params, namespace_id=namespace_id)
