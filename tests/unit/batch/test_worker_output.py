"""A batch worker's output lines as the server keeps them: terminal control escaped, long
lines cut, and a line past the pipe reader's limit never stops the pump (issue 28)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from plughost.batch.launcher import STDERR_LINE_MAX_BYTES, BatchWorker

pytestmark = pytest.mark.unit


def _lines(data: bytes, mask: Any = None) -> list[str]:
    async def main() -> list[str]:
        reader = asyncio.StreamReader()  # asyncio's default line limit: 64 KiB
        reader.feed_data(data)
        reader.feed_eof()
        worker = BatchWorker(SimpleNamespace(stderr=reader, pid=1), None, mask_line=mask)  # type: ignore[arg-type]
        await worker._pump
        return list(worker.tail)

    return asyncio.run(main())


def test_terminal_control_is_escaped_and_secrets_masked_before_the_cut() -> None:
    secret = "S3CRET-VALUE"
    long = "a" * (STDERR_LINE_MAX_BYTES - 4) + secret  # the cut falls inside the secret
    lines = _lines(
        b"\x1b[2J\x1b]0;owned\x07title\n" + long.encode() + b"\n",
        mask=lambda text: text.replace(secret, "***"),
    )
    assert "\x1b" not in lines[0] and "\x07" not in lines[0]
    assert lines[0].startswith("\\x1b[2J\\x1b]0;owned")
    assert "S3CR" not in lines[1] and "bytes cut]" not in lines[1]  # masked whole, then short


def test_a_line_past_the_readers_limit_is_cut_and_the_lines_after_it_kept() -> None:
    lines = _lines(b"x" * 20_000 + b"\n" + b"y" * 200_000 + b"\nafter\n")
    assert lines[0].endswith("bytes cut]") and len(lines[0].encode()) < 20_000
    assert "cut" in lines[1]
    assert lines[-1] == "after"
