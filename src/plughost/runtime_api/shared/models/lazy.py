"""``LazyModelMixin`` and ``@lazy_model``: load a model on first use, not at construction.

The model comes from the namespace (``model_source = "namespace"``:
:func:`~.loader.load_namespace_model`) or the offline Hugging Face sources
(``"huggingface"``, the default: :func:`~.hf.load_hf_model`). The default
``_instantiate_model(cached)`` builds a ``transformers`` model (``model_class``, e.g.
``"AutoModel"``) and tokenizer from a Hugging Face folder, an ONNX model as its
onnxruntime session (or path), and refuses a bare state_dict: only the plugin knows the
architecture its weights fit, so it overrides ``_instantiate_model``.
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .formats import OnnxModel, has_torch

NAMESPACE = "namespace"
HUGGINGFACE = "huggingface"
SOURCES = (NAMESPACE, HUGGINGFACE)
_LOAD_LOCK = threading.RLock()  # loads are rare: one at a time keeps each model loaded once


@dataclass(frozen=True)
class ModelSpec:
    model_id: str
    model_class: str = "AutoModel"
    tokenizer_class: str | None = "AutoTokenizer"
    torch_dtype: str | None = "float32"
    model_source: str = HUGGINGFACE


def detect_device() -> str:
    """``"cuda"``, ``"mps"`` or ``"cpu"``: the best device torch sees (cpu without torch)."""
    if not has_torch():
        return "cpu"
    import torch

    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def load_cached(spec: ModelSpec) -> Any:
    """What the spec's source gives: a namespace model as loaded, or load_hf_model's dict."""
    if not spec.model_id:
        raise ValueError("model_id is empty: set the class attribute (or lazy_model's model_id)")
    if spec.model_source not in SOURCES:
        raise ValueError(f"model_source must be one of {SOURCES}, not {spec.model_source!r}")
    if spec.model_source == NAMESPACE:
        from .loader import load_namespace_model

        return load_namespace_model(spec.model_id)
    from .hf import load_hf_model

    return load_hf_model(
        hf_model_id=spec.model_id,
        model_class=spec.model_class,
        tokenizer_class=spec.tokenizer_class,
        torch_dtype=spec.torch_dtype,
    )


def instantiate(spec: ModelSpec, cached: Any, device: str) -> tuple[Any, Any]:
    """The default ``(model, tokenizer)`` for ``cached`` (see the module)."""
    if isinstance(cached, OnnxModel):
        return (cached.session if cached.session is not None else cached), None
    if isinstance(cached, dict) and "model_dir" in cached:
        return from_pretrained(spec, str(cached["model_dir"]), device)
    if isinstance(cached, str):
        return from_pretrained(spec, cached, device)
    raise NotImplementedError(
        f"model {spec.model_id!r} is a bare state_dict: override _instantiate_model(self, "
        "weights) to build the architecture, load_state_dict(weights) and return "
        "(model, tokenizer or None)"
    )


def from_pretrained(spec: ModelSpec, folder: str, device: str) -> tuple[Any, Any]:
    """``transformers.<model_class>`` and ``<tokenizer_class>`` from a local folder."""
    import transformers

    model_cls = getattr(transformers, spec.model_class, None)
    if model_cls is None:
        raise ValueError(f"transformers has no model class {spec.model_class!r}")
    options: dict[str, Any] = {"local_files_only": True}
    if spec.torch_dtype:
        import torch

        dtype_key = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
        options[dtype_key] = getattr(torch, spec.torch_dtype.removeprefix("torch."))
    model = model_cls.from_pretrained(folder, **options)
    model.to(device)
    model.eval()
    tokenizer = None
    if spec.tokenizer_class:
        tokenizer_cls = getattr(transformers, spec.tokenizer_class, None)
        if tokenizer_cls is None:
            raise ValueError(f"transformers has no tokenizer class {spec.tokenizer_class!r}")
        tokenizer = tokenizer_cls.from_pretrained(folder, local_files_only=True)
    return model, tokenizer


class LazyModelMixin:
    """Mix into a service: the model loads on the first :meth:`get_model` (or
    :meth:`ensure_model_loaded`), once per instance; configure it with the class attributes."""

    model_id: str = ""
    model_class: str = "AutoModel"
    tokenizer_class: str | None = "AutoTokenizer"
    torch_dtype: str | None = "float32"
    model_source: str = HUGGINGFACE

    # class-level defaults: a subclass whose __init__ never reaches ours still works
    _model: Any = None
    _tokenizer: Any = None
    _device: str | None = None

    def _model_spec(self) -> ModelSpec:
        return ModelSpec(
            model_id=self.model_id,
            model_class=self.model_class,
            tokenizer_class=self.tokenizer_class,
            torch_dtype=self.torch_dtype,
            model_source=self.model_source,
        )

    def _detect_device(self) -> str:
        return detect_device()

    def _instantiate_model(self, cached: Any) -> tuple[Any, Any]:
        """``(model, tokenizer)`` from what the source gave; override for your architecture."""
        return instantiate(self._model_spec(), cached, self._device or self._detect_device())

    def ensure_model_loaded(self) -> None:
        if self._model is not None:
            return
        with _LOAD_LOCK:
            if self._model is not None:
                return
            self._device = self._device or self._detect_device()
            model, tokenizer = self._instantiate_model(load_cached(self._model_spec()))
            self._tokenizer = tokenizer
            self._model = model

    def get_model(self) -> tuple[Any, Any]:
        """``(model, tokenizer)``, loading them the first time."""
        self.ensure_model_loaded()
        return self._model, self._tokenizer

    @property
    def model(self) -> Any:
        return self.get_model()[0]

    @property
    def tokenizer(self) -> Any:
        return self.get_model()[1]


def lazy_model(
    model_id: str,
    model_class: str = "AutoModel",
    tokenizer_class: str | None = "AutoTokenizer",
    torch_dtype: str | None = "float32",
    model_source: str = HUGGINGFACE,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a method: before its first call the model loads and ``self._model``,
    ``self._tokenizer`` and ``self._device`` are set (plain and ``async`` methods alike)."""
    spec = ModelSpec(model_id, model_class, tokenizer_class, torch_dtype, model_source)

    def ensure(owner: Any) -> None:
        if vars(owner).get("_model") is not None:
            return
        with _LOAD_LOCK:
            if vars(owner).get("_model") is not None:
                return
            device = detect_device()
            model, tokenizer = instantiate(spec, load_cached(spec), device)
            owner._device = device
            owner._tokenizer = tokenizer
            owner._model = model

    def decorate(method: Callable[..., Any]) -> Callable[..., Any]:
        if inspect.iscoroutinefunction(method):

            @functools.wraps(method)
            async def run_async(self: Any, *args: Any, **kwargs: Any) -> Any:
                ensure(self)
                return await method(self, *args, **kwargs)

            return run_async

        @functools.wraps(method)
        def run(self: Any, *args: Any, **kwargs: Any) -> Any:
            ensure(self)
            return method(self, *args, **kwargs)

        return run

    return decorate
