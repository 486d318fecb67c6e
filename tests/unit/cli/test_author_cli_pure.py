"""Pure pieces of the author's CLI: PLUGIN resolution, JSON arguments, SSE parsing,
progress, packing, scaffolding."""

from __future__ import annotations

import zipfile
from io import BytesIO
from pathlib import Path

import pytest

from plughost.cli.author.client import Target, decode_event, sse_events
from plughost.cli.author.errors import CliError
from plughost.cli.author.follow import progress_percent
from plughost.cli.author.packing import pack_folder
from plughost.cli.author.resolve import is_final, parse_json_object, resolve_plugin, version_key
from plughost.cli.author.scaffold import class_prefix, plugin_sources, write_plugin
from plughost.cli.author.session import curl_line, format_log_line

PLUGINS = [
    {"plugin_id": "emb_1_9_0", "name": "emb", "version": "1.9.0", "created_at": "2026-01-02"},
    {"plugin_id": "emb_1_10_0", "name": "emb", "version": "1.10.0", "created_at": "2026-01-01"},
    {"plugin_id": "emb_1_2_0", "name": "emb", "version": "1.2.0", "created_at": "2026-01-03"},
    {"plugin_id": "other_1_0_0", "name": "other", "version": "1.0.0", "created_at": "2026-01-01"},
]


def test_plugin_id_resolves_to_itself() -> None:
    assert resolve_plugin(PLUGINS, "emb_1_2_0")["plugin_id"] == "emb_1_2_0"


def test_name_resolves_to_the_highest_version_not_the_newest_upload() -> None:
    assert resolve_plugin(PLUGINS, "emb")["plugin_id"] == "emb_1_10_0"


def test_unknown_plugin_is_an_error_naming_it() -> None:
    with pytest.raises(CliError, match="'nope'"):
        resolve_plugin(PLUGINS, "nope")


def test_version_key_orders_numerically() -> None:
    assert version_key("1.10.0") > version_key("1.9.9") > version_key("v1")


def test_json_object_inline_and_from_file(tmp_path: Path) -> None:
    assert parse_json_object('{"text": "hi"}', "--input") == {"text": "hi"}
    (tmp_path / "in.json").write_text('{"a": [1, 2]}')
    assert parse_json_object(f"@{tmp_path / 'in.json'}", "--input") == {"a": [1, 2]}
    assert parse_json_object(None, "--input") is None


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("{nope", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ("@/no/such", "cannot read"),
    ],
)
def test_bad_json_arguments_are_refused(raw: str, message: str) -> None:
    with pytest.raises(CliError, match=message):
        parse_json_object(raw, "--input")


def test_sse_events_join_data_lines_and_skip_comments() -> None:
    lines = [": keepalive", "", 'data: {"status": "queued"}', "", "data: a", "data: b", ""]
    assert list(sse_events(iter(lines))) == ['{"status": "queued"}', "a\nb"]
    assert decode_event('{"status": "queued"}') == {"status": "queued"}
    assert decode_event("[1]") is None


def test_final_states() -> None:
    assert [is_final({"status": s}) for s in ("queued", "deployed", "failed", "not_deployed")] == [
        False,
        True,
        True,
        True,
    ]


def test_progress_follows_phase_and_eta() -> None:
    assert progress_percent("queued", 0.0, None) == 0.0
    assert progress_percent("in_progress", 1.0, None) == pytest.approx(66.67, abs=0.01)
    assert progress_percent("pending", 3.0, 1.0) == 75.0
    assert progress_percent("pending", 1000.0, 0.0) == 99.0
    assert progress_percent("failed", 0.0, 5.0) == 100.0


def test_pack_leaves_out_caches_and_is_reproducible(tmp_path: Path) -> None:
    (tmp_path / "processors" / "__pycache__").mkdir(parents=True)
    (tmp_path / "manifest.py").write_text("x = 1\n")
    (tmp_path / "processors" / "a.py").write_text("y = 2\n")
    (tmp_path / "processors" / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"\0")
    (tmp_path / ".pytest_cache").mkdir()
    (tmp_path / ".pytest_cache" / "README.md").write_text("cache")
    data = pack_folder(tmp_path)
    assert zipfile.ZipFile(BytesIO(data)).namelist() == ["manifest.py", "processors/a.py"]
    assert pack_folder(tmp_path) == data


def test_pack_refuses_links(tmp_path: Path) -> None:
    (tmp_path / "manifest.py").write_text("x = 1\n")
    (tmp_path / "link.py").symlink_to(tmp_path / "manifest.py")
    with pytest.raises(CliError, match="link.py is a symbolic link"):
        pack_folder(tmp_path)


def test_scaffold_names_and_refusals(tmp_path: Path) -> None:
    assert class_prefix("my_text_plugin") == "MyTextPlugin"
    sources = plugin_sources("my_text_plugin", "pydantic")
    assert "class MyTextPluginInferenceService(BaseInferenceService)" in sources["realtime.py"]
    assert "metadata = {" in sources["manifest.py"]
    with pytest.raises(CliError, match="invalid plugin name"):
        plugin_sources("1bad", "attributes")
    with pytest.raises(CliError, match="unknown style"):
        plugin_sources("good_name", "yaml")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("x")
    with pytest.raises(CliError, match="not an empty folder"):
        write_plugin(tmp_path / "taken", "taken", "attributes")


def test_curl_line_never_prints_the_key() -> None:
    flag = Target("http://h:1/", "secret", "ns", key_source="--api-key")
    line = curl_line(flag, "/inference/ns/custom_plugin_p_1_0_0", {"text": "it's"})
    assert "secret" not in line and "$PLUGHOST_API_KEY" in line
    assert line.endswith("http://h:1/inference/ns/custom_plugin_p_1_0_0")
    from_file = Target("http://h:1", "secret", "ns", key_source="/home/x/admin-key")
    assert "$(cat /home/x/admin-key)" in curl_line(from_file, "/r", {})


def test_log_line_format() -> None:
    line = {"time": "T", "release_id": 1, "replica": "r1-1", "stream": "stdout", "line": "hi"}
    assert format_log_line(line) == "T r1-1/stdout | hi"
