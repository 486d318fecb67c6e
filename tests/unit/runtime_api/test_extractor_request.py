"""plughost.runtime_api.extractor_request: what build_steps receives from a batch runner."""

from __future__ import annotations

from plughost.runtime_api.extractor_request import build_extractor_request


def test_parameters_are_reachable_both_ways_the_templates_read_them() -> None:
    request = build_extractor_request(
        {"threshold": 0.7}, {"text": "payload.text"}, name="demo", version="v1"
    )
    assert request.extractor_config.parameters == {"threshold": 0.7}
    assert request.parameters is request.extractor_config.parameters
    assert request.extractor_config.input_mappings == {"text": "payload.text"}
    assert request.extractor_config.feature_extractor_name == "demo"


def test_missing_parameters_and_mappings_are_empty_dicts_and_inputs_are_copied() -> None:
    given = {"a": 1}
    request = build_extractor_request(given)
    request.parameters["b"] = 2
    assert given == {"a": 1}
    assert build_extractor_request().extractor_config.input_mappings == {}
    assert build_extractor_request(None).parameters == {}
