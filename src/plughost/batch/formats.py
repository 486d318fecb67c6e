"""Which of JSONL, CSV or Parquet an input is, told apart by its first bytes and its name."""

from __future__ import annotations

from pathlib import Path

from plughost.errors import ValidationError

FORMATS = ("jsonl", "csv", "parquet")
PARQUET_MAGIC = b"PAR1"
_EXTENSIONS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
SNIFF_BYTES = 4096
# UTF-32 LE starts like UTF-16 LE: either is refused the same way
_UTF16_32_BOMS = (b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")


class InputFormatError(ValidationError):
    """The input is not JSONL, CSV or Parquet, or is malformed; the message names where."""

    error_type = "InputFormatError"


def format_from_name(name: str | None) -> str | None:
    if not name:
        return None
    return _EXTENSIONS.get(Path(name.split("?", 1)[0]).suffix.lower())


def detect_format(head: bytes, name: str | None = None) -> str:
    """The input's format from its first bytes (content wins) and file name.

    Raises InputFormatError for an empty input, a ``.parquet`` name without Parquet bytes, or
    binary content that is neither."""
    by_name = format_from_name(name)
    if head.startswith(PARQUET_MAGIC):
        return "parquet"
    if by_name == "parquet":
        raise InputFormatError(f"{name!r} is not a Parquet file (it does not start with PAR1)")
    if head.startswith(_UTF16_32_BOMS):
        raise InputFormatError(
            "the input is UTF-16 or UTF-32 text (it starts with a byte order mark): save it as "
            "UTF-8 (JSONL, CSV) or Parquet",
            {"offset": 0},
        )
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if not text:
        raise InputFormatError("the input is empty")
    if b"\x00" in head:
        raise InputFormatError(
            "the input is binary but not Parquet: expected JSONL, CSV or Parquet"
        )
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # a character cut by the end of a full sniff window is fine
        cut = exc.reason == "unexpected end of data" and len(head) >= SNIFF_BYTES
        if not cut:
            line = head.count(b"\n", 0, exc.start) + 1
            raise InputFormatError(
                f"the input is not UTF-8 text (line {line}, byte {exc.start}): expected JSONL, "
                "CSV or Parquet",
                {"line": line, "offset": exc.start},
            ) from exc
    if by_name in ("jsonl", "csv"):
        return by_name
    return "jsonl" if text[:1] in (b"{", b"[", b'"') else "csv"


def sniff_file(path: Path, name: str | None = None) -> str:
    with path.open("rb") as src:
        return detect_format(src.read(SNIFF_BYTES), name)
