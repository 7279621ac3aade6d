"""CloudEvents SQL (CESQL) v1 for Trigger filters of the ``cesql`` dialect.

``parse(source)`` validates an expression once (and caches it); ``Expression.matches`` then
runs per event per Trigger without parsing again.

Typing of attributes. Events reach the broker in Kafka binary form, so every attribute and
extension is a **String** here (``time`` and ``source`` included, unchanged; an extension
sent as ``ce-count: 5`` is the string ``"5"``). The implicit casts of spec §3.7 then decide:

- ``knativekafkapartition = 1``: ``=`` is ambiguous, so the left operand is cast to the type
  of the right one. The attribute ``"1"`` is cast to Integer 1 and the result is true;
  ``"01"`` and ``"+1"`` are also equal to 1. A value that is not an integer (``"abc"``)
  yields false plus a CastError, so the filter does not match.
- ``1 = knativekafkapartition``: the right operand is a String, so ``1`` becomes ``"1"`` and
  the strings are compared: ``"01"`` is *not* equal here. Put the attribute on the left.
- ``seq < 10``, ``seq + 1``, ``-seq``: these operators take Integers only, so attributes are
  cast to Integer (a non-integer gives 0 plus a CastError).
- ``flag = TRUE`` casts the attribute with BOOL semantics (``"true"``/``"false"``, any case).
- ``x IN (1, 2)`` casts every element to the type of ``x`` (String here): ``'1'``, ``'2'``.
- ``x LIKE 'a%'`` compares strings; a non-string left operand is cast to String.

Errors. ``evaluate`` returns the value and the errors collected (complete evaluation by
default, fail-fast on request); each error is a string ``"<Kind>: <message>"`` whose
``kind`` is one of the error types of spec §3.3.
A subexpression that reads a missing attribute yields the zero value of its type (false,
0 or ""); a bare missing attribute yields false. ``matches`` is true only for a boolean
true result with no error at all (§2.4 of the broker semantics; spec §1.2).

Choices where the spec, its TCK and the SDKs differ:

- ``NOT 10`` is false: v1 defines Integer→Boolean casts (the TCK still expects a CastError).
- Grouping of ``AND``/``OR``/``XOR`` and the context-free lexing of signed integers follow
  the SDK grammar (see ``_parser``): ``a AND b OR c`` is ``a AND (b OR c)``.
- In string literals only the delimiting quote is unescaped: ``'it''s'`` keeps both quotes
  and other backslashes stay in the value, as in the SDKs.
- Attribute names are lower-cased (``EXISTS SOURCE`` is true), as the Go SDK does.
- ``_`` and ``%`` in ``LIKE`` also match line breaks (Java's regex ``.`` would not).
- ``EXISTS`` looks at the attributes given; the broker always passes the required ones.
- Overflow in ``+ - * /`` and unary minus gives 0 plus a MathError (Java would wrap around);
  ``ABS(-2147483648)`` is 2147483647 plus a MathError, as specified.
- Unknown functions parse (as in Knative) but evaluate to false plus a
  MissingFunctionError; ``Expression.warnings`` lists them.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

from ._functions import FUNCTION_NAMES
from ._nodes import Attribute, MissingFunction, Node
from ._parser import MAX_DEPTH, MAX_LENGTH, CesqlError, parse_to_node
from ._values import ZERO, EvaluationError, Value

__all__ = [
    "MAX_DEPTH",
    "MAX_LENGTH",
    "CesqlError",
    "EvaluationError",
    "Expression",
    "parse",
]


class Expression:
    """A parsed CESQL expression, immutable and safe to share between threads."""

    __slots__ = ("_root", "_zero", "source", "warnings")

    source: str
    warnings: tuple[str, ...]

    def __init__(self, source: str, root: Node) -> None:
        self.source = source
        self._root = root
        # The value of a failed evaluation; a bare attribute has no known type: Boolean (§3.2).
        self._zero: Value = False if isinstance(root, Attribute) else ZERO[root.type]
        self.warnings = _warnings(root)

    def evaluate(
        self, attributes: Mapping[str, str], *, fail_fast: bool = False
    ) -> tuple[object, list[str]]:
        """Evaluate on an event's wire-form attributes: ``(value, errors)``. Never raises.

        The value is a ``bool``, ``int`` or ``str``; errors are :class:`EvaluationError`
        strings. By default evaluation is complete (spec §4.1): every operator runs and
        every error is kept, so ``TRUE AND (1 != 1 / 0)`` is true with a MathError. With
        ``fail_fast`` the first error stops evaluation and the value is the zero value of
        the expression's type (false for a bare attribute), as filters do.
        """
        if fail_fast:
            errors: list[EvaluationError] = _StopOnError()
            try:
                value: Value = self._root.ev(attributes, errors)
            except _Stopped:
                return self._zero, list(errors[:1])
            return value, []
        errors = []
        value = self._root.ev(attributes, errors)
        return value, list(errors)

    def matches(self, attributes: Mapping[str, str]) -> bool:
        """True only if the expression yields boolean true without any error (fail-fast)."""
        try:
            return self._root.ev(attributes, _StopOnError()) is True
        except _Stopped:
            return False

    def __repr__(self) -> str:
        return f"Expression({self.source!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Expression) and other.source == self.source

    def __hash__(self) -> int:
        return hash(self.source)


class _Stopped(Exception):
    """Raised by _StopOnError at the first error (fail-fast mode, spec §4.1)."""


class _StopOnError(list[EvaluationError]):
    def append(self, error: EvaluationError) -> None:
        super().append(error)
        raise _Stopped


def _warnings(root: Node) -> tuple[str, ...]:
    found: list[str] = []
    for node in root.walk():
        if isinstance(node, MissingFunction):
            known = "" if node.name in FUNCTION_NAMES else "unknown function; "
            found.append(f"{known}{node.message}: it always evaluates to false with an error")
    if isinstance(root, Attribute):
        found.append("a bare attribute is a String, never the boolean true: it never matches")
    return tuple(found)


def parse(expression: str) -> Expression:
    """Parse a CESQL v1 expression, or raise :class:`CesqlError` saying where and why.

    Input is bounded (``MAX_LENGTH`` characters, ``MAX_DEPTH`` levels of nesting), so this
    never takes long. Results are cached by source text.
    """
    if not isinstance(expression, str):
        raise CesqlError(f"expression must be a string, got {type(expression).__name__}")
    return _parse_cached(expression)


@functools.lru_cache(maxsize=1024)
def _parse_cached(expression: str) -> Expression:
    return Expression(expression, parse_to_node(expression))
