"""CESQL v1: table-driven cases per area of the spec, written from the spec text.

Each case is (expression, extra attributes, expected value, expected error kinds). The base
event carries only the required attributes; attributes are strings, as on the wire.
"""

from __future__ import annotations

import pytest

from cascade.broker.cesql import MAX_DEPTH, MAX_LENGTH, CesqlError, EvaluationError, parse

BASE: dict[str, str] = {
    "specversion": "1.0",
    "id": "evt-1",
    "source": "http://localhost/source",
    "type": "com.example.thing",
}

Case = tuple[str, dict[str, str], object, tuple[str, ...]]

MISSING = "MissingAttributeError"
MATH = "MathError"
CAST = "CastError"
NOFUNC = "MissingFunctionError"
FUNC = "FunctionEvaluationError"


def run(expression: str, extra: dict[str, str]) -> tuple[object, list[str]]:
    return parse(expression).evaluate({**BASE, **extra})


def check(case: Case) -> None:
    expression, extra, expected, kinds = case
    value, errors = run(expression, extra)
    assert (value, type(value)) == (expected, type(expected)), expression
    assert tuple(e.kind for e in errors) == kinds, (expression, errors)  # type: ignore[attr-defined]


def ids(cases: list[Case]) -> list[str]:
    return [c[0] for c in cases]


LITERALS: list[Case] = [
    ("TRUE", {}, True, ()),
    ("FALSE", {}, False, ()),
    ("0", {}, 0, ()),
    ("42", {}, 42, ()),
    ("-42", {}, -42, ()),
    ("+42", {}, 42, ()),
    ("2147483647", {}, 2147483647, ()),
    ("-2147483648", {}, -2147483648, ()),
    ("'single'", {}, "single", ()),
    ('"double"', {}, "double", ()),
    ("'MiXeD case kept'", {}, "MiXeD case kept", ()),
    ("''", {}, "", ()),
    ("'it\\'s'", {}, "it's", ()),
    ('"say \\"hi\\""', {}, 'say "hi"', ()),
    ("'a \"quoted\" word'", {}, 'a "quoted" word', ()),
    ('"it\'s"', {}, "it's", ()),
    # Only the delimiting quote is unescaped; other backslashes stay (LIKE needs them).
    ("'back\\slash'", {}, "back\\slash", ()),
    ("'50\\%'", {}, "50\\%", ()),
    # The lexer accepts a doubled quote inside a literal, and the SDKs keep it verbatim.
    ("'it''s'", {}, "it''s", ()),
    ("'multi\nline'", {}, "multi\nline", ()),
    ("'ünïcödé ✓'", {}, "ünïcödé ✓", ()),
]


@pytest.mark.parametrize("case", LITERALS, ids=ids(LITERALS))
def test_literals(case: Case) -> None:
    check(case)


CASE_INSENSITIVE: list[Case] = [
    ("tRuE", {}, True, ()),
    ("false", {}, False, ()),
    ("true and not false", {}, True, ()),
    ("TRUE Or FALSE", {}, True, ()),
    ("true xor true", {}, False, ()),
    ("'abc' like 'a%'", {}, True, ()),
    ("'abc' Not Like 'a%'", {}, False, ()),
    ("1 in (1, 2)", {}, True, ()),
    ("1 not in (1, 2)", {}, False, ()),
    ("exists id", {}, True, ()),
    ("length('abc')", {}, 3, ()),
    ("LeNgTh('abc')", {}, 3, ()),
    ("concat_ws('-', 'a', 'b')", {}, "a-b", ()),
    ("int(hop) < int(ttl) and int(hop) < 1000", {"hop": "5", "ttl": "10"}, True, ()),
    ("INT(hop) < INT(ttl) AND INT(hop) < 1000", {"hop": "5", "ttl": "10"}, True, ()),
    # Attribute names are lower-cased (CloudEvents names are lower case).
    ("TYPE", {}, "com.example.thing", ()),
    ("EXISTS SOURCE", {}, True, ()),
    ("TRUE = 'true' AND FALSE = 'false'", {}, True, ()),
    ("TRUE = 'TRUE' OR FALSE = 'FALSE'", {}, False, ()),
]


@pytest.mark.parametrize("case", CASE_INSENSITIVE, ids=ids(CASE_INSENSITIVE))
def test_case_insensitivity(case: Case) -> None:
    check(case)


ATTRIBUTES: list[Case] = [
    ("id", {}, "evt-1", ()),
    ("source", {}, "http://localhost/source", ()),
    ("subject", {"subject": "s-1"}, "s-1", ()),
    # Time is a String, unchanged (no normalization inside CESQL).
    ("time", {"time": "2018-04-26T14:48:09+02:00"}, "2018-04-26T14:48:09+02:00", ()),
    # Extensions arrive as strings: '10' stays a String until an operator casts it.
    ("myint", {"myint": "10"}, "10", ()),
    ("mybool", {"mybool": "true"}, "true", ()),
    ("ext1", {"ext1": "x"}, "x", ()),
    ("1st", {"1st": "digits first"}, "digits first", ()),
    # A missing attribute whose type is unknown: Boolean zero value plus the error.
    ("subject", {}, False, (MISSING,)),
    ("myext", {}, False, (MISSING,)),
]


@pytest.mark.parametrize("case", ATTRIBUTES, ids=ids(ATTRIBUTES))
def test_attribute_access(case: Case) -> None:
    check(case)


EXISTS: list[Case] = [
    ("EXISTS specversion AND EXISTS id AND EXISTS type AND EXISTS source", {}, True, ()),
    ("EXISTS time", {"time": "2018-04-26T14:48:09Z"}, True, ()),
    ("EXISTS time", {}, False, ()),
    ("NOT EXISTS time", {}, True, ()),
    ("EXISTS myext", {"myext": ""}, True, ()),
    ("EXISTS myext", {}, False, ()),
    ("NOT EXISTS myext", {"myext": "v"}, False, ()),
    ("EXISTS subject AND subject = 'a'", {}, False, ()),  # short-circuit: no missing error
]


@pytest.mark.parametrize("case", EXISTS, ids=ids(EXISTS))
def test_exists(case: Case) -> None:
    check(case)


ARITHMETIC: list[Case] = [
    ("4 * 2 + 4 / 2", {}, 10, ()),
    ("4 * (2 + 4) / 2", {}, 12, ()),
    ("10 - 2 - 3", {}, 5, ()),  # left to right
    ("64 / 4 / 2", {}, 8, ()),
    ("2 + 3 * 4", {}, 14, ()),
    ("5 / 3", {}, 1, ()),
    ("-5 / 3", {}, -1, ()),  # rounded towards zero
    ("5 / -3", {}, -1, ()),
    ("-7 / -2", {}, 3, ()),
    ("5 % 3", {}, 2, ()),
    ("-7 % 3", {}, -1, ()),  # sign of the dividend
    ("7 % -3", {}, 1, ()),
    ("5 / 0", {}, 0, (MATH,)),
    ("5 % 0", {}, 0, (MATH,)),
    ("4 + -1", {}, 3, ()),
    ("-4 + -1", {}, -5, ()),
    ("-4 - 1", {}, -5, ()),
    ("4 - 1", {}, 3, ()),
    ("'5' + 3", {}, 8, ()),
    ("5 + '3'", {}, 8, ()),
    ("'5' + '3'", {}, 8, ()),
    ("5 + TRUE", {}, 6, ()),
    ("'+5' * '-2'", {}, -10, ()),
    ("'five' + 1", {}, 1, (CAST,)),
    ("' 5' + 1", {}, 1, (CAST,)),
    ("'5.0' + 1", {}, 1, (CAST,)),
    ("'2147483648' + 0", {}, 0, (CAST,)),
    ("INT('a') + INT('b')", {}, 0, (CAST, CAST)),  # complete evaluation keeps every error
    ("seq + 1", {"seq": "41"}, 42, ()),
    ("2147483647 + 1", {}, 0, (MATH,)),
    ("-2147483648 - 1", {}, 0, (MATH,)),
    ("65536 * 65536", {}, 0, (MATH,)),
    ("-2147483648 / -1", {}, 0, (MATH,)),
    ("2147483647 + 1 - 1", {}, -1, (MATH,)),
    ("missing * 5", {}, 0, (MISSING,)),
    ("1 / missing", {}, 0, (MISSING,)),
    ("missing / 0", {}, 0, (MISSING,)),  # no MathError: the subexpression is already zero
    ("missing % 0", {}, 0, (MISSING,)),
]


@pytest.mark.parametrize("case", ARITHMETIC, ids=ids(ARITHMETIC))
def test_arithmetic(case: Case) -> None:
    check(case)


UNARY: list[Case] = [
    ("-10", {}, -10, ()),
    ("--10", {}, 10, ()),
    ("- 10", {}, -10, ()),
    ("- -10", {}, 10, ()),
    ("-'10'", {}, -10, ()),
    ("--'10'", {}, 10, ()),
    ("-TRUE", {}, -1, ()),
    ("-FALSE", {}, 0, ()),
    ("-(3 + 4)", {}, -7, ()),
    ("-seq", {"seq": "8"}, -8, ()),
    ("-'x'", {}, 0, (CAST,)),
    ("-missing", {}, 0, (MISSING,)),
    ("--2147483648", {}, 0, (MATH,)),
    ("NOT TRUE", {}, False, ()),
    ("NOT FALSE", {}, True, ()),
    ("NOT NOT TRUE", {}, True, ()),
    ("NOT 'TRUE'", {}, False, ()),
    ("NOT 'false'", {}, True, ()),
    ("NOT 'yes'", {}, True, (CAST,)),
    # v1 defines Integer -> Boolean (0 is false), so this is false without error. (The
    # spec repository's TCK still expects the pre-v1 cast error here; the v1 text wins.)
    ("NOT 10", {}, False, ()),
    ("NOT 0", {}, True, ()),
    ("NOT missing", {}, False, (MISSING,)),  # zero value of NOT, not NOT of a zero value
    ("NOT (missing = 'x')", {}, False, (MISSING,)),
]


@pytest.mark.parametrize("case", UNARY, ids=ids(UNARY))
def test_unary_operators(case: Case) -> None:
    check(case)


COMPARISON: list[Case] = [
    ("TRUE = FALSE", {}, False, ()),
    ("FALSE = FALSE", {}, True, ()),
    ("1 = 2", {}, False, ()),
    ("2 = 2", {}, True, ()),
    ("'abc' = '123'", {}, False, ()),
    ("'abc' = 'abc'", {}, True, ()),
    ("'abc' = 'ABC'", {}, False, ()),  # case sensitive
    ("TRUE != FALSE", {}, True, ()),
    ("2 != 2", {}, False, ()),
    ("'abc' != 'abc'", {}, False, ()),
    ("TRUE <> FALSE", {}, True, ()),
    ("1 <> 2", {}, True, ()),
    ("'abc' <> 'abc'", {}, False, ()),
    ("1 < 2", {}, True, ()),
    ("2 < 2", {}, False, ()),
    ("2 <= 2", {}, True, ()),
    ("3 <= 2", {}, False, ()),
    ("2 > 1", {}, True, ()),
    ("2 > 2", {}, False, ()),
    ("2 >= 2", {}, True, ()),
    ("2 >= 3", {}, False, ()),
    ("'10' > '9'", {}, True, ()),  # < > <= >= are Integer only: both sides become integers
    ("hop < ttl", {"hop": "5", "ttl": "10"}, True, ()),
    ("TRUE > FALSE", {}, True, ()),
    ("'a' < 1", {}, True, (CAST,)),
    # `=` is ambiguous: the left operand takes the type of the right one.
    ("true = 'TRUE'", {}, False, ()),
    ("'TRUE' = true", {}, True, ()),
    ("sequence = 5", {"sequence": "5"}, True, ()),
    ("sequence = 5", {"sequence": "6"}, False, ()),
    ("sequence = 5", {"sequence": "05"}, True, ()),
    ("5 = sequence", {"sequence": "05"}, False, ()),  # 5 -> '5', compared as strings
    ("sequence = '5'", {"sequence": "05"}, False, ()),
    ("sequence = 5", {"sequence": "five"}, False, (CAST,)),
    ("knativekafkapartition = 3", {"knativekafkapartition": "3"}, True, ()),
    ("knativekafkapartition >= 2", {"knativekafkapartition": "3"}, True, ()),
    ("flag = TRUE", {"flag": "True"}, True, ()),
    ("flag = TRUE", {"flag": "1"}, False, (CAST,)),
    ("1 = TRUE", {}, True, ()),
    ("2 = TRUE", {}, True, ()),  # the left side takes the right type: 2 -> TRUE
    ("TRUE = 2", {}, False, ()),  # TRUE -> 1, and 1 != 2
    ("missing = 2", {}, False, (MISSING,)),
    ("missing != 2", {}, False, (MISSING,)),
    ("missing <> 2", {}, False, (MISSING,)),
    ("missing <= 2", {}, False, (MISSING,)),
    ("2 = missing", {}, False, (MISSING,)),
    ("missing = ''", {}, False, (MISSING,)),
]


@pytest.mark.parametrize("case", COMPARISON, ids=ids(COMPARISON))
def test_comparison_operators(case: Case) -> None:
    check(case)


LOGIC: list[Case] = [
    ("FALSE AND FALSE", {}, False, ()),
    ("FALSE AND TRUE", {}, False, ()),
    ("TRUE AND FALSE", {}, False, ()),
    ("TRUE AND TRUE", {}, True, ()),
    ("FALSE OR FALSE", {}, False, ()),
    ("FALSE OR TRUE", {}, True, ()),
    ("TRUE OR FALSE", {}, True, ()),
    ("TRUE OR TRUE", {}, True, ()),
    ("FALSE XOR FALSE", {}, False, ()),
    ("FALSE XOR TRUE", {}, True, ()),
    ("TRUE XOR FALSE", {}, True, ()),
    ("TRUE XOR TRUE", {}, False, ()),
    ("TRUE XOR TRUE XOR TRUE", {}, True, ()),
    # Short-circuit: the right operand is not evaluated, so no error.
    ("FALSE AND (1 != 1 / 0)", {}, False, ()),
    ("TRUE OR (1 != 1 / 0)", {}, True, ()),
    ("FALSE AND missing", {}, False, ()),
    ("TRUE OR missing", {}, True, ()),
    # Complete evaluation: 1 / 0 is 0 plus a MathError, so `1 != 0` is true (and see
    # test_fail_fast_mode for the zero value a filter sees).
    ("TRUE AND (1 != 1 / 0)", {}, True, (MATH,)),
    ("FALSE OR (1 != 1 / 0)", {}, True, (MATH,)),
    ("TRUE AND (missing = '')", {}, False, (MISSING,)),
    ("(missing = 'x') OR TRUE", {}, False, (MISSING,)),  # zero value once a missing is read
    # Implicit casts of the operands to Boolean.
    ("'true' AND 'TRUE'", {}, True, ()),
    ("1 AND 5", {}, True, ()),
    ("0 OR 0", {}, False, ()),
    ("'yes' AND TRUE", {}, False, (CAST,)),  # 'yes' -> FALSE plus an error
    # One precedence level, grouped to the right as in the SDK grammar:
    # FALSE AND (FALSE OR TRUE), and TRUE OR (FALSE AND FALSE).
    ("FALSE AND FALSE OR TRUE", {}, False, ()),
    ("TRUE OR FALSE AND FALSE", {}, True, ()),
    ("(FALSE AND FALSE) OR TRUE", {}, True, ()),
    ("(TRUE OR FALSE) AND FALSE", {}, False, ()),
    ("TRUE XOR TRUE AND FALSE", {}, True, ()),
    ("1 < 2 AND 3 > 2", {}, True, ()),  # comparisons bind tighter than AND
    ("a = 'x' AND b = 'y' OR c = 'z'", {"a": "x", "b": "n", "c": "z"}, True, ()),
    ("a = 'x' AND b = 'y' OR c = 'z'", {"a": "n", "b": "y", "c": "z"}, False, ()),
]


@pytest.mark.parametrize("case", LOGIC, ids=ids(LOGIC))
def test_logical_operators(case: Case) -> None:
    check(case)


PRECEDENCE: list[Case] = [
    ("NOT 1 + 1", {}, 1, ()),  # (NOT 1) + 1 = FALSE + 1
    ("-2 * 3 + 1", {}, -5, ()),
    ("- 'a' LIKE '0'", {}, True, (CAST,)),  # (-'a') LIKE '0'
    ("1 + 2 LIKE '2'", {}, 2, ()),  # 1 + (2 LIKE '2') = 1 + TRUE
    ("2 * 3 IN (3)", {}, 2, ()),  # 2 * (3 IN (3)) = 2 * TRUE
    ("1 = 1 IN (1)", {}, True, ()),  # 1 = (1 IN (1)): TRUE, then 1 -> TRUE
    ("'ab' LIKE 'a%' = TRUE", {}, True, ()),
    ("(1 + 2) * 3", {}, 9, ()),
    ("((((TRUE))))", {}, True, ()),
    ("4 * (2 + 3)", {}, 20, ()),
    ("(2 + 3) * 4", {}, 20, ()),
    ("1 + 2 = 3", {}, True, ()),
    ("1 < 2 = TRUE", {}, True, ()),
]


@pytest.mark.parametrize("case", PRECEDENCE, ids=ids(PRECEDENCE))
def test_precedence(case: Case) -> None:
    check(case)


LIKE: list[Case] = [
    ("'abc' LIKE 'abc'", {}, True, ()),
    ("'abc' NOT LIKE 'abc'", {}, False, ()),
    ("'abc' LIKE 'ABC'", {}, False, ()),
    ("'ab\\c' LIKE 'ab\\c'", {}, True, ()),
    ("'abc' LIKE 'a%b%c'", {}, True, ()),
    ("'azzzbzzzc' LIKE 'a%b%c'", {}, True, ()),
    ("'a%b%c' LIKE 'a%b%c'", {}, True, ()),
    ("'ac' LIKE 'abc'", {}, False, ()),
    ("'' LIKE 'abc'", {}, False, ()),
    ("'' LIKE '%'", {}, True, ()),
    ("'' LIKE ''", {}, True, ()),
    ("'x' LIKE ''", {}, False, ()),
    ("'.ab.cde.' LIKE '.%.%.'", {}, True, ()),
    ("'ab.cde' LIKE '.%.%.'", {}, False, ()),
    ("'abcabc' LIKE '%bc'", {}, True, ()),
    ("'abcab' LIKE '%bc'", {}, False, ()),
    ("'aXbXc' LIKE '%X%X%'", {}, True, ()),
    ("'aXb' LIKE '%X%X%'", {}, False, ()),
    ("'a' LIKE '%%'", {}, True, ()),
    ("'abc' LIKE 'a_b_c'", {}, False, ()),
    ("'a_b_c' LIKE 'a_b_c'", {}, True, ()),
    ("'azbzc' LIKE 'a_b_c'", {}, True, ()),
    ("'abzc' LIKE 'a_b_c'", {}, False, ()),
    ("'.a.b.' LIKE '._._.'", {}, True, ()),
    ("'abcd.' LIKE '._._.'", {}, False, ()),
    ("'ab' LIKE '_'", {}, False, ()),
    ("'é' LIKE '_'", {}, True, ()),  # one character, not one byte
    ("'line\nbreak' LIKE 'line_break'", {}, True, ()),
    ("'line\nbreak' LIKE 'line%'", {}, True, ()),
    ("'a_b_c' LIKE 'a\\_b\\_c'", {}, True, ()),
    ("'a_b_c' NOT LIKE 'a\\_b\\_c'", {}, False, ()),
    ("'azbzc' LIKE 'a\\_b\\_c'", {}, False, ()),
    ("'a%b%c' LIKE 'a\\%b\\%c'", {}, True, ()),
    ("'abc' LIKE 'a\\%b\\%c'", {}, False, ()),
    ("'100%' LIKE '%\\%'", {}, True, ()),
    ("'100' LIKE '%\\%'", {}, False, ()),
    ("'a.b' LIKE 'a.b'", {}, True, ()),  # regex metacharacters are literal
    ("'axb' LIKE 'a.b'", {}, False, ()),
    ("'a+b(c)' LIKE 'a+b(_)'", {}, True, ()),
    ("'x\\\\' LIKE 'x\\\\'", {}, True, ()),  # backslashes not before % or _ are literal
    (
        "myext LIKE 'abc%123\\%456\\_d_f'",
        {"myext": "abc123123%456_dzf"},
        True,
        (),
    ),
    (
        "myext NOT LIKE 'abc%123\\%456\\_d_f'",
        {"myext": "abc123123%456_dzf"},
        False,
        (),
    ),
    ("234 LIKE '23_'", {}, True, ()),
    ("2344 LIKE '23%'", {}, True, ()),
    ("2344 LIKE '23_'", {}, False, ()),
    ("-1 LIKE '-%'", {}, True, ()),
    ("TRUE LIKE 'tr%'", {}, True, ()),
    ("TRUE LIKE '%ue'", {}, True, ()),
    ("FALSE LIKE 'tr%'", {}, False, ()),
    ("FALSE LIKE 'fal%'", {}, True, ()),
    ("source LIKE 'http://%'", {}, True, ()),
    ("source LIKE 'https://%'", {}, False, ()),
    ("type LIKE '%.thing'", {}, True, ()),
    ('type LIKE "%.thing"', {}, True, ()),
    ("missing LIKE 'missing'", {}, False, (MISSING,)),
    ("missing NOT LIKE 'x'", {}, False, (MISSING,)),
]


@pytest.mark.parametrize("case", LIKE, ids=ids(LIKE))
def test_like(case: Case) -> None:
    check(case)


def test_like_does_not_backtrack_exponentially() -> None:
    # A regex translation (.*a.*a.*...) takes ages on this input; the matcher is linear-ish.
    expression = parse("x LIKE '" + "%a" * 40 + "%b'")
    assert expression.evaluate({"x": "a" * 20_000}) == (False, [])
    assert expression.evaluate({"x": "a" * 20_000 + "b"}) == (True, [])


IN: list[Case] = [
    ("123 IN (1, 2, 3, 12, 13, 23, 123)", {}, True, ()),
    ("123 NOT IN (1, 2, 3, 12, 13, 23, 123)", {}, False, ()),
    ("4 IN (1, 2, 3)", {}, False, ()),
    ("4 NOT IN (1, 2, 3)", {}, True, ()),
    ("'abc' IN ('abc', \"bcd\")", {}, True, ()),
    ("'aaa' IN ('abc', \"bcd\")", {}, False, ()),
    ("TRUE IN (TRUE, FALSE)", {}, True, ()),
    ("TRUE IN (FALSE)", {}, False, ()),
    ("source IN (myext, 'abc')", {"myext": "http://localhost/source"}, True, ()),
    ("source IN (source)", {}, True, ()),
    ("source IN (id, 'http://localhost/source')", {}, True, ()),
    ("source IN (id, 'xyz')", {}, False, ()),
    # Elements are cast to the type of the left operand.
    ("'true' IN (TRUE, 'false')", {}, True, ()),
    ("'true' IN ('TRUE', 'false')", {}, False, ()),
    ("TRUE IN ('true', 'false')", {}, True, ()),
    ("'TRUE' IN (TRUE, 'false')", {}, False, ()),
    ("1 IN ('1', '2')", {}, True, ()),
    ("'1' IN (1, 2)", {}, True, ()),
    ("1 IN ('01')", {}, True, ()),
    ("'01' IN (1)", {}, False, ()),
    ("1 IN ('x', 1)", {}, True, (CAST,)),
    ("knativekafkapartition IN (1, 3)", {"knativekafkapartition": "3"}, True, ()),
    ("INT(knativekafkapartition) IN ('1', '3')", {"knativekafkapartition": "3"}, True, ()),
    ("1 + 1 IN (2)", {}, 1, ()),  # IN binds tighter than +: 1 + (1 IN (2)) = 1 + FALSE
    ("(1 + 1) IN (2)", {}, True, ()),
    ("missing IN (1, 2)", {}, False, (MISSING,)),
    ("missing NOT IN (1, 2)", {}, False, (MISSING,)),
    ("1 IN (missing, 2)", {}, False, (MISSING,)),
    ("1 IN (1, missing)", {}, True, ()),  # stops at the first equal element
]


@pytest.mark.parametrize("case", IN, ids=ids(IN))
def test_in(case: Case) -> None:
    check(case)


FUNCTIONS: list[Case] = [
    ("LENGTH('abc')", {}, 3, ()),
    ("LENGTH('')", {}, 0, ()),
    ("LENGTH('2')", {}, 1, ()),
    ("LENGTH(TRUE)", {}, 4, ()),
    ("LENGTH(-12)", {}, 3, ()),
    ("LENGTH('héllo✓')", {}, 6, ()),  # characters, not bytes
    ("LENGTH(type)", {}, 17, ()),
    ("CONCAT('a', 'b', 'c')", {}, "abc", ()),
    ("CONCAT()", {}, "", ()),
    ("CONCAT('a')", {}, "a", ()),
    ("CONCAT('n', 1, TRUE)", {}, "n1true", ()),
    ("CONCAT_WS(',', 'a', 'b', 'c')", {}, "a,b,c", ()),
    ("CONCAT_WS(',')", {}, "", ()),
    ("CONCAT_WS(',', 'a')", {}, "a", ()),
    ("CONCAT_WS(', ', type, id)", {}, "com.example.thing, evt-1", ()),
    ("CONCAT_WS()", {}, False, (NOFUNC,)),
    ("LOWER('AbC')", {}, "abc", ()),
    ("UPPER('AbC')", {}, "ABC", ()),
    ("UPPER(TRUE)", {}, "TRUE", ()),
    ("TRIM('   a b c   ')", {}, "a b c", ()),
    ("TRIM('a b c')", {}, "a b c", ()),
    ("TRIM('\t\n a \r\n')", {}, "a", ()),
    ("TRIM('\u3000\u00a0a\u2003')", {}, "a", ()),  # Unicode whitespace
    ("TRIM('\x1fa\x00')", {}, "\x1fa\x00", ()),  # control characters are not whitespace
    ("LEFT('abc', 2)", {}, "ab", ()),
    ("LEFT('abc', 10)", {}, "abc", ()),
    ("LEFT('abc', 0)", {}, "", ()),
    ("LEFT('', 0)", {}, "", ()),
    ("LEFT('abc', -2)", {}, "abc", (FUNC,)),
    ("LEFT('abc', '2')", {}, "ab", ()),
    ("RIGHT('abc', 2)", {}, "bc", ()),
    ("RIGHT('abc', 10)", {}, "abc", ()),
    ("RIGHT('abc', 0)", {}, "", ()),
    ("RIGHT('', 0)", {}, "", ()),
    ("RIGHT('abc', -2)", {}, "abc", (FUNC,)),
    ("SUBSTRING('abcdef', 1)", {}, "abcdef", ()),
    ("SUBSTRING('abcdef', 2)", {}, "bcdef", ()),
    ("SUBSTRING('Quadratically', 5)", {}, "ratically", ()),
    ("SUBSTRING('Sakila', -3)", {}, "ila", ()),
    ("SUBSTRING('abcdef', 6)", {}, "f", ()),
    ("SUBSTRING('abcdef', -6)", {}, "abcdef", ()),
    ("SUBSTRING('abcdef', 1, 6)", {}, "abcdef", ()),
    ("SUBSTRING('abcdef', 2, 4)", {}, "bcde", ()),
    ("SUBSTRING('abcdef', 2, 100)", {}, "bcdef", ()),
    ("SUBSTRING('abcdef', 2, 0)", {}, "", ()),
    ("SUBSTRING('Sakila', -5, 3)", {}, "aki", ()),
    ("SUBSTRING('Quadratically', 0)", {}, "", ()),
    ("SUBSTRING('Quadratically', 0, 1)", {}, "", ()),
    ("SUBSTRING('abcdef', 10)", {}, "", (FUNC,)),
    ("SUBSTRING('abcdef', -10)", {}, "", (FUNC,)),
    ("SUBSTRING('abcdef', 10, 10)", {}, "", (FUNC,)),
    ("SUBSTRING('abcdef', -10, 10)", {}, "", (FUNC,)),
    ("SUBSTRING('abcdef', 2, -1)", {}, "", (FUNC,)),
    ("SUBSTRING('', 1)", {}, "", (FUNC,)),
    ("ABS(10)", {}, 10, ()),
    ("ABS(-10)", {}, 10, ()),
    ("ABS(0)", {}, 0, ()),
    ("ABS('-7')", {}, 7, ()),
    ("ABS(-2147483648)", {}, 2147483647, (MATH,)),
    ("INT('1')", {}, 1, ()),
    ("INT('-1')", {}, -1, ()),
    ("INT('+1')", {}, 1, ()),
    ("INT('007')", {}, 7, ()),
    ("INT(1)", {}, 1, ()),
    ("INT(TRUE)", {}, 1, ()),
    ("INT(FALSE)", {}, 0, ()),
    ("INT('ABC')", {}, 0, (CAST,)),
    ("INT('')", {}, 0, (CAST,)),
    ("INT('1_000')", {}, 0, (CAST,)),
    ("INT('١')", {}, 0, (CAST,)),  # only ASCII digits
    ("INT('-2147483649')", {}, 0, (CAST,)),
    ("BOOL('TRUE')", {}, True, ()),
    ("BOOL('false')", {}, False, ()),
    ("BOOL(TRUE)", {}, True, ()),
    ("BOOL('ABC')", {}, False, (CAST,)),
    ("BOOL(1)", {}, True, ()),
    ("BOOL(0)", {}, False, ()),
    ("BOOL(-50)", {}, True, ()),
    ("STRING(TRUE)", {}, "true", ()),
    ("STRING(FALSE)", {}, "false", ()),
    ("STRING(-1)", {}, "-1", ()),
    ("STRING('abc')", {}, "abc", ()),
    ("IS_INT('12')", {}, True, ()),
    ("IS_INT('-12')", {}, True, ()),
    ("IS_INT('1.5')", {}, False, ()),
    ("IS_INT('2147483648')", {}, False, ()),
    ("IS_INT(TRUE)", {}, True, ()),
    ("IS_INT(7)", {}, True, ()),
    ("IS_INT(seq)", {"seq": "12"}, True, ()),
    ("IS_BOOL('TRUE')", {}, True, ()),
    ("IS_BOOL('yes')", {}, False, ()),
    ("IS_BOOL(0)", {}, True, ()),
    ("IS_BOOL(FALSE)", {}, True, ()),
    ("is_bool('false')", {}, True, ()),
    ("UPPER(LOWER(CONCAT('A', 'b')))", {}, "AB", ()),
    ("LENGTH(missing)", {}, 0, (MISSING,)),
    ("CONCAT('a', missing)", {}, "", (MISSING,)),
    ("IS_INT(missing)", {}, False, (MISSING,)),
    ("NOSUCH(1)", {}, False, (NOFUNC,)),
    ("LENGTH('a', 'b')", {}, False, (NOFUNC,)),
    ("ABS()", {}, False, (NOFUNC,)),
    ("SUBSTRING('abc')", {}, False, (NOFUNC,)),
    ("NOSUCH(missing)", {}, False, (NOFUNC,)),  # arguments are not evaluated
]


@pytest.mark.parametrize("case", FUNCTIONS, ids=ids(FUNCTIONS))
def test_functions(case: Case) -> None:
    check(case)


SPEC_EXAMPLES: list[Case] = [
    ("EXISTS subject", {"subject": "x"}, True, ()),
    ("firstname = 'Francesco'", {"firstname": "Francesco"}, True, ()),
    (
        "firstname = 'Francesco' OR subject = 'Francesco'",
        {"subject": "Francesco", "firstname": "Doug"},
        True,
        (),
    ),
    (
        "(firstname = 'Francesco' AND lastname = 'Guardiani') OR subject = 'Francesco Guardiani'",
        {"subject": "Doug", "firstname": "Francesco", "lastname": "Guardiani"},
        True,
        (),
    ),
    (
        "(firstname = 'Francesco' AND lastname = 'Guardiani') OR subject = 'Francesco Guardiani'",
        {"subject": "Francesco Guardiani", "firstname": "Doug", "lastname": "Davis"},
        True,
        (),
    ),
    ("sequence = 10", {"sequence": "10"}, True, ()),
    ("hop < ttl", {"hop": "5", "ttl": "10"}, True, ()),
    (
        "(id = 'evt-1' AND type LIKE '%.thing') OR (id = 'x' AND source LIKE 'http://%')",
        {},
        True,
        (),
    ),
    ("type LIKE 'example.%' AND myext LIKE 'custom%'", {"type": "example.a"}, False, (MISSING,)),
]


@pytest.mark.parametrize("case", SPEC_EXAMPLES, ids=ids(SPEC_EXAMPLES))
def test_spec_examples_and_subscription_filters(case: Case) -> None:
    check(case)


# --- matches: the filter rule ------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "extra", "expected"),
    [
        ("type = 'com.example.thing'", {}, True),
        ("type = 'other'", {}, False),
        ("'true'", {}, False),  # a String is not the boolean true
        ("1", {}, False),
        ("myext = 'x'", {}, False),  # missing attribute
        ("NOT (myext = 'x')", {}, False),  # missing attribute, even negated
        ("myext != 'x'", {}, False),
        ("NOT EXISTS myext", {}, True),
        ("TRUE AND INT('x') = 0", {}, False),  # boolean true, but with a CastError
        ("NOSUCH() OR TRUE", {}, False),
        ("knativekafkapartition = 3", {"knativekafkapartition": "3"}, True),
        ("knativekafkaoffset > 100", {"knativekafkaoffset": "99"}, False),
    ],
)
def test_matches_only_boolean_true_without_errors(
    expression: str, extra: dict[str, str], expected: bool
) -> None:
    assert parse(expression).matches({**BASE, **extra}) is expected


def test_evaluate_returns_error_strings_with_kinds() -> None:
    # Complete evaluation: both operands of `=` are evaluated, each error is kept.
    value, errors = parse("myext = 1 / 0").evaluate(BASE)
    assert value is False
    assert errors == [
        "MissingAttributeError: attribute 'myext' is not present on the event",
        "MathError: division by zero in 1 / 0",
    ]
    assert all(isinstance(e, EvaluationError) for e in errors)
    assert [e.kind for e in errors] == [MISSING, MATH]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("expression", "expected", "kinds"),
    [
        ("TRUE AND (1 != 1 / 0)", False, (MATH,)),
        ("FALSE OR (1 != 1 / 0)", False, (MATH,)),
        ("ABS(-2147483648)", 0, (MATH,)),
        ("INT('a') + INT('b')", 0, (CAST,)),
        ("CONCAT('x', INT('a'))", "", (CAST,)),
        ("subject", False, (MISSING,)),
        ("myext = 1 / 0", False, (MISSING,)),  # stops at the first error
        ("NOSUCH() OR TRUE", False, (NOFUNC,)),
        ("FALSE AND (1 / 0 = 0)", False, ()),  # short-circuit: no error at all
        ("type LIKE 'com.%'", True, ()),
        ("LENGTH(type)", 17, ()),
    ],
)
def test_fail_fast_mode(expression: str, expected: object, kinds: tuple[str, ...]) -> None:
    value, errors = parse(expression).evaluate(BASE, fail_fast=True)
    assert (value, type(value)) == (expected, type(expected))
    assert tuple(e.kind for e in errors) == kinds  # type: ignore[attr-defined]


def test_evaluate_does_not_mutate_or_keep_state() -> None:
    attributes = dict(BASE)
    expression = parse("INT('x') = 0 AND EXISTS id")
    first = expression.evaluate(attributes)
    second = expression.evaluate(attributes)
    assert first == second == (True, ["CastError: cannot cast String 'x' to Integer"])
    assert attributes == BASE


def test_parse_is_cached_and_expression_keeps_source() -> None:
    source = "type LIKE 'com.%'"
    assert parse(source) is parse(source)
    assert parse(source).source == source
    assert repr(parse(source)) == "Expression(\"type LIKE 'com.%'\")"


def test_warnings_for_expressions_that_cannot_match() -> None:
    assert parse("type = 'x'").warnings == ()
    assert parse("NOSUCH(type)").warnings == (
        "unknown function; no function NOSUCH taking 1 argument(s): "
        "it always evaluates to false with an error",
    )
    assert "taking 3 argument(s)" in parse("LEFT('a', 1, 2) = 'a'").warnings[0]
    assert "never matches" in parse("subject").warnings[0]


# --- parse errors --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "position", "fragment"),
    [
        ("ABC(", "column 5", "unexpected end of the expression; expected one of:"),
        ("a AND", "column 6", "unexpected end of the expression"),
        ("x LIKE 123", "column 8", "unexpected integer '123'; expected a string literal"),
        ("x LIKE y", "column 8", "expected a string literal"),
        ("x LIKE CONCAT('a', '%')", "column 8", "expected a string literal"),
        ("x = = 1", "column 5", "unexpected '='"),
        ("1 2", "column 3", "unexpected integer '2'"),
        ("4-1", "column 2", "a sign before digits is part of the number: write '- 1'"),
        ("hop-1 > 0", "column 4", "write '- 1'"),
        ("x IN ()", "column 7", "unexpected ')'"),
        ("x IN 1", "column 6", "expected '('"),
        ("(TRUE", "column 6", "expected ')'"),
        ("TRUE)", "column 5", "unexpected ')'"),
        ("'abc", "column 1", "unterminated string literal (no closing ')"),
        ('"abc', "column 1", "unterminated string literal"),
        ("a # b", "column 3", "unexpected character '#'"),
        ("a = 'x' AND\n  b = ", "line 2, column 6", "unexpected end of the expression"),
        ("2147483648", "column 1", "integer literal 2147483648 is outside the 32-bit range"),
        ("-2147483649 < 0", "column 1", "outside the 32-bit range"),
        ("my_ext = 'x'", "column 1", "'my_ext' is not a valid attribute name"),
        ("EXISTS my_ext", "column 8", "'my_ext' is not a valid attribute name"),
        ("EXISTS 'id'", "column 8", "unexpected string"),
        ("LEN2(x)", "column 1", "'LEN2' is not a valid function name"),
        ("NOT", "column 4", "unexpected end of the expression"),
        ("TRUE TRUE", "column 6", "unexpected 'TRUE'"),
        ("a and and b", "column 7", "unexpected 'and'"),
        ("x LIKE y", "column 8", "unexpected attribute or function name 'y'"),
        ("f(1,)", "column 5", "unexpected ')'"),
        ("+ 5", "column 1", "unexpected '+'"),
    ],
)
def test_parse_errors_say_where_and_what(expression: str, position: str, fragment: str) -> None:
    with pytest.raises(CesqlError) as info:
        parse(expression)
    message = str(info.value)
    assert message.startswith(f"{position}: "), message
    assert fragment in message


def test_parse_error_carries_location_and_expectations() -> None:
    with pytest.raises(CesqlError) as info:
        parse("a = (1")
    assert (info.value.line, info.value.column) == (1, 7)
    assert info.value.expected == ("')'",)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("expression", ["", "   ", "\n\t"])
def test_empty_expression_is_rejected(expression: str) -> None:
    with pytest.raises(CesqlError, match="expression is empty"):
        parse(expression)


def test_non_string_is_rejected() -> None:
    with pytest.raises(CesqlError, match="must be a string, got int"):
        parse(5)  # type: ignore[arg-type]


def test_whitespace_between_tokens_is_free() -> None:
    assert parse("\n type\t=\r\n'com.example.thing'  ").matches(BASE)


# --- limits --------------------------------------------------------------------------------


def test_overlong_expression_is_rejected() -> None:
    source = "type = '" + "x" * MAX_LENGTH + "'"
    with pytest.raises(CesqlError, match=f"at most {MAX_LENGTH} are accepted"):
        parse(source)


@pytest.mark.parametrize(
    "source",
    [
        "NOT " * (MAX_DEPTH + 1) + "TRUE",
        "-" * (MAX_DEPTH + 1) + "1",
        "1" + " + 1" * (MAX_DEPTH + 1),
        "ABS(" * (MAX_DEPTH + 1) + "1" + ")" * (MAX_DEPTH + 1),
        "1 = (" * (MAX_DEPTH + 1) + "1" + ")" * (MAX_DEPTH + 1),
        "TRUE AND FALSE OR " * (MAX_DEPTH // 2 + 1) + "TRUE",
    ],
    ids=["not", "minus", "plus", "calls", "equality", "mixed-logic"],
)
def test_too_deep_nesting_is_rejected(source: str) -> None:
    with pytest.raises(CesqlError, match="nested too deeply"):
        parse(source)


def test_deep_parentheses_alone_are_fine() -> None:
    assert parse("(" * 500 + "TRUE" + ")" * 500).matches({})


def test_long_flat_chains_of_one_operator_are_fine() -> None:
    members = [f"region = 'r{i}'" for i in range(150)]
    expression = parse(" OR ".join(members))
    assert expression.matches({"region": "r149"})
    assert not expression.matches({"region": "r150"})
    assert parse(" AND ".join(f"EXISTS e{i}" for i in range(200))).matches(
        {f"e{i}": "" for i in range(200)}
    )


def test_nesting_just_under_the_limit_evaluates() -> None:
    source = "NOT " * (MAX_DEPTH - 1) + "TRUE"
    assert parse(source).evaluate({}) == ((MAX_DEPTH - 1) % 2 == 0, [])
