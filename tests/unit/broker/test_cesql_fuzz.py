"""Property tests: CESQL parsing and Trigger filter compilation never fail unexpectedly.

- Any text, or any soup of CESQL tokens, parses into an Expression or raises CesqlError.
- Any parsed expression evaluates on any attributes without raising, to a CESQL value.
- Grammar-built expressions always parse, and ``matches`` agrees with ``evaluate``.
- The LIKE matcher agrees with a straightforward (backtracking) reference on small inputs.
- Any nested structure given as a Trigger spec compiles or raises FilterValidationError.

Deadlines are generous (far above the few milliseconds an example takes) so that a hang or a
pathological slowdown fails, while noise on shared cores does not.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cascade.broker.cesql import CesqlError, EvaluationError, Expression, parse
from cascade.broker.cesql._like import LikePattern
from cascade.broker.dispatch.filters import FilterValidationError, compile_trigger_filter

pytestmark = pytest.mark.timeout(240)

FUZZ = settings(
    max_examples=400,
    deadline=timedelta(seconds=2),
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

ERROR_KINDS = {
    "MathError",
    "CastError",
    "MissingAttributeError",
    "MissingFunctionError",
    "FunctionEvaluationError",
}

NAMES = ["id", "type", "source", "subject", "time", "seq", "flag", "myext", "x", "missing"]

TOKENS = [
    *("AND", "or", "Xor", "NOT", "not", "LIKE", "like", "IN", "EXISTS", "TRUE", "false"),
    *("=", "!=", "<>", "<", "<=", ">", ">=", "+", "-", "*", "/", "%", "(", ")", ",", "'", '"'),
    *("0", "1", "-1", "+7", "2147483647", "-2147483648", "2147483648", "99999999999"),
    *("'a'", "'%'", "'_'", "'\\%'", "'it\\'s'", '"x"', "''", "'true'", "'10'"),
    *NAMES,
    *("LENGTH", "concat", "CONCAT_WS", "LOWER", "UPPER", "TRIM", "LEFT", "RIGHT"),
    *("SUBSTRING", "ABS", "INT", "BOOL", "STRING", "IS_INT", "IS_BOOL", "NOSUCH", "a_b"),
    *("\\", "#", "\t", "\n", "é", "\x00"),
]

attribute_values = st.one_of(
    st.sampled_from(["", "0", "1", "-1", "10", "true", "FALSE", "abc", "%_", "2147483648"]),
    st.integers(min_value=-(2**40), max_value=2**40).map(str),
    st.text(max_size=30),
)
attribute_maps = st.dictionaries(
    st.one_of(st.sampled_from(NAMES), st.text(max_size=8)), attribute_values, max_size=8
)


def assert_evaluates_cleanly(expression: Expression, attributes: dict[str, str]) -> None:
    value, errors = expression.evaluate(attributes)
    assert isinstance(value, bool | int | str)
    if isinstance(value, int) and not isinstance(value, bool):
        assert -(2**31) <= value <= 2**31 - 1
    assert all(isinstance(e, EvaluationError) and e.kind in ERROR_KINDS for e in errors)
    fast_value, fast_errors = expression.evaluate(attributes, fail_fast=True)
    assert bool(fast_errors) == bool(errors)
    if not errors:
        assert fast_value == value
    assert len(fast_errors) <= 1
    assert expression.matches(attributes) == (value is True and not errors)


def parse_or_reject(source: str) -> Expression | None:
    try:
        return parse(source)
    except CesqlError as err:
        error = err
    assert str(error)  # a message, never an empty error
    return None


@FUZZ
@given(source=st.text(max_size=200), attributes=attribute_maps)
def test_random_text_parses_or_raises_cesql_error(source: str, attributes: dict[str, str]) -> None:
    expression = parse_or_reject(source)
    if expression is not None:
        assert_evaluates_cleanly(expression, attributes)


@FUZZ
@given(
    tokens=st.lists(st.sampled_from(TOKENS), min_size=1, max_size=40),
    separator=st.sampled_from([" ", "", "  ", "\n"]),
    attributes=attribute_maps,
)
def test_token_soup_parses_or_raises_cesql_error(
    tokens: list[str], separator: str, attributes: dict[str, str]
) -> None:
    expression = parse_or_reject(separator.join(tokens))
    if expression is not None:
        assert_evaluates_cleanly(expression, attributes)


# --- grammar-built expressions --------------------------------------------------------


def quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


safe_text = st.text(alphabet="ab%_\\'\" 1é", max_size=8)
literals = st.one_of(
    st.integers(min_value=-(2**31), max_value=2**31 - 1).map(str),
    st.sampled_from(["TRUE", "FALSE", "true", "False"]),
    safe_text.map(quote),
)
atoms = st.one_of(
    literals,
    st.sampled_from(NAMES),
    st.sampled_from(NAMES).map(lambda n: f"EXISTS {n}"),
)
FUNCTIONS = ["LENGTH", "CONCAT", "CONCAT_WS", "LOWER", "UPPER", "TRIM", "LEFT", "RIGHT"]
FUNCTIONS += ["SUBSTRING", "ABS", "INT", "BOOL", "STRING", "IS_INT", "IS_BOOL", "NOSUCH"]
BINARY = ["AND", "OR", "XOR", "=", "!=", "<>", "<", "<=", ">", ">=", "+", "-", "*", "/", "%"]


def compound(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.tuples(children, st.sampled_from(BINARY), children).map(
            lambda t: f"({t[0]}) {t[1]} ({t[2]})"
        ),
        children.map(lambda c: f"NOT ({c})"),
        children.map(lambda c: f"-({c})"),
        st.tuples(children, st.booleans(), safe_text).map(
            lambda t: f"({t[0]}) {'NOT ' if t[1] else ''}LIKE {quote(t[2])}"
        ),
        st.tuples(children, st.booleans(), st.lists(children, min_size=1, max_size=3)).map(
            lambda t: f"({t[0]}) {'NOT ' if t[1] else ''}IN ({', '.join(t[2])})"
        ),
        st.tuples(st.sampled_from(FUNCTIONS), st.lists(children, max_size=3)).map(
            lambda t: f"{t[0]}({', '.join(t[1])})"
        ),
    )


expressions = st.recursive(atoms, compound, max_leaves=20)


@FUZZ
@given(source=expressions, attributes=attribute_maps)
def test_grammar_built_expressions_parse_and_evaluate(
    source: str, attributes: dict[str, str]
) -> None:
    expression = parse(source)
    assert expression.source == source
    assert_evaluates_cleanly(expression, attributes)


# --- LIKE against a reference -----------------------------------------------------------


def reference_like(pattern: str, text: str) -> bool:
    regex = []
    i = 0
    while i < len(pattern):
        if pattern[i] == "\\" and i + 1 < len(pattern) and pattern[i + 1] in "%_":
            regex.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        char = pattern[i]
        regex.append(".*" if char == "%" else "." if char == "_" else re.escape(char))
        i += 1
    return re.fullmatch("".join(regex), text, re.DOTALL) is not None


@FUZZ
@given(
    pattern=st.text(alphabet="ab%_\\\n", max_size=10),
    text=st.text(alphabet="ab%_\\\n", max_size=12),
)
def test_like_agrees_with_reference(pattern: str, text: str) -> None:
    assert LikePattern.compile(pattern).matches(text) == reference_like(pattern, text)


# --- Trigger specs ------------------------------------------------------------------------

DIALECT_KEYS = ["exact", "prefix", "suffix", "all", "any", "not", "cesql", "attributes"]
SPEC_KEYS = [*DIALECT_KEYS, "filter", "filters", "type", "source", "Bad-Key", "9x", ""]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.sampled_from(["", "x", "com.example", "type = 'x'", "EXISTS id", "a AND", "%"]),
    st.text(max_size=10),
)
structures = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.sampled_from(SPEC_KEYS), children, max_size=4),
    ),
    max_leaves=25,
)
trigger_specs = st.one_of(
    structures,
    st.fixed_dictionaries({}, optional={"filter": structures, "filters": structures}),
    st.fixed_dictionaries(
        {
            "filters": st.lists(
                st.dictionaries(st.sampled_from(DIALECT_KEYS), structures, max_size=2),
                max_size=3,
            )
        }
    ),
)


@FUZZ
@given(spec=trigger_specs, attributes=attribute_maps)
def test_random_trigger_specs_compile_or_raise_validation_error(
    spec: Any, attributes: dict[str, str]
) -> None:
    try:
        compiled = compile_trigger_filter(spec)
    except FilterValidationError as err:
        error = err
    else:
        assert isinstance(compiled.matches(attributes), bool)
        return
    assert error.field.startswith("spec")
    assert str(error).startswith(f"{error.field}: ")
