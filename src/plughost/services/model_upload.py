"""The upload side of namespace models: the form's checks, and the archive copied beside
the models' files while it is hashed, then taken in (a worker thread, behind the intake gate)."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from plughost.archive.errors import ArchiveError
from plughost.archive.model_formats import MODEL_FORMATS
from plughost.archive.model_intake import check_unpacked, take_in_model
from plughost.domain.ids import NAME_RE, validate_model_version
from plughost.errors import PayloadTooLargeError, ValidationError
from plughost.services.model_files import ModelFiles

_BLOCK = 1 << 20
# the bounds of the SDK's ModelResourceRequirements, which answers carry
MAX_CPUS, MIN_CPUS, MAX_GPUS, MAX_MEMORY_GB = 64.0, 0.1, 8, 4096.0
MAX_LABEL = 100


@dataclass(frozen=True)
class ModelForm:
    """The checked fields of an upload (the file apart)."""

    name: str
    version: str
    model_format: str
    framework: str | None = None
    task_type: str | None = None
    num_cpus: float | None = None
    num_gpus: int | None = None
    memory_gb: float | None = None


def check_form(form: ModelForm) -> ModelForm:
    """``form`` when every field is acceptable, else ValidationError naming the field."""
    if not isinstance(form.name, str) or not NAME_RE.fullmatch(form.name):
        raise ValidationError(
            f"invalid model name {form.name!r}: must match ^[a-zA-Z][a-zA-Z0-9_]{{2,63}}$",
            {"field": "name"},
        )
    validate_model_version(form.version)
    if form.model_format not in MODEL_FORMATS:
        raise ValidationError(
            f"model_format must be one of {', '.join(MODEL_FORMATS)}, not {form.model_format!r}",
            {"field": "model_format"},
        )
    for field, text in (("framework", form.framework), ("task_type", form.task_type)):
        if text is not None and len(text) > MAX_LABEL:
            raise ValidationError(f"{field} is longer than {MAX_LABEL} characters", {"field": field})
    check_resources(form.num_cpus, form.num_gpus, form.memory_gb)
    return form


def check_resources(num_cpus: float | None, num_gpus: int | None, memory_gb: float | None) -> None:
    if num_cpus is not None and not MIN_CPUS <= num_cpus <= MAX_CPUS:
        raise ValidationError(
            f"num_cpus must be between {MIN_CPUS} and {MAX_CPUS:g}", {"field": "num_cpus"}
        )
    if num_gpus is not None and not 0 <= num_gpus <= MAX_GPUS:
        raise ValidationError(f"num_gpus must be between 0 and {MAX_GPUS}", {"field": "num_gpus"})
    if memory_gb is not None and not 0 < memory_gb <= MAX_MEMORY_GB:
        raise ValidationError(
            f"memory_gb must be above 0 and at most {MAX_MEMORY_GB:g}", {"field": "memory_gb"}
        )


@dataclass
class Received:
    """The uploaded archive copied under the models' scratch folder, with its hash."""

    work: Path  # a scratch folder of this upload, removed by :meth:`discard`
    archive: Path
    sha256: str
    size: int
    unpacked_bytes: int = 0

    def discard(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)


def receive(files: ModelFiles, source: BinaryIO, max_bytes: int) -> Received:
    """Copy ``source`` to a scratch file while hashing it; 413 past ``max_bytes``."""
    work = Path(tempfile.mkdtemp(prefix="upload-", dir=files.scratch))
    archive = work / "archive"
    digest = hashlib.sha256()
    size = 0
    try:
        source.seek(0)
        with archive.open("wb") as out:
            while block := source.read(_BLOCK):
                size += len(block)
                if size > max_bytes:
                    raise PayloadTooLargeError(
                        f"model archive exceeds the limit of {max_bytes} bytes",
                        {"max_bytes": max_bytes},
                    )
                digest.update(block)
                out.write(block)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return Received(work, archive, digest.hexdigest(), size)


def take_in(files: ModelFiles, received: Received, model_format: str, max_bytes: int) -> None:
    """Unpack and check the archive, then keep its files as the blob of its hash; a known
    content (its blob is here) is checked as it lies, not unpacked again. ValidationError
    (422) listing every problem of an unsafe, oversize or mismatched archive."""
    try:
        if files.has_blob(received.sha256):
            blob = files.blob_dir(received.sha256)
            check_unpacked(blob, model_format)
            received.unpacked_bytes = _tree_bytes(blob)
            return
        intake = take_in_model(received.archive, received.work / "unpacked", model_format, max_bytes)
    except ArchiveError as exc:
        raise ValidationError(
            f"model archive refused: {'; '.join(exc.errors)}", {"errors": exc.errors}
        ) from exc
    received.unpacked_bytes = intake.size_bytes
    files.install_blob(received.sha256, intake.root)


def _tree_bytes(root: Path) -> int:
    total = 0
    for dirpath, _dirs, names in os.walk(root):
        total += sum(os.stat(Path(dirpath) / name).st_size for name in names)
    return total
