"""Plugin root discovery and the code hash."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from plughost.archive import LayoutError, code_hash, find_plugin_root, has_realtime


def make_tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def layout_errors(root: Path) -> list[str]:
    with pytest.raises(LayoutError) as caught:
        find_plugin_root(root)
    return caught.value.errors


def test_files_at_the_root_make_the_root_the_plugin(tmp_path: Path) -> None:
    make_tree(tmp_path, {"manifest.py": "", "pipeline.py": "", "processors/core.py": ""})

    assert find_plugin_root(tmp_path) == tmp_path


def test_single_top_level_folder_is_the_plugin(tmp_path: Path) -> None:
    make_tree(tmp_path, {"demo/manifest.py": "", "demo/pipeline.py": ""})

    assert find_plugin_root(tmp_path) == tmp_path / "demo"


def test_litter_beside_the_single_folder_is_ignored(tmp_path: Path) -> None:
    make_tree(tmp_path, {"demo/manifest.py": "", "demo/pipeline.py": "", ".DS_Store": ""})
    (tmp_path / "__MACOSX").mkdir()

    assert find_plugin_root(tmp_path) == tmp_path / "demo"


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"manifest.py": ""}, ["pipeline.py is missing from the archive root"]),
        ({"pipeline.py": ""}, ["manifest.py is missing from the archive root"]),
        ({"demo/pipeline.py": ""}, ["manifest.py is missing from folder 'demo/'"]),
        (
            {"demo/realtime.py": ""},
            [
                "manifest.py is missing from folder 'demo/'",
                "pipeline.py is missing from folder 'demo/'",
            ],
        ),
        (
            {"a/manifest.py": "", "a/pipeline.py": "", "b/x.py": "", "README.md": ""},
            [
                (
                    "manifest.py and pipeline.py must be at the archive root or inside "
                    "exactly one top-level folder (found: README.md, a/, b/)"
                )
            ],
        ),
        (  # two levels deep: the single folder itself lacks both files
            {"demo/a/manifest.py": "", "demo/a/pipeline.py": ""},
            [
                "manifest.py is missing from folder 'demo/'",
                "pipeline.py is missing from folder 'demo/'",
            ],
        ),
    ],
)
def test_missing_files_are_named(
    tmp_path: Path, files: dict[str, str], expected: list[str]
) -> None:
    make_tree(tmp_path, files)

    assert layout_errors(tmp_path) == expected


def test_empty_archive_has_no_files(tmp_path: Path) -> None:
    assert layout_errors(tmp_path) == ["archive contains no files"]


def test_directory_named_like_a_required_file_does_not_count(tmp_path: Path) -> None:
    make_tree(tmp_path, {"manifest.py/inner.py": "", "pipeline.py": ""})

    assert layout_errors(tmp_path) == ["manifest.py is missing from the archive root"]


def test_has_realtime(tmp_path: Path) -> None:
    make_tree(tmp_path, {"manifest.py": "", "pipeline.py": ""})
    assert has_realtime(tmp_path) is False

    (tmp_path / "realtime.py").write_text("")
    assert has_realtime(tmp_path) is True


def test_code_hash_follows_the_documented_recipe(tmp_path: Path) -> None:
    files = {"pipeline.py": "b", "manifest.py": "a", "processors/core.py": "c"}
    make_tree(tmp_path, files)
    (tmp_path / "empty_dir").mkdir()

    expected = hashlib.sha256()
    for name in sorted(files):
        data = files[name].encode()
        expected.update(name.encode() + b"\0" + len(data).to_bytes(8, "big") + data)

    assert code_hash(tmp_path) == expected.hexdigest()


def test_code_hash_separates_trees_that_would_concatenate_alike(tmp_path: Path) -> None:
    two_files = make_tree(tmp_path / "a", {"a": "1", "b": "2"})
    one_file = make_tree(tmp_path / "b", {"a": "1b\0" + "2"})

    assert code_hash(two_files) != code_hash(one_file)


def test_code_hash_changes_with_content_and_names(tmp_path: Path) -> None:
    first = make_tree(tmp_path / "one", {"manifest.py": "a"})
    renamed = make_tree(tmp_path / "two", {"manifest2.py": "a"})
    edited = make_tree(tmp_path / "three", {"manifest.py": "b"})

    assert len({code_hash(first), code_hash(renamed), code_hash(edited)}) == 3
