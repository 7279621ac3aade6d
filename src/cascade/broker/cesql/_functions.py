"""The built-in functions of CESQL v1 (spec §3.5) plus the casting functions of the SDKs.

Each function has fixed parameter types (None means Any: the argument is not cast) and an
optional variadic tail. Implementations get already-cast arguments and an error list; they
always return a value of the declared type, appending an error when the input is out of range.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from ._values import (
    FUNCTION_EVALUATION,
    INT_MIN,
    MATH_ERROR,
    Errors,
    EvaluationError,
    Value,
    ValueType,
    cast_value,
    type_of,
)

# Characters with the Unicode White_Space property: TRIM removes these and nothing else
# (str.strip() would also remove the control characters U+001C..U+001F).
UNICODE_WHITESPACE: Final = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
    "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)

Impl = Callable[[Sequence[Value], Errors], Value]


@dataclass(frozen=True, slots=True)
class Function:
    name: str
    params: tuple[ValueType | None, ...]
    returns: ValueType
    impl: Impl
    variadic: ValueType | None = None

    def param_type(self, index: int) -> ValueType | None:
        return self.params[index] if index < len(self.params) else self.variadic


def _error(errors: Errors, message: str) -> None:
    errors.append(EvaluationError(FUNCTION_EVALUATION, message))


def _length(args: Sequence[Value], errors: Errors) -> Value:
    return len(str(args[0]))


def _concat(args: Sequence[Value], errors: Errors) -> Value:
    return "".join(str(a) for a in args)


def _concat_ws(args: Sequence[Value], errors: Errors) -> Value:
    return str(args[0]).join(str(a) for a in args[1:])


def _lower(args: Sequence[Value], errors: Errors) -> Value:
    return str(args[0]).lower()


def _upper(args: Sequence[Value], errors: Errors) -> Value:
    return str(args[0]).upper()


def _trim(args: Sequence[Value], errors: Errors) -> Value:
    return str(args[0]).strip(UNICODE_WHITESPACE)


def _left(args: Sequence[Value], errors: Errors) -> Value:
    text, count = str(args[0]), int(args[1])
    if count < 0:
        _error(errors, f"LEFT length must not be negative, got {count}")
        return text
    return text[:count]


def _right(args: Sequence[Value], errors: Errors) -> Value:
    text, count = str(args[0]), int(args[1])
    if count < 0:
        _error(errors, f"RIGHT length must not be negative, got {count}")
        return text
    return text[max(len(text) - count, 0) :]


def _substring_start(text: str, pos: int, errors: Errors) -> int | None:
    """0-based start for a 1-based (or negative, from the end) ``pos``; None → result ''."""
    if pos > len(text) or pos < -len(text):
        _error(errors, f"SUBSTRING position {pos} is outside a string of length {len(text)}")
        return None
    if pos == 0:
        return None
    return len(text) + pos if pos < 0 else pos - 1


def _substring(args: Sequence[Value], errors: Errors) -> Value:
    text = str(args[0])
    start = _substring_start(text, int(args[1]), errors)
    return "" if start is None else text[start:]


def _substring_len(args: Sequence[Value], errors: Errors) -> Value:
    text, length = str(args[0]), int(args[2])
    if length < 0:
        _error(errors, f"SUBSTRING length must not be negative, got {length}")
        return ""
    start = _substring_start(text, int(args[1]), errors)
    return "" if start is None else text[start : start + length]


def _abs(args: Sequence[Value], errors: Errors) -> Value:
    value = int(args[0])
    if value == INT_MIN:
        errors.append(EvaluationError(MATH_ERROR, f"ABS({value}) overflows 32 bits"))
        return -(INT_MIN + 1)
    return abs(value)


def _caster(target: ValueType) -> Impl:
    def cast(args: Sequence[Value], errors: Errors) -> Value:
        return cast_value(args[0], target, errors)

    return cast


def _can_cast(target: ValueType) -> Impl:
    def can_cast(args: Sequence[Value], errors: Errors) -> Value:
        probe: Errors = []
        cast_value(args[0], target, probe)
        return not probe

    return can_cast


_BUILTINS: Final = (
    Function("LENGTH", (str,), int, _length),
    Function("CONCAT", (), str, _concat, variadic=str),
    Function("CONCAT_WS", (str,), str, _concat_ws, variadic=str),
    Function("LOWER", (str,), str, _lower),
    Function("UPPER", (str,), str, _upper),
    Function("TRIM", (str,), str, _trim),
    Function("LEFT", (str, int), str, _left),
    Function("RIGHT", (str, int), str, _right),
    Function("SUBSTRING", (str, int), str, _substring),
    Function("SUBSTRING", (str, int, int), str, _substring_len),
    Function("ABS", (int,), int, _abs),
    Function("INT", (None,), int, _caster(int)),
    Function("BOOL", (None,), bool, _caster(bool)),
    Function("STRING", (None,), str, _caster(str)),
    Function("IS_INT", (None,), bool, _can_cast(int)),
    Function("IS_BOOL", (None,), bool, _can_cast(bool)),
)

FUNCTION_NAMES: Final = frozenset(f.name for f in _BUILTINS)


def resolve(name: str, arity: int) -> Function | None:
    """The built-in called ``name`` (upper case) taking ``arity`` arguments, if any.

    A fixed-arity definition wins over a variadic one (spec §3.5).
    """
    variadic: Function | None = None
    for function in _BUILTINS:
        if function.name != name:
            continue
        if function.variadic is None and len(function.params) == arity:
            return function
        if function.variadic is not None and arity >= len(function.params):
            variadic = function
    return variadic


__all__ = ["FUNCTION_NAMES", "Function", "resolve", "type_of"]
