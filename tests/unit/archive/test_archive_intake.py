"""validate_archive end to end: stage order, result fields, clean-up, stable code hash."""

from __future__ import annotations

import hashlib
import tarfile
import zipfile
from pathlib import Path

import pytest
from archive_builders import PIPELINE_SOURCE, plugin_files, write_raw_tar, write_tar, write_zip

from plughost.archive import IntakeLimits, validate_archive

LIMITS = IntakeLimits(manifest_timeout_s=15.0)


def expected_hash(files: dict[str, bytes | str]) -> str:
    digest = hashlib.sha256()
    for name in sorted(files):
        data = files[name]
        raw = data.encode() if isinstance(data, str) else data
        digest.update(name.encode() + b"\0" + len(raw).to_bytes(8, "big") + raw)
    return digest.hexdigest()


def leftovers(workdir: Path) -> list[Path]:
    return list(workdir.iterdir()) if workdir.exists() else []


@pytest.mark.parametrize(
    ("kind", "prefix"),
    [("zip", ""), ("zip", "demo/"), ("tar.gz", ""), ("tar.gz", "demo/"), ("tar", "demo/")],
)
def test_valid_plugin_passes(tmp_path: Path, kind: str, prefix: str) -> None:
    files = plugin_files()
    path = tmp_path / "upload.bin"
    if kind == "zip":
        write_zip(path, files, prefix)
    else:
        write_tar(path, files, prefix, mode="w:gz" if kind == "tar.gz" else "w")
    workdir = tmp_path / "work"

    result = validate_archive(path, workdir, LIMITS)

    assert result.errors == []
    assert result.passed is True
    assert result.security_scan_passed is True
    assert result.has_realtime is False
    assert result.plugin_root is not None
    assert result.plugin_root.is_relative_to(workdir.resolve())
    assert (result.plugin_root / "manifest.py").is_file()
    assert result.plugin_root.name == (prefix.rstrip("/") or result.plugin_root.name)
    assert result.manifest is not None
    assert result.manifest["feature_extractor_name"] == "demo_plugin"
    assert result.code_hash == expected_hash(files)


def test_code_hash_is_the_same_for_zip_and_tar_of_the_same_files(tmp_path: Path) -> None:
    files = plugin_files({"realtime.py": "class Service:\n    pass\n", "data/vocab.txt": "a\nb\n"})
    archives = [
        write_zip(tmp_path / "a.zip", files),
        write_zip(tmp_path / "b.zip", files, prefix="wrapped/"),
        write_tar(tmp_path / "c.tgz", files),
        write_tar(tmp_path / "d.tar", files, prefix="other/", mode="w"),
    ]

    results = [validate_archive(path, tmp_path / "work", LIMITS) for path in archives]

    assert all(result.passed for result in results)
    assert {result.code_hash for result in results} == {expected_hash(files)}
    assert all(result.has_realtime for result in results)


def test_scan_failure_stops_before_the_manifest_runs(tmp_path: Path) -> None:
    files = plugin_files(
        {
            "manifest.py": "while True:\n    pass\n",  # would hang if it were ever run
            "pipeline.py": "import subprocess\n" + PIPELINE_SOURCE,
            "processors/core.py": "import os\n\ndef run(frame):\n    os.system('id')\n",
        }
    )
    archive = write_zip(tmp_path / "p.zip", files)
    workdir = tmp_path / "work"

    # a manifest that ran would end in its own timeout, an error the exact list has not
    result = validate_archive(archive, workdir, IntakeLimits(manifest_timeout_s=30.0))

    assert result.passed is False
    assert result.errors == [
        "pipeline.py:1:8 import of 'subprocess' is not allowed",
        "processors/core.py:4:5 call to 'os.system' is not allowed",
    ]
    assert result.security_scan_passed is False
    assert result.manifest is None
    assert result.code_hash == expected_hash(files)
    assert result.plugin_root is None
    assert leftovers(workdir) == []


def test_unsafe_archive_fails_at_the_first_stage(tmp_path: Path) -> None:
    link = tarfile.TarInfo("demo/pipeline.py")
    link.type = tarfile.SYMTYPE
    link.linkname = "/etc/passwd"
    members = [(tarfile.TarInfo("demo/manifest.py"), b"x = 1\n"), (link, None)]
    archive = write_raw_tar(tmp_path / "p.tgz", members)
    workdir = tmp_path / "work"

    result = validate_archive(archive, workdir, LIMITS)

    assert result.passed is False
    assert result.errors == ["archive entry 'demo/pipeline.py': symbolic link is not allowed"]
    assert result.code_hash is None
    assert result.security_scan_passed is False
    assert leftovers(workdir) == []


def test_corrupt_upload_fails_with_a_clear_error(tmp_path: Path) -> None:
    archive = tmp_path / "upload"
    archive.write_bytes(b"definitely not an archive")

    result = validate_archive(archive, tmp_path / "work", LIMITS)

    assert result.passed is False
    assert result.errors == ["archive is neither a zip nor a tar.gz file"]


def test_layout_failure_names_the_missing_file(tmp_path: Path) -> None:
    archive = write_zip(tmp_path / "p.zip", plugin_files(without=("pipeline.py",)))

    result = validate_archive(archive, tmp_path / "work", LIMITS)

    assert result.passed is False
    assert result.errors == ["pipeline.py is missing from the archive root"]
    assert result.code_hash is None


def test_empty_zip_fails_layout(tmp_path: Path) -> None:
    archive = tmp_path / "empty.zip"
    zipfile.ZipFile(archive, "w").close()

    result = validate_archive(archive, tmp_path / "work", LIMITS)

    assert result.errors == ["archive contains no files"]


def test_manifest_failure_keeps_scan_result_and_hash(tmp_path: Path) -> None:
    files = plugin_files({"manifest.py": "raise RuntimeError('no config')\n"})
    archive = write_tar(tmp_path / "p.tgz", files, prefix="demo/")
    workdir = tmp_path / "work"

    result = validate_archive(archive, workdir, LIMITS)

    assert result.passed is False
    assert result.errors == ["manifest.py raised RuntimeError: no config"]
    assert result.security_scan_passed is True
    assert result.code_hash == expected_hash(files)
    assert result.manifest is None
    assert leftovers(workdir) == []


def test_manifest_cannot_change_the_code_hash(tmp_path: Path) -> None:
    manifest = (
        "import pathlib\n"
        "pathlib.Path('dropped.py').write_text('x = 1')\n"
        "feature_extractor_name = 'writer'\n"
    )
    files = plugin_files({"manifest.py": manifest})
    archive = write_zip(tmp_path / "p.zip", files)

    result = validate_archive(archive, tmp_path / "work", LIMITS)

    assert result.passed is True
    assert result.code_hash == expected_hash(files)


def test_each_intake_uses_a_fresh_folder(tmp_path: Path) -> None:
    archive = write_zip(tmp_path / "p.zip", plugin_files())
    workdir = tmp_path / "work"

    first = validate_archive(archive, workdir, LIMITS)
    second = validate_archive(archive, workdir, LIMITS)

    assert first.plugin_root is not None and second.plugin_root is not None
    assert first.plugin_root != second.plugin_root
    assert len(leftovers(workdir)) == 2


def test_scan_and_manifest_children_both_go_through_the_sandbox_hook(tmp_path: Path) -> None:
    import sys

    from plughost.archive.manifest_reader import CHILD_SCRIPT as MANIFEST_SCRIPT
    from plughost.archive.scanner import CHILD_SCRIPT as SCAN_SCRIPT

    launched: list[str] = []

    def command(script: Path, plugin_root: Path) -> list[str]:
        launched.append(script.name)
        return [sys.executable, "-I", "-B", str(script), str(plugin_root)]

    archive = write_zip(tmp_path / "p.zip", plugin_files())
    limits = IntakeLimits(manifest_timeout_s=15.0, manifest_command=command)

    result = validate_archive(archive, tmp_path / "work", limits)

    assert result.passed, result.errors
    assert launched == [SCAN_SCRIPT.name, MANIFEST_SCRIPT.name]


def test_findings_of_the_isolated_scan_fail_intake_and_leave_nothing(tmp_path: Path) -> None:
    files = plugin_files({"os.py": "", "processors/bomb.py": "x" + "[0]" * 300_000})
    archive = write_zip(tmp_path / "p.zip", files)
    workdir = tmp_path / "work"

    result = validate_archive(archive, workdir, LIMITS)

    assert not result.passed and not result.security_scan_passed
    assert result.errors[0].startswith("os.py:1:1 module name 'os' shadows")
    assert result.errors[1].startswith("processors/bomb.py:1:1 cannot be parsed: ")
    assert result.manifest is None and leftovers(workdir) == []
