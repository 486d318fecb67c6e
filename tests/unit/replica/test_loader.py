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
