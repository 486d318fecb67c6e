"""Which methods a plugin's service implements itself (not a base class's forwarders)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

BASE_CLASS_NAME = "BaseInferenceService"
_UNIMPLEMENTED_MARK = "__plughost_unimplemented__"


def _is_unimplemented(method: Any) -> bool:
    """Whether ``method`` is a base-class forwarder marked by the runtime API."""
    return bool(getattr(getattr(method, "__func__", method), _UNIMPLEMENTED_MARK, False))


def own_method(service: object, name: str) -> Callable[..., Any] | None:
    """The service's method ``name`` when the service itself implements it.

    Implemented means: an instance attribute, or defined by a class of the service's MRO
    other than ``object`` and any class named BaseInferenceService (ours forwards; a plugin's
    fallback base has nothing of its own to answer with).
    """
    instance_attributes = getattr(service, "__dict__", {})
    if name != "__call__" and callable(instance_attributes.get(name)):
        return cast(Callable[..., Any], instance_attributes[name])
    for klass in type(service).__mro__:
        if klass is object or klass.__name__ == BASE_CLASS_NAME:
            continue
        if name in vars(klass):
            method = getattr(service, name)
            return None if _is_unimplemented(method) else cast(Callable[..., Any], method)
    return None
