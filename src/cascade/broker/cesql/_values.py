"""CESQL values, evaluation errors and the type casts of spec §3.7."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

Value = bool | int | str
"""A CESQL value: Boolean, Integer (32-bit) or String."""

ValueType = type[bool] | type[int] | type[str]

INT_MIN: Final = -(2**31)
INT_MAX: Final = 2**31 - 1

ZERO: Final[dict[ValueType, Value]] = {bool: False, int: 0, str: ""}

TYPE_NAMES: Final[dict[ValueType, str]] = {bool: "Boolean", int: "Integer", str: "String"}

# Error kinds of spec §3.3.
MATH_ERROR: Final = "MathError"
CAST_ERROR: Final = "CastError"
MISSING_ATTRIBUTE: Final = "MissingAttributeError"
MISSING_FUNCTION: Final = "MissingFunctionError"
FUNCTION_EVALUATION: Final = "FunctionEvaluationError"


class EvaluationError(str):
    """One error collected while evaluating: a string ``"<Kind>: <message>"`` with ``kind``."""

    kind: str

    def __new__(cls, kind: str, message: str) -> EvaluationError:
        self = super().__new__(cls, f"{kind}: {message}")
        self.kind = kind
        return self


Errors = list[EvaluationError]


def missing_since(errors: Errors, start: int) -> bool:
    """True if an error from index ``start`` on is a MissingAttributeError."""
    return any(errors[i].kind == MISSING_ATTRIBUTE for i in range(start, len(errors)))


def int32(value: int, errors: Errors, what: str) -> int:
    """``value`` if it fits 32 bits, else 0 plus a MathError (CESQL integers are 32-bit)."""
    if INT_MIN <= value <= INT_MAX:
        return value
    errors.append(EvaluationError(MATH_ERROR, f"integer overflow in {what}"))
    return 0


_INTEGER_TEXT = re.compile(r"[+-]?[0-9]+")


def parse_int32(text: str) -> int | None:
    """A base-10 32-bit integer with optional sign, ASCII digits only; None if invalid."""
    if _INTEGER_TEXT.fullmatch(text) is None:
        return None
    value = int(text)
    return value if INT_MIN <= value <= INT_MAX else None


def parse_bool(text: str) -> bool | None:
    lowered = text.lower()
    if lowered == "true":
        return True
    if lowered == "false":
        return False
    return None


# Casters convert a value whose static type is known to a target type (spec §3.7).


def _str_to_int(value: Value, errors: Errors) -> int:
    parsed = parse_int32(value)  # type: ignore[arg-type]
    if parsed is None:
        errors.append(EvaluationError(CAST_ERROR, f"cannot cast String {value!r} to Integer"))
        return 0
    return parsed


def _str_to_bool(value: Value, errors: Errors) -> bool:
    parsed = parse_bool(value)  # type: ignore[arg-type]
    if parsed is None:
        errors.append(EvaluationError(CAST_ERROR, f"cannot cast String {value!r} to Boolean"))
        return False
    return parsed


def _bool_to_str(value: Value, errors: Errors) -> str:
    return "true" if value else "false"


def _int_to_str(value: Value, errors: Errors) -> str:
    return str(value)


def _int_to_bool(value: Value, errors: Errors) -> bool:
    return value != 0


def _bool_to_int(value: Value, errors: Errors) -> int:
    return 1 if value else 0


def _identity(value: Value, errors: Errors) -> Value:
    return value


Caster = Callable[[Value, Errors], Value]

_CASTERS: Final[dict[tuple[ValueType, ValueType], Caster]] = {
    (str, int): _str_to_int,
    (str, bool): _str_to_bool,
    (bool, str): _bool_to_str,
    (int, str): _int_to_str,
    (int, bool): _int_to_bool,
    (bool, int): _bool_to_int,
}


def caster(source: ValueType, target: ValueType | None) -> Caster:
    """The cast from static type ``source`` to ``target`` (None means Any: no cast)."""
    if target is None or source is target:
        return _identity
    return _CASTERS[(source, target)]


def type_of(value: Value) -> ValueType:
    if value is True or value is False:
        return bool
    return int if isinstance(value, int) else str


def cast_value(value: Value, target: ValueType, errors: Errors) -> Value:
    """Cast a value of any runtime type (used by INT/BOOL/STRING and IS_INT/IS_BOOL)."""
    return caster(type_of(value), target)(value, errors)


def render(value: Value) -> str:
    """A value as CESQL source text, for messages."""
    if value is True or value is False:
        return "TRUE" if value else "FALSE"
    return str(value) if isinstance(value, int) else repr(value)
