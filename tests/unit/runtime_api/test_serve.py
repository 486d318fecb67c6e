"""shared.plugins.inference.serve: BaseInferenceService and ServeDeploymentConfig."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from typing import Any

import pytest
from shared.plugins.inference.serve import BaseInferenceService, ServeDeploymentConfig

from plughost.runtime_api import RUNTIME_API_DIR


class SingleOnly(BaseInferenceService):
    def _process_single(self, inputs: dict[str, Any], parameters: dict[str, Any]) -> Any:
        return ("single", inputs, parameters)


class AsyncSingleOnly(BaseInferenceService):
    async def _process_single(self, inputs: dict[str, Any], parameters: dict[str, Any]) -> Any:
        return "async single"


class CallOnly(BaseInferenceService):
    def __call__(self, inputs: dict[str, Any], parameters: dict[str, Any] | None = None) -> Any:
        return "call"


class RunOnly(BaseInferenceService):
    def run_inference(self, inputs: dict[str, Any], parameters: dict[str, Any]) -> Any:
        return "run"


def test_constructor_takes_no_argument_and_keeps_keyword_arguments() -> None:
    assert BaseInferenceService().config == {}
    assert BaseInferenceService(model="m").config == {"model": "m"}


def test_logger_is_a_standard_logger_named_after_the_class() -> None:
    logger = SingleOnly().logger
    assert isinstance(logger, logging.Logger)
    assert logger.name == "plugin.SingleOnly"
    assert logger.isEnabledFor(logging.INFO)


def test_logger_records_reach_stderr_in_a_process_without_logging_set_up() -> None:
    code = (
        f"import sys; sys.path.insert(0, {str(RUNTIME_API_DIR)!r})\n"
        "from shared.plugins.inference.serve import BaseInferenceService\n"
        "BaseInferenceService().logger.info('loaded the model')\n"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-c", code], capture_output=True, text=True, check=True
    )
    assert done.stdout == ""
    assert "INFO plugin.BaseInferenceService: loaded the model" in done.stderr


def test_process_single_answers_run_inference_and_call() -> None:
    service = SingleOnly()
    assert service.run_inference({"a": 1}, {"b": 2}) == ("single", {"a": 1}, {"b": 2})
    assert service({"a": 1}) == ("single", {"a": 1}, {})


def test_async_process_single_gives_an_awaitable() -> None:
    service = AsyncSingleOnly()
    assert asyncio.run(service.run_inference({}, {})) == "async single"
    assert asyncio.run(service({}, {})) == "async single"


def test_call_only_answers_run_inference_and_run_only_answers_call() -> None:
    assert CallOnly().run_inference({}, {}) == "call"
    assert RunOnly()({}, {}) == "run"


def test_a_service_implementing_nothing_says_what_to_implement() -> None:
    with pytest.raises(NotImplementedError, match="_process_single"):
        BaseInferenceService().run_inference({}, {})
    with pytest.raises(NotImplementedError, match="must implement run_inference"):
        BaseInferenceService()({}, {})


def test_health_defaults_to_true() -> None:
    assert RunOnly().health() is True


def test_serve_config_keeps_given_keys_and_accepts_unknown_ones() -> None:
    config = ServeDeploymentConfig(num_replicas=2, memory_gb=4, ray_actor_options={"x": 1})
    assert config.to_dict() == {"enabled": True, "num_replicas": 2, "memory_gb": 4}
    assert config.extra == {"ray_actor_options": {"x": 1}}
    assert config == ServeDeploymentConfig(num_replicas=2, memory_gb=4, ray_actor_options={"x": 1})
    assert "num_replicas=2" in repr(config)


def test_serve_config_is_a_class_attribute_defaulting_to_none() -> None:
    class Configured(RunOnly):
        serve_config = ServeDeploymentConfig(enabled=True, num_replicas=1)

    assert BaseInferenceService.serve_config is None
    assert Configured.serve_config is not None
    assert Configured.serve_config.num_replicas == 1
