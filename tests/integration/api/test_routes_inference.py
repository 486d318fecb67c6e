"""plughost.api.routes_inference: ``POST /v1/inference`` by ``inference_name`` (deployment
name, plugin id) or ``feature_uri``, the namespace from ``X-Namespace`` or the key's only
one; the same answer as the route prefix and the alias (the fast path's), and 4xx about the
request for everything else."""

from __future__ import annotations

from inproc import InProcessServer

from .conftest import Deployed, Tenant
from .helpers import NS, error, runtime

INFER = "/v1/inference"
HDR = {"X-Namespace": NS}


def test_every_name_of_a_plugin_reaches_it(app: InProcessServer, deployed: Deployed) -> None:
    call = {"inputs": {"text": "same"}, "parameters": {"p": 2}}
    with app.client() as c:
        direct = c.post(deployed.route_prefix, json=call)
        assert direct.status_code == 200 and direct.json() == {
            "echo": "same",
            "parameters": {"p": 2},
        }
        assert direct.headers["content-type"] == "application/json"
        names = [
            {"inference_name": f"custom_plugin_{deployed.plugin_id}"},
            {"inference_name": deployed.plugin_id},
            {"feature_uri": f"mixpeek://{deployed.name}@1.0.0"},
            {"feature_uri": f"mixpeek://{deployed.name}@v1/vec"},
        ]
        for name in names:
            resp = c.post(INFER, json={**name, **call}, headers=HDR)
            assert resp.status_code == 200 and resp.json() == direct.json(), (name, resp.text)
        assert c.post(deployed.alias, json=call).json() == direct.json()


def test_inference_name_decides_but_feature_uri_is_still_checked(
    app: InProcessServer, deployed: Deployed
) -> None:
    with app.client() as c:
        ok = c.post(
            INFER,
            headers=HDR,
            json={
                "inference_name": deployed.plugin_id,
                "feature_uri": "mixpeek://other_name@2.0.0",
            },
        )
        assert ok.status_code == 200, ok.text
        bad = c.post(
            INFER,
            headers=HDR,
            json={"inference_name": deployed.plugin_id, "feature_uri": "http://x"},
        )
        assert "feature_uri" in error(bad, 422, "ValidationError")["message"]


def test_bad_names_are_4xx_about_the_request(app: InProcessServer, deployed: Deployed) -> None:
    with app.client() as c:
        neither = c.post(INFER, headers=HDR, json={"inputs": {}})
        assert "inference_name" in error(neither, 400, "BadRequestError")["message"]
        for key in ("inference_name", "feature_uri"):
            wrong = c.post(INFER, headers=HDR, json={key: 5})
            assert f"{key} must be a string" in error(wrong, 400, "BadRequestError")["message"]
        error(
            c.post(INFER, headers=HDR, json={"inference_name": "nope_1_0_0"}), 404, "NotFoundError"
        )
        error(
            c.post(INFER, headers=HDR, json={"feature_uri": "mixpeek://nope_x@1"}),
            404,
            "NotFoundError",
        )
        error(
            c.post(INFER, headers=HDR, json={"inference_name": "../../etc"}), 404, "NotFoundError"
        )
        error(
            c.post(INFER, headers=HDR, json={"inference_name": deployed.plugin_id, "inputs": [1]}),
            400,
            "BadRequestError",
        )
        error(c.post(INFER, headers=HDR, content=b"{"), 400, "BadRequestError")
        error(
            c.post(INFER, headers={**HDR, "Content-Type": "text/csv"}, content=b"{}"),
            415,
            "UnsupportedMediaTypeError",
        )
        big = c.post(INFER, headers={**HDR, "Content-Length": str(1 << 40)}, content=b"{}")
        error(big, 413, "PayloadTooLargeError")


def test_a_plugins_exception_is_its_500(app: InProcessServer, deployed: Deployed) -> None:
    with app.client() as c:
        resp = c.post(
            INFER,
            headers=HDR,
            json={"inference_name": deployed.plugin_id, "inputs": {"boom": True}},
        )
        assert "plugin says boom" in error(resp, 500, "PluginError")["message"]


def test_the_namespace_comes_from_the_header_or_the_keys_only_one(
    app: InProcessServer, deployed: Deployed, limited: Tenant, outsider: Tenant
) -> None:
    call = {"inference_name": deployed.plugin_id, "inputs": {"text": "a"}}
    runtime(app).accounts.create_namespace("second")  # the default key now reaches several
    with app.client() as c:
        several = c.post(INFER, json=call)
        assert "X-Namespace" in error(several, 400, "BadRequestError")["message"]
        error(c.post(INFER, json=call, headers={"X-Namespace": "ns_nowhere"}), 404, "NotFoundError")
    with app.client(key=limited.key) as c:  # its only namespace, which has no such plugin
        error(c.post(INFER, json=call), 404, "NotFoundError")
        error(c.post(INFER, json=call, headers=HDR), 404, "NotFoundError")
    with app.client(key=outsider.key) as c:
        error(c.post(INFER, json=call, headers=HDR), 404, "NotFoundError")
        error(c.post(deployed.route_prefix, json=call), 404, "NotFoundError")
    with app.anonymous() as c:
        error(c.post(INFER, json=call, headers=HDR), 401, "AuthenticationError")
        error(c.post(deployed.route_prefix, json=call), 401, "AuthenticationError")
