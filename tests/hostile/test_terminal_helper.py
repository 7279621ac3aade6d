"""cascade.terminal's escaping, for any text: one printable line, the same JSON document."""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

from cascade.terminal import printable, printable_json


@given(st.text())
def test_printable_leaves_one_printable_line(text: str) -> None:
    shown = printable(text)
    assert shown.isprintable()
    assert printable(shown) == shown
    if text.isprintable():
        assert shown == text


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(),
        lambda c: st.lists(c) | st.dictionaries(st.text(), c),
    )
)
def test_printable_json_is_the_same_document(document: object) -> None:
    text = orjson.dumps(document, option=orjson.OPT_INDENT_2).decode()
    shown = printable_json(text)
    assert orjson.loads(shown) == document
    assert all(line.isprintable() for line in shown.split("\n"))
