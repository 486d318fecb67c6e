"""The loader's rules: how realtime.py becomes a service and which callable answers."""

from __future__ import annotations

import asyncio
import inspect
import textwrap
from pathlib import Path

import pytest
from conftest import PluginWriter

from plughost.replica.loader import SHIM_DIR, PluginLoadError, load_plugin

SHIM_IMPORT = "from shared.plugins.inference.serve import BaseInferenceService\n"


def with_shim(body: str) -> str:
    """``body`` (dedented) preceded by the contract's base-class import."""
    return SHIM_IMPORT + textwrap.dedent(body)


def test_class_service_gets_kwargs_and_imports_helpers_by_top_level_name(
    write_plugin: PluginWriter,
) -> None:
    root = write_plugin(
        {
            "processors/__init__.py": "",
            "processors/core.py": "def shout(text):\n    return text.upper()\n",
            "realtime.py": with_shim("""
            from processors.core import shout

            class Service(BaseInferenceService):
                def run_inference(self, inputs, parameters):
                    return {"out": shout(inputs["text"]), "prefix": self.config["prefix"]}
            """),
        }
    )
    plugin = load_plugin(root, {"prefix": ">"})
    assert type(plugin.service).__name__ == "Service"
    assert plugin.handler({"text": "hi"}, {}) == {"out": "HI", "prefix": ">"}


def test_relative_imports_resolve_inside_the_plugin_package(write_plugin: PluginWriter) -> None:
    root = write_plugin(
        {
            "processors/__init__.py": "",
            "processors/core.py": "from .util import twice\n\ndef run(x):\n    return twice(x)\n",
            "processors/util.py": "def twice(x):\n    return 2 * x\n",
            "realtime.py": """
            from .processors.core import run

            class Service:
                def run_inference(self, inputs, parameters):
                    return run(inputs["x"])

            def get_inference_service(**kwargs):
                return Service()
            """,
        }
    )
    plugin = load_plugin(root)
    assert plugin.handler({"x": 21}, {}) == 42
    assert type(plugin.service).__module__ == "plughost_plugin.realtime"


def test_plugin_without_init_file_can_mix_relative_and_top_level_imports(
    write_plugin: PluginWriter,
) -> None:
    root = write_plugin(
        {
            "helpers.py": "VALUE = 7\n",
            "realtime.py": with_shim("""
            from . import helpers as relative_helpers
            import helpers as top_level_helpers

            class Service(BaseInferenceService):
                def run_inference(self, inputs, parameters):
                    return relative_helpers.VALUE + top_level_helpers.VALUE
            """),
        }
    )
    assert load_plugin(root).handler({}, {}) == 14


def test_plugin_init_file_runs_as_the_package_body(write_plugin: PluginWriter) -> None:
    root = write_plugin(
        {
            "__init__.py": "GREETING = 'from init'\n",
            "realtime.py": with_shim("""
            from . import GREETING

            class Service(BaseInferenceService):
                def run_inference(self, inputs, parameters):
                    return GREETING
            """),
        }
    )
    assert load_plugin(root).handler({}, {}) == "from init"


def test_shim_base_class_is_importable_and_is_the_runtime_one(write_plugin: PluginWriter) -> None:
    root = write_plugin(
        {
            "realtime.py": with_shim("""
            import shared.plugins.inference.serve as serve_module

            class Service(BaseInferenceService):
                def run_inference(self, inputs, parameters):
                    return serve_module.__file__
            """)
        }
    )
    plugin = load_plugin(root)
    assert Path(plugin.handler({}, {})).is_relative_to(SHIM_DIR)
    assert plugin.health is not None and plugin.health() is True


def test_factory_wins_over_a_service_class_and_receives_kwargs(write_plugin: PluginWriter) -> None:
    root = write_plugin(
        {
            "realtime.py": with_shim("""
            class Service(BaseInferenceService):
                def run_inference(self, inputs, parameters):
                    return "class"

            class FromFactory:
                def __init__(self, tag):
                    self.tag = tag
                def run_inference(self, inputs, parameters):
                    return f"factory:{self.tag}"

            def get_inference_service(**kwargs):
                return FromFactory(**kwargs)
            """)
        }
    )
    assert load_plugin(root, {"tag": "t1"}).handler({}, {}) == "factory:t1"


def test_async_run_inference_is_returned_as_a_coroutine_function(
    write_plugin: PluginWriter,
) -> None:
    root = write_plugin(
        {
            "realtime.py": with_shim("""
            import asyncio

            class Service(BaseInferenceService):
                async def run_inference(self, inputs, parameters):
                    await asyncio.sleep(0)
                    return inputs["n"] + parameters["k"]
            """)
        }
    )
    handler = load_plugin(root).handler
    assert inspect.iscoroutinefunction(handler)
    assert asyncio.run(handler({"n": 1}, {"k": 2})) == 3


def test_call_fallback_for_an_object_without_run_inference(write_plugin: PluginWriter) -> None:
    root = write_plugin(
        {
            "realtime.py": """
            class Callable:
                def __call__(self, inputs, parameters):
                    return ["called", inputs, parameters]

            def get_inference_service(**kwargs):
                return Callable()
            """
        }
    )
    assert load_plugin(root).handler({"a": 1}, {"b": 2}) == ["called", {"a": 1}, {"b": 2}]


def test_call_fallback_for_a_subclass_overriding_only_call(write_plugin: PluginWriter) -> None:
    root = write_plugin(
        {
            "realtime.py": with_shim("""
            class Service(BaseInferenceService):
                async def __call__(self, inputs, parameters):
                    return "via __call__"
            """)
        }
    )
    handler = load_plugin(root).handler
    assert inspect.iscoroutinefunction(handler)
    assert asyncio.run(handler({}, {})) == "via __call__"


def test_factory_may_return_a_plain_function(write_plugin: PluginWriter) -> None:
    root = write_plugin(
        {
            "realtime.py": """
            async def answer(inputs, parameters):
                return "fn"

            def get_inference_service(**kwargs):
                return answer
            """
        }
    )
    handler = load_plugin(root).handler
    assert inspect.iscoroutinefunction(handler)
    assert asyncio.run(handler({}, {})) == "fn"


def test_plugin_local_fallback_base_class_is_recognised(write_plugin: PluginWriter) -> None:
    root = write_plugin(
        {
            "realtime.py": """
            try:
                from not_the_host.serve import BaseInferenceService
            except ImportError:
                class BaseInferenceService:
                    def __init__(self, **kwargs):
                        self.kwargs = kwargs

            class Service(BaseInferenceService):
                def run_inference(self, inputs, parameters):
                    return self.kwargs
            """
        }
    )
    assert load_plugin(root, {"x": 1}).handler({}, {}) == {"x": 1}


def test_most_derived_class_is_chosen_over_its_intermediate_base(
    write_plugin: PluginWriter,
) -> None:
    root = write_plugin(
        {
            "realtime.py": with_shim("""
            class Common(BaseInferenceService):
                def run_inference(self, inputs, parameters):
                    return "common"

            class Concrete(Common):
                def run_inference(self, inputs, parameters):
                    return "concrete"
            """)
        }
    )
    assert load_plugin(root).handler({}, {}) == "concrete"


def test_service_class_imported_from_a_helper_module_is_found(write_plugin: PluginWriter) -> None:
    root = write_plugin(
        {
            "processors/service.py": with_shim("""
            class Service(BaseInferenceService):
                def run_inference(self, inputs, parameters):
                    return "imported"
            """),
            "realtime.py": "from processors.service import Service\n",
        }
    )
    assert load_plugin(root).handler({}, {}) == "imported"


def test_two_unrelated_service_classes_are_ambiguous(write_plugin: PluginWriter) -> None:
    root = write_plugin(
        {
            "realtime.py": with_shim("""
            class Alpha(BaseInferenceService):
                def run_inference(self, inputs, parameters):
                    return 1

            class Beta(BaseInferenceService):
                def run_inference(self, inputs, parameters):
                    return 2
            """)
        }
    )
    with pytest.raises(PluginLoadError, match="several service classes: Alpha, Beta"):
        load_plugin(root)


def test_module_without_factory_or_service_class_is_rejected(write_plugin: PluginWriter) -> None:
    root = write_plugin({"realtime.py": "class NotAService:\n    pass\n"})
    with pytest.raises(PluginLoadError, match="neither get_inference_service"):
        load_plugin(root)


def test_subclass_implementing_nothing_is_rejected_at_load_time(
    write_plugin: PluginWriter,
) -> None:
    root = write_plugin(
        {"realtime.py": with_shim("class Service(BaseInferenceService):\n    pass\n")}
    )
    with pytest.raises(PluginLoadError, match="neither run_inference"):
        load_plugin(root)


def test_missing_realtime_file_is_a_load_error(write_plugin: PluginWriter) -> None:
    root = write_plugin({"manifest.py": "name = 'x'\n"})
    with pytest.raises(PluginLoadError, match="no realtime.py"):
        load_plugin(root)


def test_factory_returning_none_is_a_load_error(write_plugin: PluginWriter) -> None:
    root = write_plugin({"realtime.py": "def get_inference_service(**kwargs):\n    return None\n"})
    with pytest.raises(PluginLoadError, match="returned None"):
        load_plugin(root)


def test_constructor_errors_propagate_unchanged(write_plugin: PluginWriter) -> None:
    root = write_plugin(
        {
            "realtime.py": with_shim("""
            class Service(BaseInferenceService):
                def __init__(self, **kwargs):
                    raise RuntimeError("weights missing: model.bin")
                def run_inference(self, inputs, parameters):
                    return None
            """)
        }
    )
    with pytest.raises(RuntimeError, match="weights missing: model.bin"):
        load_plugin(root)


def test_import_error_in_realtime_names_the_module(write_plugin: PluginWriter) -> None:
    root = write_plugin({"realtime.py": "import definitely_not_installed_pkg\n"})
    with pytest.raises(ModuleNotFoundError) as caught:
        load_plugin(root)
    assert caught.value.name == "definitely_not_installed_pkg"


def test_process_single_only_service_with_serve_config_attribute_serves(
    write_plugin: PluginWriter,
) -> None:
    root = write_plugin(
        {
            "realtime.py": """
            from shared.plugins.inference.serve import BaseInferenceService, ServeDeploymentConfig

            class EchoRealtimeService(BaseInferenceService):
                serve_config = ServeDeploymentConfig(enabled=True, num_replicas=2)

                def __init__(self):
                    super().__init__()

                async def _process_single(self, inputs, parameters):
                    self.logger.info("answering")
                    return {"echo": inputs["text"], "k": parameters.get("k")}

            __all__ = ["EchoRealtimeService"]
            """
        }
    )
    plugin = load_plugin(root)
    assert plugin.handler.__name__ == "_process_single"
    assert inspect.iscoroutinefunction(plugin.handler)
    assert asyncio.run(plugin.handler({"text": "hi"}, {"k": 1})) == {"echo": "hi", "k": 1}


def test_plain_process_single_is_the_handler_of_a_fallback_base_subclass(
    write_plugin: PluginWriter,
) -> None:
    root = write_plugin(
        {
            "realtime.py": """
            try:
                from not_the_host.serve import BaseInferenceService
            except ImportError:
                class BaseInferenceService:
                    def run_inference(self, inputs, parameters):
                        return self._process_single(inputs, parameters)

            class Service(BaseInferenceService):
                def _process_single(self, inputs, parameters):
                    return "single"
            """
        }
    )
    plugin = load_plugin(root)
    assert plugin.handler.__name__ == "_process_single"
    assert plugin.handler({}, {}) == "single"


def test_class_named_like_a_service_is_found_without_a_base_class(
    write_plugin: PluginWriter,
) -> None:
    root = write_plugin(
        {
            "realtime.py": """
            class BaseRealtimeService:
                pass

            class Helper:
                pass

            class TextRealtimeService(BaseRealtimeService):
                def run_inference(self, inputs, parameters):
                    return "by name"
            """
        }
    )
    plugin = load_plugin(root)
    assert type(plugin.service).__name__ == "TextRealtimeService"
    assert plugin.handler({}, {}) == "by name"


def test_class_named_inference_service_wins_only_when_no_base_subclass_exists(
    write_plugin: PluginWriter,
) -> None:
    root = write_plugin(
        {
            "realtime.py": with_shim("""
            class OtherInferenceService:
                def run_inference(self, inputs, parameters):
                    return "by name"

            class Real(BaseInferenceService):
                def run_inference(self, inputs, parameters):
                    return "by base"
            """)
        }
    )
    assert load_plugin(root).handler({}, {}) == "by base"


def test_all_picks_one_of_several_service_classes(write_plugin: PluginWriter) -> None:
    root = write_plugin(
        {
            "realtime.py": with_shim("""
            class Alpha(BaseInferenceService):
                def run_inference(self, inputs, parameters):
                    return "alpha"

            class Beta(BaseInferenceService):
                def run_inference(self, inputs, parameters):
                    return "beta"

            __all__ = ["Beta"]
            """)
        }
    )
    assert load_plugin(root).handler({}, {}) == "beta"


def test_two_classes_named_like_services_are_ambiguous(write_plugin: PluginWriter) -> None:
    root = write_plugin(
        {
            "realtime.py": """
            class AInferenceService:
                def __call__(self, inputs, parameters):
                    return 1

            class BRealtimeService:
                def __call__(self, inputs, parameters):
                    return 2
            """
        }
    )
    with pytest.raises(PluginLoadError, match="several service classes"):
        load_plugin(root)


def test_run_inference_is_preferred_over_process_single_and_call(
    write_plugin: PluginWriter,
) -> None:
    root = write_plugin(
        {
            "realtime.py": with_shim("""
            class Service(BaseInferenceService):
                def _process_single(self, inputs, parameters):
                    return "single"
                def __call__(self, inputs, parameters):
                    return "call"
                def run_inference(self, inputs, parameters):
                    return "run"
            """)
        }
    )
    assert load_plugin(root).handler({}, {}) == "run"


def test_engine_and_shared_runtime_names_import_inside_a_plugin(
    write_plugin: PluginWriter,
) -> None:
    root = write_plugin(
        {
            "realtime.py": with_shim("""
            from engine.plugins.extractors.pipeline import RowCondition
            from engine.models import load_namespace_model
            from shared.plugins import open_asset

            class Service(BaseInferenceService):
                def run_inference(self, inputs, parameters):
                    return RowCondition.IS_TEXT.matches(inputs["mime_type"])
            """)
        }
    )
    assert load_plugin(root).handler({"mime_type": "text/plain"}, {}) is True


# -- the Mixpeek CLI's RealtimeHandler, construction, the container ---------------------------
REALTIME_HANDLER = """
from typing import Any, Dict

class RealtimeHandler:
    def __init__(self):
        self.calls = 0

    def predict(self, request: Dict[str, Any]) -> Dict[str, Any]:
        self.calls += 1
        return {"echo": request.get("text", ""), "calls": self.calls}
"""


def test_realtime_handler_without_base_class_answers_with_predict_of_the_inputs(
    write_plugin: PluginWriter,
) -> None:
    from plughost.replica.invoke import ServiceInvoker

    root = write_plugin({"realtime.py": REALTIME_HANDLER})
    plugin = load_plugin(root)
    assert type(plugin.service).__name__ == "RealtimeHandler"
    assert plugin.handler({"text": "hi"}, {"ignored": True}) == {"echo": "hi", "calls": 1}
    invoker = ServiceInvoker.for_plugin(plugin)
    try:
        answer = asyncio.run(invoker.call({"text": "again"}, {}))
    finally:
        invoker.shutdown()
    assert answer == {"echo": "again", "calls": 2}


def test_async_predict_stays_a_coroutine_function(write_plugin: PluginWriter) -> None:
    root = write_plugin(
        {
            "realtime.py": """
            import asyncio

            class RealtimeHandler:
                async def predict(self, request):
                    await asyncio.sleep(0)
                    return {"n": request["n"] * 2}
            """
        }
    )
    handler = load_plugin(root).handler
    assert inspect.iscoroutinefunction(handler)
    assert asyncio.run(handler({"n": 4}, {})) == {"n": 8}


def test_predict_taking_parameters_too_receives_them(write_plugin: PluginWriter) -> None:
    root = write_plugin(
        {
            "realtime.py": """
            class EmbedHandler:
                def predict(self, request, parameters=None):
                    return [request["x"], (parameters or {}).get("k")]
            """
        }
    )
    assert load_plugin(root).handler({"x": 1}, {"k": 2}) == [1, 2]


def test_a_base_service_wins_over_a_handler_class_with_predict(write_plugin: PluginWriter) -> None:
    root = write_plugin(
        {
            "realtime.py": with_shim("""
            class ModelHandler:
                def predict(self, request):
                    return "helper"

            class Service(BaseInferenceService):
                def run_inference(self, inputs, parameters):
                    return "service"
            """)
        }
    )
    assert load_plugin(root).handler({}, {}) == "service"


def test_a_class_with_predict_not_named_handler_is_not_a_service(
    write_plugin: PluginWriter,
) -> None:
    root = write_plugin(
        {"realtime.py": "class Model:\n    def predict(self, request):\n        pass\n"}
    )
    with pytest.raises(PluginLoadError, match=r"\*Handler class with predict"):
        load_plugin(root)


def test_handler_and_relative_imports_in_a_folder_without_any_init_file(
    write_plugin: PluginWriter,
) -> None:
    root = write_plugin(
        {
            "processors/core.py": "from ..constants import SCALE\n\ndef embed(t):\n"
            "    return [len(t) * SCALE]\n",
            "constants.py": "SCALE = 3\n",
            "realtime.py": """
            from .processors.core import embed

            class RealtimeHandler:
                def predict(self, request):
                    return {"embedding": embed(request["text"])}
            """,
        }
    )
    assert not any(root.rglob("__init__.py"))
    assert load_plugin(root).handler({"text": "abcd"}, {}) == {"embedding": [12]}


def test_only_the_constructor_arguments_a_class_names_are_passed(
    write_plugin: PluginWriter,
) -> None:
    root = write_plugin(
        {
            "realtime.py": """
            class RealtimeHandler:
                def __init__(self, prefix="-"):
                    self.prefix = prefix

                def predict(self, request):
                    return self.prefix + request["t"]
            """
        }
    )
    plugin = load_plugin(root, {"prefix": ">", "unknown": 1})
    assert plugin.handler({"t": "x"}, {}) == ">x"


def test_the_container_is_reachable_as_self_container(write_plugin: PluginWriter) -> None:
    root = write_plugin(
        {
            "realtime.py": with_shim("""
            class Service(BaseInferenceService):
                async def __call__(self, inputs, parameters):
                    return self.container.name
            """)
        }
    )
    container = type("Container", (), {"name": "the container"})()
    plugin = load_plugin(root, container=container)
    assert plugin.service.container is container  # type: ignore[attr-defined]
    assert asyncio.run(plugin.handler({}, {})) == "the container"


def test_a_factory_naming_container_receives_it_and_a_service_keeps_its_own(
    write_plugin: PluginWriter,
) -> None:
    root = write_plugin(
        {
            "realtime.py": """
            class Own:
                def __init__(self, given):
                    self.given = given
                    self.container = "own"

                def run_inference(self, inputs, parameters):
                    return [self.given is not None, self.container]

            def get_inference_service(container=None):
                return Own(container)
            """
        }
    )
    plugin = load_plugin(root, container=object())
    assert plugin.handler({}, {}) == [True, "own"]


def test_a_service_without_a_container_has_none_passed(write_plugin: PluginWriter) -> None:
    root = write_plugin({"realtime.py": REALTIME_HANDLER})
    assert not hasattr(load_plugin(root).service, "container")
