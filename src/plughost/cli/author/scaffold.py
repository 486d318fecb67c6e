"""``plughost init``: write a new plugin folder that passes validation and deploys as is."""

from __future__ import annotations

from pathlib import Path

from plughost.cli.author import templates
from plughost.cli.author.errors import CliError
from plughost.domain.ids import NAME_RE

STYLES = ("attributes", "pydantic")


def class_prefix(name: str) -> str:
    """``my_text_plugin`` -> ``MyTextPlugin``."""
    return "".join(part[:1].upper() + part[1:] for part in name.split("_") if part)


def plugin_sources(name: str, style: str) -> dict[str, str]:
    """The new plugin's files by relative path."""
    if not NAME_RE.fullmatch(name):
        raise CliError(
            f"invalid plugin name {name!r}: a letter, then 2 to 63 letters, digits or underscores"
        )
    if style not in STYLES:
        raise CliError(f"unknown style {style!r} (choose {' or '.join(STYLES)})")
    manifest = (
        templates.MANIFEST_ATTRIBUTES if style == "attributes" else templates.MANIFEST_PYDANTIC
    )
    raw = {
        "manifest.py": manifest,
        "pipeline.py": templates.PIPELINE,
        "realtime.py": templates.REALTIME,
        "processors/__init__.py": templates.PROCESSORS_INIT,
        "processors/text.py": templates.PROCESSORS_TEXT,
        "tests/test_plugin.py": templates.TEST,
        "README.md": templates.README,
    }
    fields = {"name": name, "cls": class_prefix(name), "style": style}
    return {path: text.format(**fields) for path, text in raw.items()}


def write_plugin(folder: Path, name: str, style: str) -> list[Path]:
    """Create ``folder`` with the plugin's files; CliError when it exists and is not empty."""
    sources = plugin_sources(name, style)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise CliError(f"{folder} already exists and is not an empty folder")
    written = []
    for rel, text in sources.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
