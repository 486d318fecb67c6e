"""Terminal control in replica output: escaped where lines are kept, stripped where printed.

A plugin may print terminal control: CSI sequences (``ESC [ 2 J`` clears the screen), OSC
sequences (``ESC ] 0 ; title BEL`` sets the window title), other C0 and C1 controls,
carriage returns, backspaces, DEL, and Unicode bidi overrides that reorder what a terminal
shows. None of it may reach a reader raw.

- :func:`escape_controls` (the server, when a line is captured, so the store, the logs API,
  its stream, the dashboard and the server's own log all get the same text): each such
  character becomes visible text, ``\\xNN`` for a code point below 256 (``ESC`` is ``\\x1b``,
  ``CR`` is ``\\x0d``), ``\\uNNNN`` above (the bidi controls). A tab stays.
  The rest of the line is kept as it was: a backslash is not escaped, so the text ``\\x1b``
  printed by a plugin and an escaped ``ESC`` look alike; both are harmless. Escaping is
  idempotent: escaped text holds no control character.
- :func:`strip_controls` (``plughost logs``, before printing): sequences are removed whole,
  other control characters dropped, whatever the server sent.
- :func:`cut_line`: a line is kept to a number of UTF-8 bytes, with a visible marker.

Imported by the CLI too: keep it free of imports beyond the standard library (and the
import-free :mod:`.tags`).
"""

from __future__ import annotations

import re

from plughost.logs.tags import TAGS

# C0 but tab, DEL, C1, the Arabic letter mark and the bidi embeddings, overrides and isolates
_CONTROL_CLASS = "\x00-\x08\x0a-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
_CONTROL = re.compile(f"[{_CONTROL_CLASS}]")

# sequences a terminal acts on, removed whole by the CLI: CSI (7-bit or C1), then string
# sequences (OSC, DCS, SOS, PM, APC) up to their terminator (BEL or ST) or the line's end,
# then the two-character escapes (with intermediates), a lone ESC last
_SEQUENCE = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[ -/]*[0-~]?"
)


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_controls(text: str) -> str:
    """``text`` with every terminal control character but tab written as visible text."""
    if _CONTROL.search(text) is None:  # the common line: one scan, no copy
        return text
    return _CONTROL.sub(_escaped, text)


def strip_controls(text: str, newlines: bool = False) -> str:
    """``text`` without terminal control: sequences removed whole, other controls (but tab,
    and newline with ``newlines``) dropped."""
    if _CONTROL.search(text) is None:
        return text
    if newlines:
        return "\n".join(strip_controls(part) for part in text.split("\n"))
    return _CONTROL.sub("", _SEQUENCE.sub("", text))


def cut_line(text: str, max_bytes: int) -> str:
    """``text`` kept to ``max_bytes`` UTF-8 bytes (never splitting a character), followed by
    ``[... N bytes cut]`` when it was longer."""
    if len(text) * 4 <= max_bytes:  # no character takes more than 4 bytes
        return text
    raw = text.encode("utf-8", "replace")
    if len(raw) <= max_bytes:
        return text
    head = raw[:max_bytes].decode("utf-8", "ignore")
    cut = len(raw) - len(head.encode("utf-8"))
    return f"{head} [... {cut} bytes cut]"


def bounded_line(text: str, max_bytes: int) -> str:
    """A captured line as it is kept: escaped, then cut to ``max_bytes``. A huge line costs
    no more than ``max_bytes`` characters of escaping: what lies beyond is only counted."""
    if len(text) <= max_bytes:
        return cut_line(escape_controls(text), max_bytes)
    rest = len(text[max_bytes:].encode("utf-8", "replace"))
    kept = escape_controls(text[:max_bytes])
    raw = kept.encode("utf-8", "replace")
    head = raw[:max_bytes].decode("utf-8", "ignore")
    cut = len(raw) - len(head.encode("utf-8")) + rest
    return f"{head} [... {cut} bytes cut]"


def bounded_tagged_line(text: str, max_bytes: int) -> str:
    """:func:`bounded_line` of a line that may start with a stream tag (kept as it is), as a
    Ray replica's worker output is before it is sent to the server."""
    tag = text[:2] if text[:2] in TAGS else ""
    return tag + bounded_line(text[len(tag) :], max_bytes)
