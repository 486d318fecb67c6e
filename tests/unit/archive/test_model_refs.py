"""The namespace model ids a plugin's code names, found by the scan child at intake."""

from __future__ import annotations

import ast
from pathlib import Path

from plughost.archive import IntakeLimits
from plughost.archive._model_refs import model_refs
from plughost.archive.intake import validate_archive
from plughost.archive.scanner import scan_tree_isolated

SOURCE = '''
from engine.models import LazyModelMixin, lazy_model, load_namespace_model
from shared.inference.registry import get_batch_service
from shared.models import loader

weights = load_namespace_model("direct_1_0_0")
other = loader.load_namespace_model(model_id="attr_kw_1_0_0")
svc = get_batch_service("batch_svc")
computed = load_namespace_model(f"dyn_{1}")

class Embedder(LazyModelMixin):
    model_id = "mixin_1_0_0"
    model_source: str = "namespace"

class Annotated(LazyModelMixin):
    model_id: str = "annotated_2_0_0"

class Deco:
    @lazy_model("deco_1_0_0")
    def run(self):
        pass
'''


def test_constants_passed_to_the_loaders_and_mixin_ids_are_found() -> None:
    assert model_refs(ast.parse(SOURCE)) == {
        "direct_1_0_0", "attr_kw_1_0_0", "batch_svc", "mixin_1_0_0", "annotated_2_0_0",
        "deco_1_0_0",
    }


def test_the_isolated_scan_reports_them(tmp_path: Path) -> None:
    (tmp_path / "realtime.py").write_text(SOURCE)
    (tmp_path / "helpers.py").write_text('load_namespace_model("second_1_0_0")\n')
    refs: set[str] = set()
    assert scan_tree_isolated(tmp_path, IntakeLimits(), refs) == []
    assert "direct_1_0_0" in refs and "second_1_0_0" in refs


def test_intake_records_them(tmp_path: Path) -> None:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("manifest.py", 'feature_extractor_name = "p_refs"\nversion = "1.0.0"\n')
        zf.writestr("pipeline.py", "def build_steps(*a, **k):\n    return {'steps': []}\n")
        zf.writestr("realtime.py", 'MODEL = "x"\nw = load_namespace_model("used_1_0_0")\n')
    archive = tmp_path / "p.zip"
    archive.write_bytes(buf.getvalue())
    result = validate_archive(archive, tmp_path / "work")
    assert result.passed, result.errors
    assert result.model_refs == ["used_1_0_0"]
