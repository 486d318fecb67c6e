"""The manifest's ``features`` and ``compute_profile``, normalised.

Mixpeek's docs name a feature's keys ``feature_type``, ``feature_name``, ``embedding_dim`` and
``distance_metric``; plugins written from intuition use ``type``, ``name``, ``dimensions``
and ``distance``. Mixpeek silently indexes nothing for the second style; plughost accepts
both: every feature keeps the keys it was given and gains the documented ones it lacks, so a
reader of the stored manifest finds the documented names whichever style the plugin used.

``compute_profile`` keeps its keys; ``resource_type`` is lower-cased, and the keys plughost
reads must have usable values (a wrong one is refused at upload rather than ignored later).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

FEATURE_ALIASES: dict[str, str] = {
    "feature_type": "type",
    "feature_name": "name",
    "embedding_dim": "dimensions",
    "distance_metric": "distance",
}
"""Documented key -> the other style's key for the same thing."""
VECTOR_TYPES = frozenset({"vector", "dense_vector", "embedding"})
"""``type`` values that mean what the documented style calls ``"embedding"``."""
RESOURCE_TYPES = ("cpu", "gpu", "api")
POSITIVE_INTEGER_KEYS = ("batch_size", "max_concurrency")
POSITIVE_NUMBER_KEYS = ("actor_memory_gb", "gpu_memory_gb")


def normalise_features(features: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    """Each feature with the documented keys added from the other style's where missing."""
    if features is None:
        return None
    return [_normalise_feature(feature) for feature in features]


def _normalise_feature(feature: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(feature)
    for documented, other in FEATURE_ALIASES.items():
        if out.get(documented) is not None or out.get(other) is None:
            continue
        value = out[other]
        if documented == "feature_type" and isinstance(value, str):
            value = "embedding" if value.lower() in VECTOR_TYPES else value
        if documented == "distance_metric" and isinstance(value, str):
            value = value.lower()
        out[documented] = value
    return out


def normalise_compute_profile(
    profile: dict[str, Any] | None,
) -> tuple[dict[str, Any] | None, list[str]]:
    """The profile with ``resource_type`` lower-cased, and the errors of the keys plughost
    reads: ``resource_type`` one of cpu/gpu/api, ``batch_size`` and ``max_concurrency``
    positive integers, ``actor_memory_gb`` and ``gpu_memory_gb`` positive numbers (each may
    be absent or null)."""
    if profile is None:
        return None, []
    out = dict(profile)
    errors: list[str] = []
    kind = out.get("resource_type")
    if isinstance(kind, str):
        out["resource_type"] = kind = kind.strip().lower()
    if kind is not None and kind not in RESOURCE_TYPES:
        errors.append(
            f"compute_profile.resource_type must be one of {', '.join(RESOURCE_TYPES)}, not {kind!r}"
        )
    for key in POSITIVE_INTEGER_KEYS:
        value = out.get(key)
        if value is not None and (not _is_number(value) or value <= 0 or value != int(value)):
            errors.append(f"compute_profile.{key} must be a positive integer, not {value!r}")
        elif isinstance(value, float):
            out[key] = int(value)
    for key in POSITIVE_NUMBER_KEYS:
        value = out.get(key)
        if value is not None and (not _is_number(value) or value <= 0):
            errors.append(f"compute_profile.{key} must be a positive number, not {value!r}")
    return out, errors


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
