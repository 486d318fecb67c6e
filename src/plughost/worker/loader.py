"""Load a plugin's realtime.py and build its inference service.

Import rules (from the wire contract):
- the plugin folder is on ``sys.path``, so ``from processors.core import X`` works;
- realtime.py is loaded as ``<package>.realtime`` of a synthetic package whose ``__path__`` is
  the plugin folder, so ``from .processors.core import X`` works too;
- the runtime's shim makes ``from shared.plugins.inference.serve import BaseInferenceService``
  succeed.

The service is what ``get_inference_service(**kwargs)`` returns when realtime.py defines that
factory, otherwise an instance of the one (most derived) class realtime.py exposes that
derives from a class named ``BaseInferenceService`` (the shim's or the plugin's own fallback).
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import inspect
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, cast

PLUGIN_PACKAGE = "plughost_plugin"
SHIM_DIR = Path(__file__).resolve().parent / "shim"
FACTORY_NAME = "get_inference_service"
BASE_CLASS_NAME = "BaseInferenceService"
_UNIMPLEMENTED_MARK = "__plughost_unimplemented__"


class PluginLoadError(Exception):
    """The plugin's layout or realtime.py does not yield a usable inference service."""


@dataclass(frozen=True)
class LoadedPlugin:
    """A constructed service with the callable that answers requests.

    ``handler(inputs, parameters)`` is plain or async; ``health`` is the service's own
    ``health`` method when it has one.
    """

    service: object
    handler: Callable[..., Any]
    health: Callable[[], Any] | None


def install_import_paths(plugin_dir: Path) -> None:
    """Put the plugin folder first on ``sys.path`` and the shim right after it."""
    for entry in (str(SHIM_DIR), str(plugin_dir)):
        while entry in sys.path:
            sys.path.remove(entry)
        sys.path.insert(0, entry)


def create_plugin_package(plugin_dir: Path, name: str = PLUGIN_PACKAGE) -> ModuleType:
    """Register a package ``name`` whose ``__path__`` is the plugin folder.

    A plugin ``__init__.py`` is executed as the package body when present.
    """
    init_file = plugin_dir / "__init__.py"
    spec: importlib.machinery.ModuleSpec | None
    if init_file.is_file():
        spec = importlib.util.spec_from_file_location(
            name, init_file, submodule_search_locations=[str(plugin_dir)]
        )
    else:
        spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
        spec.submodule_search_locations = [str(plugin_dir)]
    if spec is None:
        raise PluginLoadError(f"cannot create a package for {plugin_dir}")
    return _execute(spec)


def load_realtime_module(plugin_dir: Path, package: ModuleType) -> ModuleType:
    """Load ``plugin_dir/realtime.py`` by path as the ``realtime`` submodule of ``package``."""
    path = plugin_dir / "realtime.py"
    if not path.is_file():
        raise PluginLoadError(f"plugin has no realtime.py in {plugin_dir}")
    spec = importlib.util.spec_from_file_location(f"{package.__name__}.realtime", path)
    if spec is None:
        raise PluginLoadError(f"cannot load {path}")
    module = _execute(spec)
    vars(package)["realtime"] = module
    return module


def _execute(spec: importlib.machinery.ModuleSpec) -> ModuleType:
    """Create, register and execute a module; it is unregistered again if execution fails."""
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    if spec.loader is None:
        return module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(spec.name, None)
        raise
    return module


def _derives_from_base(candidate: type) -> bool:
    """Whether ``candidate`` subclasses a class named BaseInferenceService (not being it)."""
    if candidate.__name__ == BASE_CLASS_NAME:
        return False
    return any(base.__name__ == BASE_CLASS_NAME for base in candidate.__mro__[1:])


def find_service_class(module: ModuleType) -> type:
    """The service class ``module`` exposes: the most derived BaseInferenceService subclass.

    Classes defined in the module win; classes it only imports count when it defines none.
    Raises PluginLoadError when there is no candidate or several unrelated ones.
    """
    exposed = [
        value
        for value in vars(module).values()
        if isinstance(value, type) and _derives_from_base(value)
    ]
    defined = [c for c in exposed if c.__module__ == module.__name__]
    candidates = defined or exposed
    leaves = [c for c in candidates if not any(o is not c and issubclass(o, c) for o in candidates)]
    if not leaves:
        raise PluginLoadError(
            f"realtime.py defines neither {FACTORY_NAME}(**kwargs) "
            f"nor a class deriving from {BASE_CLASS_NAME}"
        )
    if len(leaves) > 1:
        names = ", ".join(sorted(c.__name__ for c in leaves))
        raise PluginLoadError(f"realtime.py exposes several service classes: {names}")
    return leaves[0]


def build_service(module: ModuleType, init_kwargs: Mapping[str, Any]) -> object:
    """Call the module's factory, or instantiate its service class, with ``init_kwargs``."""
    factory = getattr(module, FACTORY_NAME, None)
    if callable(factory):
        service = factory(**init_kwargs)
        if service is None:
            raise PluginLoadError(f"{FACTORY_NAME}() returned None")
        return service
    return find_service_class(module)(**init_kwargs)


def _is_unimplemented(method: Any) -> bool:
    """Whether ``method`` is a base-class placeholder marked by the shim."""
    return bool(getattr(getattr(method, "__func__", method), _UNIMPLEMENTED_MARK, False))


def _delegates_to_run_inference(service: object) -> bool:
    """Whether the service's ``__call__`` is the shim's, which only forwards to run_inference."""
    call = type(service).__call__
    return any(
        base.__name__ == BASE_CLASS_NAME and base.__dict__.get("__call__") is call
        for base in type(service).__mro__
    )


def resolve_handler(service: object) -> Callable[..., Any]:
    """The callable answering requests: ``run_inference``, failing that ``__call__``.

    Raises PluginLoadError when the service offers neither.
    """
    run_inference = getattr(service, "run_inference", None)
    if callable(run_inference) and not _is_unimplemented(run_inference):
        return cast(Callable[..., Any], run_inference)
    if callable(service) and not _delegates_to_run_inference(service):
        handler: Callable[..., Any] = service if inspect.isroutine(service) else service.__call__
        return handler
    raise PluginLoadError(
        f"service {type(service).__name__} implements neither run_inference(inputs, parameters)"
        " nor __call__(inputs, parameters)"
    )


def load_plugin(
    plugin_dir: Path,
    init_kwargs: Mapping[str, Any] | None = None,
    package_name: str = PLUGIN_PACKAGE,
) -> LoadedPlugin:
    """Make the plugin importable, load its realtime.py and construct its service.

    Exceptions raised by the plugin's own code propagate unchanged; layout problems raise
    PluginLoadError.
    """
    plugin_dir = plugin_dir.resolve()
    if not plugin_dir.is_dir():
        raise PluginLoadError(f"plugin folder {plugin_dir} does not exist")
    install_import_paths(plugin_dir)
    package = create_plugin_package(plugin_dir, package_name)
    module = load_realtime_module(plugin_dir, package)
    service = build_service(module, init_kwargs or {})
    handler = resolve_handler(service)
    health = getattr(service, "health", None)
    return LoadedPlugin(
        service=service, handler=handler, health=health if callable(health) else None
    )
