"""Wire schemas of the extractor discovery routes (:mod:`plughost.api.routes_extractors`):
the reconfigure request and answer, and each route's error statuses for
:mod:`plughost.api.openapi`."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

NS_EXTRACTORS = "/v1/namespaces/{namespace_id}/extractors"
FEATURE_EXTRACTORS = "/v1/collections/features/extractors"
RECONFIGURE = "/v1/namespaces/{namespace_id}/plugins/reconfigure"


class ReconfigureRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    # Mixpeek refuses its destructive rebuild without it: false is invalid, not a no-op
    confirm: Literal[True] = Field(description="must be true")


class ReconfigureResponse(BaseModel):
    namespace_id: str
    status: str = Field(description="always `no_changes_needed`: plughost keeps no vectors")
    previous_points_count: int
    vectors_added: list[str]
    vectors_total: list[str] = Field(description="the vector indexes of the deployed plugins")
    collections_to_reprocess: list[str]
    message: str


EXTRACTOR_ERRORS: dict[tuple[str, str], list[int]] = {
    ("get", FEATURE_EXTRACTORS): [401, 404],
    ("get", FEATURE_EXTRACTORS + "/{feature_extractor_id}"): [401, 404],
    ("get", NS_EXTRACTORS): [401, 404, 422],
    ("get", NS_EXTRACTORS + "/{extractor_id}"): [401, 404],
    ("post", RECONFIGURE): [401, 404, 422],
}
