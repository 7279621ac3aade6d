"""Terminal safety: text that came from an event is shown with its non-printable characters escaped.

Event attributes, data, span names and dead-letter reasons are chosen by whoever sent the event.
Printed raw, an ESC starts a terminal control sequence (rewrite the screen, set the title, in some
terminals more), BEL rings, a newline forges a line of output, and bidirectional overrides
reorder what the reader sees. ``cascade run``, ``tail``, ``dlq``, ``send`` and ``trace`` pass
every such text through :func:`printable` (or :func:`printable_data` for a whole document, or
:func:`printable_json` for JSON they print), and nothing else.

A character is escaped when Python does not count it printable (``str.isprintable``): the C0 and
C1 controls, DEL, format characters such as U+202E, line and paragraph separators, unassigned
and private code points. The escape is Python's: ``\\x1b``, ``\\u202e``, ``\\U000e0001``; a
backslash itself stays as it is, so the escapes are for reading, not for decoding.
"""

from __future__ import annotations

from typing import Any

__all__ = ["printable", "printable_data", "printable_json"]


def _escape(char: str) -> str:
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def printable(text: str) -> str:
    """``text`` with every non-printable character written as its escape (one line, always)."""
    if text.isprintable():
        return text  # the common case, at C speed
    return "".join(c if c.isprintable() else _escape(c) for c in text)


def printable_data(value: Any) -> Any:
    """``value`` (a JSON-like document) with :func:`printable` applied to every string in it,
    keys included."""
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, dict):
        return {printable_data(k): printable_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [printable_data(item) for item in value]
    return value


def _json_escape(char: str) -> str:
    code = ord(char)
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000  # a UTF-16 surrogate pair, as JSON spells characters past the BMP
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def printable_json(text: str) -> str:
    """Serialised JSON with every non-printable character outside the layout (newlines,
    indentation) as a ``\\uXXXX`` escape: the same document for a parser, safe on a terminal.

    JSON encoders escape only U+0000-U+001F inside strings; DEL, C1 controls and format
    characters would reach the terminal as they are."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c == "\n" else _json_escape(c) for c in text)
