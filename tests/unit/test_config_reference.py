"""docs/configuration.md is written from Settings' fields and fails this test when stale."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import Field
from pydantic_settings import BaseSettings

from plughost import config_reference
from plughost.config import Settings
from plughost.config_reference import env_name, main, render

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_configuration_md_matches_the_settings() -> None:
    assert DOC.read_text() == render(), (
        "docs/configuration.md is stale: run `make config-docs` and commit the result"
    )


def test_every_setting_has_a_description() -> None:
    missing = [name for name, info in Settings.model_fields.items() if not info.description]
    assert missing == []


def test_every_setting_is_a_row_of_the_reference() -> None:
    text = render()
    for name in Settings.model_fields:
        assert f"| `{env_name(name)}` |" in text


def test_row_shows_type_range_default_and_description() -> None:
    text = render()
    assert "| `PLUGHOST_WORKERS` | integer (>= 1, <= 64) | `1` | server processes" in text
    assert "| `PLUGHOST_HOME` | path | `./.plughost` |" in text
    assert "| `PLUGHOST_WARM_SPARE` | boolean | `true` |" in text
    assert "| `PLUGHOST_SANDBOX` | `off` \\| `auto` \\| `strict` | `auto` |" in text
    assert "| `PLUGHOST_DATABASE_URL` | string | empty |" in text


def test_a_section_naming_a_missing_field_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    class Small(BaseSettings):
        only: int = Field(default=1, description="the one field")

    monkeypatch.setattr(config_reference, "SECTIONS", (("Gone", "renamed_away"),))
    with pytest.raises(ValueError, match="renamed_away"):
        render(Small)


def test_check_fails_on_a_stale_file_and_a_write_fixes_it(tmp_path: Path) -> None:
    out = tmp_path / "configuration.md"
    out.write_text("# stale\n")
    assert main(["--check", "--output", str(out)]) == 1
    assert out.read_text() == "# stale\n"  # --check writes nothing
    assert main(["--output", str(out)]) == 0
    assert main(["--check", "--output", str(out)]) == 0
    assert out.read_text() == render()


def test_check_fails_when_the_file_is_missing(tmp_path: Path) -> None:
    assert main(["--check", "--output", str(tmp_path / "absent.md")]) == 1
