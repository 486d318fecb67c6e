"""Load a plugin's realtime.py and build its inference service.

Import rules (from the wire contract):
- the plugin folder is on ``sys.path``, so ``from processors.core import X`` works;
- realtime.py is loaded as ``<package>.realtime`` of a synthetic package whose ``__path__`` is
  the plugin folder, so ``from .processors.core import X`` works too;
- the runtime API folder (:mod:`plughost.runtime_api`) comes right after the plugin folder,
  so ``shared.*`` and ``engine.*`` (Mixpeek's plugin API) import.

The service is what ``get_inference_service(**kwargs)`` returns when realtime.py defines that
factory, otherwise an instance of the class :func:`find_service_class` picks. Its handler is
the first of ``run_inference``, ``_process_single``, ``__call__`` and ``predict`` it
implements; a handler taking one argument (``predict(self, request)``, the Mixpeek CLI's
``RealtimeHandler`` style) is given the inputs dict alone.
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

from plughost.replica.batch_handler import is_frame_service, one_of_a_batch, resolve_batch_handler
from plughost.replica.methods import BASE_CLASS_NAME, own_method
from plughost.runtime_api import RUNTIME_API_DIR

PLUGIN_PACKAGE = "plughost_plugin"
SHIM_DIR = RUNTIME_API_DIR
"""The runtime API folder put on ``sys.path`` (kept under its old name for callers)."""
FACTORY_NAME = "get_inference_service"

SERVICE_NAME_SUFFIXES: tuple[str, str] = ("InferenceService", "RealtimeService")
HANDLER_CLASS_SUFFIX = "Handler"
HANDLER_NAMES: tuple[str, ...] = ("run_inference", "_process_single", "__call__", "predict")
"""Methods that answer a request, in the order the loader prefers them."""


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
    # ``batch_handler(inputs: list, parameters: list) -> list`` when the service can take a
    # micro-batch (plughost.replica.batching): its run_inference_batch, or a
    # BaseBatchInferenceService's DataFrame call
    batch_handler: Callable[..., Any] | None = None


def install_import_paths(plugin_dir: Path) -> None:
    """Put the plugin folder first on ``sys.path`` and the runtime API folder right after it."""
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


def _named_like_a_service(candidate: type) -> bool:
    """Whether the class name says "service": ``*InferenceService`` or ``*RealtimeService``,
    not ``Base*``."""
    name = candidate.__name__
    return name.endswith(SERVICE_NAME_SUFFIXES) and not name.startswith("Base")


def _predicting_handler(candidate: type) -> bool:
    """Whether the class is a ``*Handler`` (not ``Base*``) with a ``predict`` method, as the
    Mixpeek CLI's ``class RealtimeHandler`` (no base class) is."""
    name = candidate.__name__
    return (
        name.endswith(HANDLER_CLASS_SUFFIX)
        and not name.startswith("Base")
        and callable(getattr(candidate, "predict", None))
    )


def _exported_names(module: ModuleType) -> frozenset[str]:
    """The names the module's ``__all__`` lists (empty when it has none or a malformed one)."""
    listed = vars(module).get("__all__")
    if not isinstance(listed, (list, tuple)):
        return frozenset()
    return frozenset(name for name in listed if isinstance(name, str))


def _preferred(module: ModuleType, rule: Callable[[type], bool]) -> list[type]:
    """Classes the module exposes that satisfy ``rule``, narrowed by preference.

    The first non-empty tier wins: the classes ``__all__`` names, then those the module
    defines, then every exposed one. Within it, only the most derived classes remain.
    """
    exported = _exported_names(module)
    exposed: dict[type, bool] = {}
    for name, value in vars(module).items():
        if isinstance(value, type) and rule(value):
            exposed[value] = exposed.get(value, False) or name in exported
    listed = [c for c, named in exposed.items() if named]
    defined = [c for c in exposed if c.__module__ == module.__name__]
    candidates = listed or defined or list(exposed)
    return [c for c in candidates if not any(o is not c and issubclass(o, c) for o in candidates)]


def find_service_class(module: ModuleType) -> type:
    """The service class ``module`` exposes.

    First choice: the most derived class deriving from a class named BaseInferenceService
    (the runtime API's or the plugin's own fallback). Failing that: a class whose name ends
    in ``InferenceService`` or ``RealtimeService`` and does not start with ``Base``. Last: a
    class whose name ends in ``Handler`` that has a ``predict`` method (``RealtimeHandler``).
    In each case the classes ``__all__`` names win, then the ones the module defines, then
    those it only imports. Raises PluginLoadError when there is no candidate or several
    unrelated ones.
    """
    leaves = (
        _preferred(module, _derives_from_base)
        or _preferred(module, _named_like_a_service)
        or _preferred(module, _predicting_handler)
    )
    if not leaves:
        raise PluginLoadError(
            f"realtime.py defines neither {FACTORY_NAME}(**kwargs) "
            f"nor a class deriving from {BASE_CLASS_NAME} "
            f"(or named *{SERVICE_NAME_SUFFIXES[0]} / *{SERVICE_NAME_SUFFIXES[1]}, "
            f"or a *{HANDLER_CLASS_SUFFIX} class with predict(request))"
        )
    if len(leaves) > 1:
        names = ", ".join(sorted(c.__name__ for c in leaves))
        raise PluginLoadError(f"realtime.py exposes several service classes: {names}")
    return leaves[0]


def _construction_kwargs(
    target: Callable[..., Any], init_kwargs: Mapping[str, Any], container: object | None
) -> dict[str, Any]:
    """What ``target`` (a factory or a service class) is called with.

    All of ``init_kwargs`` when it takes ``**kwargs`` (or its signature cannot be read), else
    those it names; ``container`` only to a target naming a ``container`` parameter (a
    ``**kwargs`` constructor often hands its keywords on to ``object.__init__``).
    """
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):
        return dict(init_kwargs)
    named = {n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        chosen = dict(init_kwargs)
    else:
        chosen = {key: value for key, value in init_kwargs.items() if key in named}
    if container is not None and "container" in named:
        chosen.setdefault("container", container)
    return chosen


def build_service(
    module: ModuleType, init_kwargs: Mapping[str, Any], container: object | None = None
) -> object:
    """Call the module's factory, or instantiate its service class, with the keyword arguments
    it accepts (:func:`_construction_kwargs`); then :func:`attach_container`."""
    factory = getattr(module, FACTORY_NAME, None)
    if callable(factory):
        service = factory(**_construction_kwargs(factory, init_kwargs, container))
        if service is None:
            raise PluginLoadError(f"{FACTORY_NAME}() returned None")
    else:
        service_class = find_service_class(module)
        service = service_class(**_construction_kwargs(service_class, init_kwargs, container))
    attach_container(service, container)
    return service


def attach_container(service: object, container: object | None) -> None:
    """Make ``container`` reachable as ``service.container``.

    The one place a realtime service receives the platform container (secrets, LLM calls).
    Nothing happens when ``container`` is None, when the service set a ``container`` of its
    own, or when the object takes no attributes (a plain function, ``__slots__``).
    """
    if container is None or inspect.isroutine(service):
        return
    if getattr(service, "container", None) is not None:
        return
    try:
        vars(service)["container"] = container
    except TypeError:  # no instance __dict__ (__slots__, a builtin)
        return


def resolve_handler(service: object) -> Callable[..., Any]:
    """The callable answering requests as ``handler(inputs, parameters)``.

    It is the first of ``run_inference``, ``_process_single``, ``__call__`` and ``predict``
    the service implements (a plain function from a factory is its own handler). The method
    itself is returned, so an ``async`` one stays a coroutine function; one that takes a
    single argument (``predict(self, request)``) is wrapped to receive the inputs alone, its
    async-ness kept. Raises PluginLoadError when the service implements none of them.
    """
    if inspect.isroutine(service):
        return _two_argument_form(cast(Callable[..., Any], service))
    for name in HANDLER_NAMES:
        method = own_method(service, name)
        if method is not None:
            return _two_argument_form(method)
    raise PluginLoadError(
        f"service {type(service).__name__} implements neither run_inference(inputs, parameters)"
        ", _process_single(inputs, parameters), __call__(inputs, parameters)"
        " nor predict(request)"
    )


def _takes_one_argument(method: Callable[..., Any]) -> bool:
    """Whether ``method`` accepts exactly one positional argument (no ``*args``)."""
    try:
        params = inspect.signature(method).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if any(p.kind is p.VAR_POSITIONAL for p in params) or not positional:
        return False
    return len(positional) == 1


def _two_argument_form(method: Callable[..., Any]) -> Callable[..., Any]:
    """``method`` callable as ``(inputs, parameters)``: itself, or a wrapper passing the
    inputs alone to a one-argument method."""
    if not _takes_one_argument(method):
        return method
    if inspect.iscoroutinefunction(method):

        async def call_async(inputs: Any, parameters: Any) -> Any:
            return await method(inputs)

        wrapper: Callable[..., Any] = call_async
    else:

        def call(inputs: Any, parameters: Any) -> Any:
            return method(inputs)

        wrapper = call
    wrapper.__name__ = getattr(method, "__name__", wrapper.__name__)
    wrapper.__qualname__ = getattr(method, "__qualname__", wrapper.__qualname__)
    return wrapper


def load_plugin(
    plugin_dir: Path,
    init_kwargs: Mapping[str, Any] | None = None,
    package_name: str = PLUGIN_PACKAGE,
    container: object | None = None,
) -> LoadedPlugin:
    """Make the plugin importable, load its realtime.py and construct its service.

    ``container`` (the platform container, when the process has one) becomes
    ``service.container``. Exceptions raised by the plugin's own code propagate unchanged;
    layout problems raise PluginLoadError.
    """
    plugin_dir = plugin_dir.resolve()
    if not plugin_dir.is_dir():
        raise PluginLoadError(f"plugin folder {plugin_dir} does not exist")
    install_import_paths(plugin_dir)
    package = create_plugin_package(plugin_dir, package_name)
    module = load_realtime_module(plugin_dir, package)
    service = build_service(module, init_kwargs or {}, container)
    batch_handler = resolve_batch_handler(service)
    if batch_handler is not None and is_frame_service(service):
        handler = one_of_a_batch(batch_handler)  # its __call__ takes a DataFrame, not inputs
    else:
        handler = resolve_handler(service)
    health = getattr(service, "health", None)
    return LoadedPlugin(
        service=service,
        handler=handler,
        health=health if callable(health) else None,
        batch_handler=batch_handler,
    )
