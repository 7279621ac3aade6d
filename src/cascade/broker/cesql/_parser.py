"""CESQL v1 grammar (lark, LALR) and the translation of parse results into nodes.

The grammar follows the ANTLR grammar published with the spec (``CESQLParser.g4``), which
both the Java SDK (used by the Kafka broker) and the Go SDK (used by the admission webhook)
generate their parsers from:

- Precedence, tightest first: function calls and atoms; unary ``NOT`` and ``-`` (their operand
  is a unary expression, so ``NOT a = b`` is ``(NOT a) = b``); postfix ``LIKE`` and ``IN``;
  ``* / %``; ``+ -``; comparisons; then ``AND``, ``OR`` and ``XOR`` on one level.
- ``AND``/``OR``/``XOR`` group to the **right** (``<assoc=right>`` in the ANTLR grammar), so
  ``a AND b OR c`` means ``a AND (b OR c)``. Write parentheses to be explicit.
- The lexer is context free, like ANTLR's: a sign directly before digits belongs to the
  integer literal, so ``4-1`` is ``4`` followed by ``-1`` and does not parse (``4 - 1`` does).
- Keywords and function names are case-insensitive; attribute names are lower-cased.
- String literals are ``'...'`` or ``"..."``; only ``\\'`` (resp. ``\\"``) is unescaped, any
  other backslash stays in the value (so ``LIKE`` can see ``\\%`` and ``\\_``), as in the SDKs.
"""

from __future__ import annotations

import functools
import re
from typing import Any, Final, cast

from lark import Lark, Token, Transformer
from lark.exceptions import LarkError, UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from ._functions import resolve
from ._like import LikePattern
from ._nodes import (
    Arithmetic,
    Attribute,
    Call,
    Equality,
    Exists,
    In,
    IntegerComparison,
    Like,
    Literal,
    MissingFunction,
    Negate,
    Node,
    Not,
    ShortCircuit,
    Xor,
)
from ._values import INT_MAX, INT_MIN

MAX_LENGTH: Final = 4096
"""Longest expression accepted, in characters."""

MAX_DEPTH: Final = 64
"""Deepest operator nesting accepted (chains of one AND/OR operator count as one level)."""

_GRAMMAR = r"""
?start: logic

?logic: comparison
      | comparison (AND | OR | XOR) logic          -> logic

?comparison: additive
      | comparison CMP_OP additive                 -> compare

?additive: multiplicative
      | additive (PLUS | MINUS) multiplicative     -> arith

?multiplicative: postfix
      | multiplicative MUL_OP postfix              -> arith

?postfix: unary
      | postfix [NOT] LIKE STRING                  -> like
      | postfix [NOT] IN "(" items ")"             -> in_

?unary: atom
      | NOT unary                                  -> not_
      | MINUS unary                                -> negate

?atom: INT                                         -> integer
     | STRING                                      -> string
     | TRUE                                        -> true
     | FALSE                                       -> false
     | NAME                                        -> attribute
     | NAME "(" [items] ")"                        -> call
     | EXISTS NAME                                 -> exists
     | "(" logic ")"

items: logic ("," logic)*

AND: "AND"i
OR: "OR"i
XOR: "XOR"i
NOT: "NOT"i
LIKE: "LIKE"i
IN: "IN"i
EXISTS: "EXISTS"i
TRUE: "TRUE"i
FALSE: "FALSE"i

CMP_OP: "=" | "!=" | "<>" | "<=" | ">=" | "<" | ">"
MUL_OP: "*" | "/" | "%"
PLUS: "+"
MINUS: "-"

INT.2: /[+-]?[0-9]+(?![a-z0-9_])/i
NAME: /[a-z0-9_]+/i
STRING: /'(?:\\.|''|[^'\\])*'/s | /"(?:\\.|""|[^"\\])*"/s

%ignore /[ \t\r\n]+/
"""

_TERMINAL_NAMES: Final = {
    "NAME": "an attribute or function name",
    "INT": "an integer",
    "STRING": "a string literal",
    "TRUE": "TRUE",
    "FALSE": "FALSE",
    "AND": "AND",
    "OR": "OR",
    "XOR": "XOR",
    "NOT": "NOT",
    "LIKE": "LIKE",
    "IN": "IN",
    "EXISTS": "EXISTS",
    "CMP_OP": "a comparison (= != <> < <= > >=)",
    "MUL_OP": "'*', '/' or '%'",
    "PLUS": "'+'",
    "MINUS": "'-'",
    "LPAR": "'('",
    "RPAR": "')'",
    "COMMA": "','",
    "$END": "the end of the expression",
}

_ATTRIBUTE_NAME = re.compile(r"[A-Za-z0-9]+")
_FUNCTION_NAME = re.compile(r"[A-Za-z][A-Za-z_]*")


class CesqlError(ValueError):
    """A CESQL expression that does not parse (a ParseError of spec §3.3).

    ``column`` (1-based) and ``line`` locate the problem; ``expected`` lists what the parser
    would have accepted there, when known.
    """

    def __init__(
        self,
        message: str,
        *,
        line: int | None = None,
        column: int | None = None,
        expected: tuple[str, ...] = (),
    ) -> None:
        if line is None:
            super().__init__(message)
        else:
            where = f"column {column}" if line == 1 else f"line {line}, column {column}"
            super().__init__(f"{where}: {message}")
        self.line = line
        self.column = column
        self.expected = expected


def _error_at(token: Token, message: str) -> CesqlError:
    return CesqlError(message, line=token.line, column=token.column)


def _unquote(token: Token) -> str:
    quote = token[0]
    return token[1:-1].replace("\\" + quote, quote)


def _check_depth(node: Node, token: Token) -> Node:
    if node.depth > MAX_DEPTH:
        raise _error_at(token, f"expression nested too deeply (more than {MAX_DEPTH} levels)")
    return node


def _attribute_name(token: Token) -> str:
    if _ATTRIBUTE_NAME.fullmatch(token) is None:
        raise _error_at(
            token, f"{str(token)!r} is not a valid attribute name (letters and digits only)"
        )
    return token.lower()


class _ToNodes(Transformer[Token, Node]):
    """Called by the LALR parser at each reduction, so deep input does not recurse here."""

    def integer(self, children: list[Any]) -> Node:
        (token,) = children
        value = int(token)
        if not INT_MIN <= value <= INT_MAX:
            raise _error_at(token, f"integer literal {token} is outside the 32-bit range")
        return Literal(value, int)

    def string(self, children: list[Any]) -> Node:
        return Literal(_unquote(children[0]), str)

    def true(self, children: list[Any]) -> Node:
        return Literal(True, bool)

    def false(self, children: list[Any]) -> Node:
        return Literal(False, bool)

    def attribute(self, children: list[Any]) -> Node:
        return Attribute(_attribute_name(children[0]))

    def exists(self, children: list[Any]) -> Node:
        return Exists(_attribute_name(children[1]))

    def items(self, children: list[Any]) -> list[Node]:
        return list(children)

    def call(self, children: list[Any]) -> Node:
        token, args = children[0], children[1] or []
        if _FUNCTION_NAME.fullmatch(token) is None:
            raise _error_at(
                token, f"{str(token)!r} is not a valid function name (letters and '_' only)"
            )
        name = token.upper()
        function = resolve(name, len(args))
        node = MissingFunction(name, args) if function is None else Call(function, args)
        return _check_depth(node, token)

    def not_(self, children: list[Any]) -> Node:
        return _check_depth(Not(children[1]), children[0])

    def negate(self, children: list[Any]) -> Node:
        return _check_depth(Negate(children[1]), children[0])

    def like(self, children: list[Any]) -> Node:
        operand, negated, keyword, pattern = children
        node = Like(operand, LikePattern.compile(_unquote(pattern)), negated is not None)
        return _check_depth(node, keyword)

    def in_(self, children: list[Any]) -> Node:
        operand, negated, keyword, items = children
        return _check_depth(In(operand, items, negated is not None), keyword)

    def arith(self, children: list[Any]) -> Node:
        left, op, right = children
        return _check_depth(Arithmetic(str(op), left, right), op)

    def compare(self, children: list[Any]) -> Node:
        left, op, right = children
        operator = str(op)
        if operator in ("=", "!=", "<>"):
            node: Node = Equality("=" if operator == "=" else "!=", left, right)
        else:
            node = IntegerComparison(operator, left, right)
        return _check_depth(node, op)

    def logic(self, children: list[Any]) -> Node:
        left, op, right = children
        keyword = op.upper()
        if keyword == "XOR":
            return _check_depth(Xor(left, right), op)
        is_and = keyword == "AND"
        # Right-associative: `a AND (b AND c)` flattens into one AND over a, b, c.
        if isinstance(right, ShortCircuit) and right.is_and == is_and:
            return _check_depth(ShortCircuit(is_and, (left, *right.operands)), op)
        return _check_depth(ShortCircuit(is_and, (left, right)), op)


@functools.cache
def _lark() -> Lark:
    return Lark(
        _GRAMMAR,
        parser="lalr",
        lexer="basic",
        transformer=_ToNodes(),
        maybe_placeholders=True,
        propagate_positions=False,
    )


def _describe_expected(names: set[str] | frozenset[str]) -> tuple[str, ...]:
    described = {_TERMINAL_NAMES.get(name, name) for name in names}
    return tuple(sorted(described))


def parse_to_node(source: str) -> Node:
    """Parse ``source`` into its evaluable tree, or raise :class:`CesqlError`."""
    if len(source) > MAX_LENGTH:
        raise CesqlError(
            f"expression is {len(source)} characters long; at most {MAX_LENGTH} are accepted"
        )
    if not source.strip(" \t\r\n"):
        raise CesqlError("expression is empty")
    try:
        node = cast(Node, _lark().parse(source))
    except CesqlError:
        raise
    except UnexpectedToken as err:
        raise _unexpected_token(err, source) from None
    except UnexpectedCharacters as err:
        what = f"unexpected character {err.char!r}"
        if err.char in "'\"":
            what = f"unterminated string literal (no closing {err.char})"
        raise CesqlError(what, line=err.line, column=err.column) from None
    except UnexpectedInput as err:
        raise CesqlError(
            "unexpected input", line=getattr(err, "line", None), column=err.column
        ) from None
    except LarkError as err:  # pragma: no cover - lark reports everything above
        raise CesqlError(f"cannot parse expression: {err}") from None
    return node


def _unexpected_token(err: UnexpectedToken, source: str) -> CesqlError:
    token = err.token
    expected = _describe_expected(err.accepts or err.expected)
    if token.type == "$END":
        what = "unexpected end of the expression"
        line, column = _position(source, len(source.rstrip(" \t\r\n")))
    else:
        if token.type in ("NAME", "INT", "STRING"):
            kind = re.sub(r"^an? ", "", _TERMINAL_NAMES[token.type])
            what = f"unexpected {kind} {str(token)!r}"
        else:
            what = f"unexpected {str(token)!r}"
        line, column = token.line, token.column
    message = f"{what}; expected {_join(expected)}" if expected else what
    if token.type == "INT" and str(token)[0] in "+-":
        message += f" (a sign before digits is part of the number: write '{token[0]} {token[1:]}')"
    return CesqlError(message, line=line, column=column, expected=expected)


def _position(source: str, offset: int) -> tuple[int, int]:
    """1-based line and column of a character offset."""
    line = source.count("\n", 0, offset) + 1
    return line, offset - (source.rfind("\n", 0, offset) + 1) + 1


def _join(names: tuple[str, ...]) -> str:
    if len(names) == 1:
        return names[0]
    return "one of: " + ", ".join(names)
