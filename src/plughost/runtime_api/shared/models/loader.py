"""``load_namespace_model``: Mixpeek's loader of models uploaded to a namespace; also
``load_hf_model`` and ``is_hf_model_cached`` (:mod:`.hf`).

``load_namespace_model(model_id)`` finds the model in the namespace's model folder
(:mod:`.index`) and returns, by its format (:mod:`.formats`): a state_dict (safetensors,
memory-mapped; pytorch, ``weights_only``), the ``.onnx`` path (with an onnxruntime session
when installed) or the Hugging Face folder. An unknown id raises
:class:`NamespaceModelUnavailable` listing the ids the namespace has. Each load, ok or not,
is reported to the server with its duration (:mod:`.reports`).
"""

from __future__ import annotations

import time
from typing import Any

from .formats import OnnxModel
from .hf import HFModelNotCached, is_hf_model_cached, load_hf_model
from .index import NamespaceModelUnavailable, find_model
from .reports import FAILED, OK, report_load

__all__ = [
    "HFModelNotCached",
    "NamespaceModelUnavailable",
    "OnnxModel",
    "is_hf_model_cached",
    "load_hf_model",
    "load_namespace_model",
]


def load_namespace_model(model_id: str, *args: Any, **kwargs: Any) -> Any:
    """The model ``model_id`` of this namespace, loaded by its format (see the module).

    Further arguments Mixpeek's loader takes (a namespace, a device) are accepted and
    ignored: a plugin only ever sees its own namespace's models, on the CPU.
    """
    from .formats import load_format

    started = time.perf_counter()
    name = str(model_id)
    try:
        entry = find_model(name)
        try:
            loaded = load_format(entry.model_format, entry.folder, f"namespace model {name!r}")
        except (OSError, TypeError, ValueError) as exc:
            raise NamespaceModelUnavailable(
                name, f"namespace model {name!r} cannot be loaded: {exc}"
            ) from exc
    except BaseException:
        report_load(name, FAILED, time.perf_counter() - started)
        raise
    report_load(name, OK, time.perf_counter() - started)
    return loaded
