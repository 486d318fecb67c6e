"""``ExtractorDefinition``: the record a plugin's pipeline.py exports for discovery."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class ExtractorDefinition:
    """Name, version and entry point of a batch extractor (a plain record, no validation).

    ``extractor_function_path`` is, as in Mixpeek's templates, the ``build_steps`` callable
    itself (a dotted path string is kept as given). ``requires_file_resolution`` says whether
    the rows' URLs must be turned into local files before the steps run.
    """

    name: str
    version: str
    extractor_function_path: Callable[..., Any] | str
    requires_file_resolution: bool = False
