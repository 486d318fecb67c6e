"""``load_namespace_model``: Mixpeek's loader of models uploaded to a namespace.

plughost does not store models yet, so there is nothing to load: the function always raises
:class:`NamespaceModelUnavailable` naming the model, which a replica reports as its start
error. Plugins can ship small weights inside the archive, or load public models through the
``models`` extra (torch, transformers) in a namespace allowed to reach the network.
"""

from __future__ import annotations

from typing import Any, NoReturn


class NamespaceModelUnavailable(RuntimeError):
    """A namespace model was asked for; plughost has no model store to load it from."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"namespace model {name!r} cannot be loaded: plughost does not store models yet "
            "(ship the weights inside the plugin archive, or load a public model with "
            "transformers in a namespace allowed to use the network)"
        )
        self.model_name = name


def load_namespace_model(name: str, *args: Any, **kwargs: Any) -> NoReturn:
    """Always raise :class:`NamespaceModelUnavailable` naming ``name``.

    Any further arguments Mixpeek's loader takes (version, device...) are accepted and ignored.
    """
    raise NamespaceModelUnavailable(str(name))
