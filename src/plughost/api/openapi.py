"""The OpenAPI document (``/openapi.json``, ``/docs``): FastAPI's own, completed by a schema
hook (:func:`install_openapi`) with what FastAPI cannot see.

- The fast path's ``POST /inference/{namespace_id}/{route}`` (:mod:`plughost.dataplane.fastpath`) is declared
  by a documentation-only route (:data:`fastpath_docs`): the fast path always answers it
  first, and FastAPI answers the path's other methods (405 with ``Allow``).
- Auth: the Bearer scheme on every operation but health and the signed-URL store routes,
  which say how they are authorised (``expires`` and ``signature`` query parameters).
- Every error status each operation can answer (:data:`ERRORS`), with the shared error body.
- Request bodies the handlers read themselves (multipart uploads, archive PUTs, inference
  bodies, batch submissions) and the limits the server enforces: name, version and id
  patterns, sizes, query bounds.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.openapi.utils import get_openapi

from plughost.api.extractor_schemas import EXTRACTOR_ERRORS
from plughost.api.model_schemas import MODEL_ERRORS, MODEL_REQUEST_BODIES
from plughost.api.openapi_inference import INFERENCE_EXTRA, INFERENCE_RESPONSES
from plughost.api.paths import BATCH_ID_PATTERN
from plughost.dataplane.body import MAX_BODY_BYTES
from plughost.domain.ids import NAME_PATTERN, PLUGIN_ID_PATTERN, VERSION_PATTERN
from plughost.logs.query import AGE_PATTERN, MAX_LIMIT
from plughost.services.secrets import SECRET_NAME_PATTERN

fastpath_docs = APIRouter(tags=["inference"])

BEARER = "bearerAuth"
NS = "/v1/namespaces/{namespace_id}/plugins"
PID = NS + "/{plugin_id}"
ORG = "/v1/plugins"
BAT = "/v1/namespaces/{namespace_id}"
INFER = "/inference/{namespace_id}/{route}"
SECRETS = "/v1/organizations/secrets"
ARCHIVE_LIMIT = 524_288_000  # Settings.max_archive_bytes' default

_DESCRIPTIONS = {
    400: "The request is malformed (body, multipart form, query value).",
    401: "Missing or unknown API key.",
    403: "The key or the URL signature may not do this (a key limited to some namespaces "
    "may not change the organization's secrets).",
    404: "No such namespace (or one of another organization), plugin, upload, batch, secret "
    "or route.",
    409: "The request conflicts with the current state (version or secret name exists, "
    "already done, or a namespace quota of replicas or memory is reached: QuotaExceededError).",
    413: "The request body is larger than the limit.",
    415: "The request body's content type is not one this route reads.",
    422: "The request is well formed but its values are not valid.",
    429: "Too many requests: a namespace quota (requests per second, per key, concurrent batch "
    "jobs) or the bound on open event streams; Retry-After says when to try again.",
    500: "PluginError: the plugin's own code raised while answering (its type and message).",
    503: "The server is starting, no replica of the plugin could answer, or the archive store "
    "(S3) cannot be used now (its message names the bucket and the endpoint).",
    504: "GatewayTimeoutError: the call passed its deadline (serve_config.request_timeout_s, "
    "or a lower X-Request-Timeout) and was cancelled in the replica.",
}

DEFAULT_ERRORS = [400, 401, 404, 422]
# (method, path) -> the error statuses the operation can answer
ERRORS: dict[tuple[str, str], list[int]] = {
    ("get", "/healthz"): [503],
    ("post", NS + "/uploads"): [401, 404, 409, 422, 503],
    ("post", NS + "/uploads/{upload_id}/confirm"): [401, 404, 409, 413, 422, 503],
    ("post", NS): [400, 401, 404, 409, 413, 422, 503],
    ("get", NS): [401, 404],
    ("get", NS + "/available"): [401, 404],
    ("post", NS + "/org/{plugin_id}/enable"): [401, 404, 409, 422],
    ("post", NS + "/org/{plugin_id}/disable"): [401, 404],
    ("get", PID): [401, 404, 422, 503],
    ("delete", PID): [401, 404],
    ("post", PID + "/deploy"): [400, 401, 404, 409, 422, 503],
    ("get", PID + "/status"): [401, 404, 422, 429, 503],
    ("post", PID + "/undeploy"): [401, 404],
    ("post", PID + "/realtime/test"): [401, 404, 422, 429, 503],
    ("post", NS + "/by-name/{name}/rollback"): [401, 404, 409, 422, 503],
    ("post", "/v1/inference"): [400, 401, 404, 413, 415, 422, 429, 500, 503, 504],
    ("post", INFER): [400, 401, 404, 413, 415, 429, 500, 503, 504],
    ("post", ORG + "/uploads"): [401, 409, 422, 503],
    ("post", ORG + "/uploads/{upload_id}/confirm"): [401, 404, 409, 413, 422, 503],
    ("get", ORG): [401],
    ("get", ORG + "/{plugin_id}"): [401, 404, 422, 503],
    ("delete", ORG + "/{plugin_id}"): [401, 404],
    ("put", "/v1/_store/uploads/{upload_id}"): [403, 404, 409, 413, 422],
    ("get", "/v1/_store/archives/{key}"): [403, 404],
    ("put", "/v1/_store/batch-inputs/{key}"): [403, 404, 409, 413, 422],
    ("post", PID + "/batches"): [400, 401, 404, 409, 413, 422, 429],
    ("get", PID + "/batches"): [401, 404],
    ("get", PID + "/batches/{batch_id}"): [401, 404],
    ("delete", PID + "/batches/{batch_id}"): [401, 404, 409],
    ("post", BAT + "/batches/uploads"): [401, 404, 422],
    ("get", BAT + "/batches"): [401, 404],
    ("get", BAT + "/batches/{batch_id}"): [401, 404],
    ("delete", BAT + "/batches/{batch_id}"): [401, 404, 409],
    ("get", "/v1/namespaces"): [401],
    ("get", PID + "/deployments"): [400, 401, 404, 422, 503],
    ("get", PID + "/logs"): [400, 401, 404, 422, 429, 503],
    ("get", PID + "/metrics"): [401, 404, 503],
    ("get", "/metrics"): [401, 403, 503],
    ("post", SECRETS): [401, 403, 404, 409, 422, 503],
    ("get", SECRETS): [401, 403],
    ("put", SECRETS + "/{secret_name}"): [401, 403, 404, 422, 503],
    ("delete", SECRETS + "/{secret_name}"): [401, 403, 404, 422],
    **MODEL_ERRORS,
    **EXTRACTOR_ERRORS,
}

# operations authorised by something other than the Bearer key
_SIGNED = (
    "Authorised by its presigned URL, not by an API key: the `expires` and `signature` query "
    "parameters of the URL the server handed out (HMAC of method, path and expiry). A missing, "
    "wrong or expired signature answers 403."
)
_NO_AUTH = {
    ("get", "/healthz"): "No authorisation.",
    ("put", "/v1/_store/uploads/{upload_id}"): _SIGNED,
    ("get", "/v1/_store/archives/{key}"): _SIGNED,
    ("put", "/v1/_store/batch-inputs/{key}"): _SIGNED,
}

_NAME = {"type": "string", "pattern": NAME_PATTERN, "description": "plugin name"}
_VERSION = {
    "type": "string",
    "pattern": VERSION_PATTERN,
    "description": "X.Y.Z; also accepted v1, 1, 1.0 (normalised to X.Y.Z)",
}
_OBJECT = {"type": "object", "additionalProperties": True}
_BINARY = {"type": "string", "format": "binary"}
_BYTES = {**_BINARY, "minLength": 1}  # a PUT of no bytes answers 400
_CALL_BODY = {
    "type": "object",
    "additionalProperties": True,
    "properties": {
        "inputs": {"type": ["object", "null"], "description": "the plugin's inputs"},
        "parameters": {"type": ["object", "null"], "description": "the plugin's parameters"},
    },
}
# the media types of a batch input file (the test's Schemathesis hooks generate each)
BATCH_INPUT_TYPES = ("application/x-ndjson", "text/csv", "application/vnd.apache.parquet")

_FEATURE_URI = (
    "^mixpeek://" + NAME_PATTERN.strip("^$") + "@" + VERSION_PATTERN.strip("^$") + r"(/[\s\S]+)?$"
)
_BODY_LIMIT = f"The body is at most {MAX_BODY_BYTES} bytes (413 past it)."

_REQUEST_BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("post", NS): {
        "required": True,
        "description": "A plugin archive (zip or tar.gz) and its name and version. At most "
        f"{ARCHIVE_LIMIT} bytes (PLUGHOST_MAX_ARCHIVE_BYTES) for the archive; 413 past it.",
        "content": {"multipart/form-data": {"schema": {
            "type": "object",
            "additionalProperties": False,
            "required": ["file", "name", "version"],
            "properties": {
                "file": {**_BINARY, "maxLength": ARCHIVE_LIMIT},
                "name": _NAME,
                "version": _VERSION,
                "description": {"type": "string", "maxLength": 500},
            },
        }}},
    },
    ("post", INFER): {
        "required": True,
        "description": "A JSON object; `inputs` and `parameters`, when given, are objects. "
        + _BODY_LIMIT,
        "content": {"application/json": {"schema": _CALL_BODY}},
    },
    ("post", "/v1/inference"): {
        "required": True,
        "description": "`inference_name` (the deployment name or plugin id) or `feature_uri`, "
        "with `inputs` and `parameters`. " + _BODY_LIMIT,
        "content": {"application/json": {"schema": {
            **_CALL_BODY,
            "properties": {
                **_CALL_BODY["properties"],
                "inference_name": {"type": "string", "minLength": 1},
                "feature_uri": {"type": "string", "pattern": _FEATURE_URI,
                                "example": "mixpeek://my_plugin@1.0.0"},
            },
            "anyOf": [{"required": ["inference_name"]}, {"required": ["feature_uri"]}],
        }}},
    },
    ("put", "/v1/_store/uploads/{upload_id}"): {
        "required": True,
        "description": f"The archive's bytes, at most {ARCHIVE_LIMIT} bytes.",
        "content": {t: {"schema": _BYTES} for t in
                    ("application/zip", "application/gzip", "application/octet-stream")},
    },
    ("put", "/v1/_store/batch-inputs/{key}"): {
        "required": True,
        "description": "The batch input's bytes (JSONL, CSV or Parquet), at most "
        "PLUGHOST_BATCH_MAX_INPUT_BYTES.",
        "content": {"application/octet-stream": {"schema": _BYTES}},
    },
    ("post", PID + "/batches"): {
        "required": True,
        "description": "The input as a file (multipart) or the `input_url` of a presigned "
        "batch upload (JSON).",
        "content": {
            "multipart/form-data": {"schema": {
                "type": "object",
                "additionalProperties": False,
                "required": ["file"],
                "properties": {
                    "file": {**_BINARY, "description": "JSONL, CSV or Parquet (told apart by "
                             "content); other content answers 422 InputFormatError"},
                    "parameters": {"type": ["object", "null"],
                                   "description": "a JSON object, as text"},
                    "on_error": {"type": "string", "enum": ["fail", "skip"]},
                },
            }, "encoding": {"file": {"contentType": ", ".join(BATCH_INPUT_TYPES)}}},
            "application/json": {"schema": {
                "type": "object",
                "required": ["input_url"],
                "properties": {
                    "input_url": {"type": "string", "pattern": "^store://batch-inputs/",
                                  "description": "from POST .../batches/uploads"},
                    "parameters": {"anyOf": [_OBJECT, {"type": "null"}]},
                    "on_error": {"type": "string", "enum": ["fail", "skip"]},
                },
            }},
        },
    },
    **MODEL_REQUEST_BODIES,
}

_ERROR_SCHEMA = {
    "type": "object",
    "required": ["success", "status", "error"],
    "properties": {
        "success": {"type": "boolean", "enum": [False]},
        "status": {"type": "integer"},
        "error": {
            "type": "object",
            "required": ["message", "type", "details"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string", "example": "NotFoundError"},
                "details": {"anyOf": [{"type": "object"}, {"type": "null"}]},
            },
        },
    },
}

_PATH_PATTERNS = {
    "plugin_id": PLUGIN_ID_PATTERN,
    "batch_id": BATCH_ID_PATTERN,
    "name": NAME_PATTERN,
    "secret_name": SECRET_NAME_PATTERN,
}
# query bounds checked by the services (400 outside them)
_QUERY_BOUNDS = {
    (PID + "/logs", "limit"): (1, MAX_LIMIT),
    (PID + "/deployments", "limit"): (1, 200),
}


_ETAG = {"ETag": {"description": "the quoted MD5 hex of the bytes, as S3 answers",
                  "schema": {"type": "string"}}}
# OpenAPI 3.1: the schema of an event stream describes one event
_SSE = {"text/event-stream": {"schema": {
    "type": "object",
    "required": ["data"],
    "properties": {"data": {"type": "string", "contentMediaType": "application/json"}},
}}}
# 200 answers that are not (only) a JSON object
_SUCCESS: dict[tuple[str, str], dict[str, Any]] = {
    ("put", "/v1/_store/uploads/{upload_id}"): {"description": "Stored.", "headers": _ETAG},
    ("put", "/v1/_store/batch-inputs/{key}"): {"description": "Stored.", "headers": _ETAG},
    ("get", "/v1/_store/archives/{key}"): {
        "description": "The archive.",
        "content": {"application/octet-stream": {"schema": _BINARY}},
    },
    ("get", "/metrics"): {
        "description": "Prometheus text format.",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    },
    ("get", PID + "/status"): {
        "description": "The status; with `watch=true` server-sent events, one status per "
        "change, until a final status.",
        "content": {"application/json": {"schema": _OBJECT}, **_SSE},
    },
    ("get", PID + "/logs"): {
        "description": "The lines; with `follow=true` server-sent events, one line each.",
        "content": {"application/json": {"schema": _OBJECT}, **_SSE},
    },
}
def _link(operation_id_path: tuple[str, str], **parameters: str) -> dict[str, Any]:
    method, path = operation_id_path
    return {"operationRef": f"#/paths/{_pointer(path)}/{method}", "parameters": parameters}


def _pointer(path: str) -> str:
    return path.replace("~", "~0").replace("/", "~1")


_NS_ID = "$request.path.namespace_id"
# how an answer's ids lead to other operations (Schemathesis' stateful phase follows them).
# None from the multipart upload: it answers a plugin_id even when validation failed and
# nothing was registered (the contract's shape). None from POST /uploads to its confirm:
# that needs the archive PUT in between, which a link cannot say.
_LINKS: dict[tuple[str, str], dict[str, dict[str, Any]]] = {
    ("get", NS): {"plugin": _link(
        ("get", PID), namespace_id=_NS_ID, plugin_id="$response.body#/plugins/0/plugin_id")},
    ("post", PID + "/deploy"): {"status": _link(
        ("get", PID + "/status"), namespace_id=_NS_ID, plugin_id="$request.path.plugin_id")},
    ("post", PID + "/batches"): {
        "batch": _link(("get", PID + "/batches/{batch_id}"), namespace_id=_NS_ID,
                       plugin_id="$request.path.plugin_id", batch_id="$response.body#/batch_id"),
        "cancel": _link(("delete", PID + "/batches/{batch_id}"), namespace_id=_NS_ID,
                        plugin_id="$request.path.plugin_id",
                        batch_id="$response.body#/batch_id"),
    },
}

_SINCE = {"anyOf": [
    {"type": "string", "format": "date-time"},
    {"type": "string", "pattern": AGE_PATTERN, "description": "an age: 30s, 10m, 2h, 1d"},
]}


@fastpath_docs.post(INFER, responses=INFERENCE_RESPONSES, openapi_extra=INFERENCE_EXTRA)
def inference(namespace_id: str, route: str) -> None:
    """Call a deployed plugin: `route` is its deployment name (`custom_plugin_{plugin_id}`,
    the `route_prefix` of deploy and status) or its name, the alias that follows the newest
    healthy deployed version. Served by the ASGI fast path, never by this function."""
    raise RuntimeError("POST /inference/... is answered by plughost.dataplane.fastpath")


def install_openapi(app: FastAPI) -> None:
    """Make ``app.openapi()`` (``/openapi.json`` and ``/docs``) the completed document."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(
                title=app.title, version=app.version, routes=app.routes,
                description="plughost's HTTP API: Mixpeek's custom plugins API and plughost's "
                "own routes. Errors answer `{success: false, status, error: {message, type, "
                "details}}`.",
            )
            complete(doc)
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def complete(doc: dict[str, Any]) -> None:
    """Add auth, error answers, request bodies and limits to FastAPI's document, in place."""
    components = doc.setdefault("components", {})
    components.setdefault("schemas", {})["Error"] = _ERROR_SCHEMA
    components["securitySchemes"] = {
        BEARER: {"type": "http", "scheme": "bearer", "description": "an API key"},
    }
    doc["security"] = [{BEARER: []}]
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            _complete_operation(path, method, op)


def _complete_operation(path: str, method: str, op: dict[str, Any]) -> None:
    key = (method, path)
    if key in _NO_AUTH:
        op["security"] = []
        op["description"] = (op.get("description", "") + "\n\n" + _NO_AUTH[key]).strip()
    if key in _REQUEST_BODIES:
        op["requestBody"] = _REQUEST_BODIES[key]
    responses = op.setdefault("responses", {})
    ok = "202" if "202" in responses else "200"
    if key in _SUCCESS:
        responses[ok] = _SUCCESS[key]
    if key in _LINKS:
        responses[ok]["links"] = _LINKS[key]
    # a route missing from ERRORS still gets the usual ones (tests/unit/api/test_openapi.py
    # fails until it is listed)
    statuses = ERRORS.get(key, DEFAULT_ERRORS)
    if "requestBody" in op and 400 not in statuses:
        statuses = sorted([*statuses, 400])  # a body that cannot be read: 400
    responses.pop("422", None)  # FastAPI's HTTPValidationError: ours is the Error body
    for status in statuses:
        responses[str(status)] = {
            "description": _DESCRIPTIONS[status],
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
    for param in op.get("parameters", []):
        schema = param.setdefault("schema", {})
        if param["in"] == "path" and param["name"] in _PATH_PATTERNS:
            schema["pattern"] = _PATH_PATTERNS[param["name"]]
        bounds = _QUERY_BOUNDS.get((path, param["name"]))
        if param["in"] == "query" and bounds:
            schema["minimum"], schema["maximum"] = bounds
        if param["in"] == "query" and param["name"] == "since" and path.endswith("/logs"):
            param["schema"] = _SINCE
