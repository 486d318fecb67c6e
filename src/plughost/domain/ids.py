"""Identifiers of the wire contract: plugin names, versions, plugin ids, URIs, routes."""

from __future__ import annotations

import re
import secrets

from plughost.errors import ValidationError

# The patterns the OpenAPI document publishes (NAME_PATTERN, VERSION_PATTERN), matched whole
# (fullmatch: `$` alone would let a trailing newline through) and ASCII only (`\d` is any
# Unicode digit in Python, not in JSON Schema).
NAME_PATTERN = r"^[a-zA-Z][a-zA-Z0-9_]{2,63}$"
VERSION_PATTERN = r"^[vV]?([0-9]{1,9})(?:\.([0-9]{1,9}))?(?:\.([0-9]{1,9}))?$"
# what a plugin id always is: {name}_{X}_{Y}_{Z}
PLUGIN_ID_PATTERN = r"^[a-zA-Z][a-zA-Z0-9_]{2,63}_[0-9]{1,9}_[0-9]{1,9}_[0-9]{1,9}$"
NAME_RE = re.compile(NAME_PATTERN)
_VERSION_RE = re.compile(VERSION_PATTERN)
NAMESPACE_ID_RE = re.compile(r"^[a-zA-Z0-9_\-]{1,64}$")
FEATURE_URI_RE = re.compile(r"^mixpeek://([a-zA-Z][a-zA-Z0-9_]{2,63})@([^/]+)(?:/([\s\S]+))?$")


def validate_name(name: str) -> str:
    """Return `name` if it is a valid plugin name, else raise ValidationError."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise ValidationError(
            f"invalid plugin name {name!r}: must match ^[a-zA-Z][a-zA-Z0-9_]{{2,63}}$",
            {"field": "name"},
        )
    return name


def normalize_version(version: str) -> str:
    """Normalise `v1`, `1`, `1.0`, `1.0.0` (and `V1.2`) to `X.Y.Z`; reject anything else."""
    match = _VERSION_RE.fullmatch(version) if isinstance(version, str) else None
    if not match:
        raise ValidationError(
            f"invalid plugin version {version!r}: use X.Y.Z (also accepted: v1, 1, 1.0)",
            {"field": "version"},
        )
    parts = [int(p) if p is not None else 0 for p in match.groups()]
    return ".".join(str(p) for p in parts)


def plugin_id_for(name: str, version: str) -> str:
    """`text_embed` + `1.0.0` -> `text_embed_1_0_0`."""
    return f"{name}_{version.replace('.', '_')}"


# a namespace model's version: free text of Mixpeek's SDK, kept to what a folder name and an
# id can carry (`1.0.0`, `v2-beta`, `2024_06`)
MODEL_VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$"
_MODEL_VERSION_RE = re.compile(MODEL_VERSION_PATTERN)


def validate_model_version(version: str) -> str:
    """Return ``version`` if a namespace model may carry it, else raise ValidationError."""
    if not isinstance(version, str) or not _MODEL_VERSION_RE.fullmatch(version):
        raise ValidationError(
            f"invalid model version {version!r}: must match {MODEL_VERSION_PATTERN}",
            {"field": "version"},
        )
    return version


def model_id_for(name: str, version: str) -> str:
    """A namespace model's id, like a plugin's: `tiny_weights` + `1.0.0` -> `tiny_weights_1_0_0`
    (every `.` and `-` of the version becomes `_`)."""
    return f"{name}_{version.replace('.', '_').replace('-', '_')}"


def feature_uri_for(name: str, version: str) -> str:
    return f"mixpeek://{name}@{version}"


def deployment_name_for(plugin_id: str) -> str:
    return f"custom_plugin_{plugin_id}"


def route_prefix_for(namespace_id: str, plugin_id: str) -> str:
    return f"/inference/{namespace_id}/{deployment_name_for(plugin_id)}"


def alias_route_for(namespace_id: str, name: str) -> str:
    return f"/inference/{namespace_id}/{name}"


def parse_feature_uri(uri: str) -> tuple[str, str]:
    """Return (name, normalised version) of `mixpeek://name@version[/feature]`."""
    match = FEATURE_URI_RE.fullmatch(uri)
    if not match:
        raise ValidationError(f"invalid feature_uri {uri!r}: expected mixpeek://name@version")
    return match.group(1), normalize_version(match.group(2))


def new_id(prefix: str, nbytes: int = 12) -> str:
    """A random identifier such as `upl_3f9c...`."""
    return f"{prefix}_{secrets.token_hex(nbytes)}"
