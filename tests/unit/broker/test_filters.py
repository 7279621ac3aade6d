"""Trigger filters: one test group per rule of the broker semantics spec §2 (Kafka column)."""

from __future__ import annotations

from typing import Any

import pytest

from cascade.broker.dispatch.filters import (
    Filter,
    FilterValidationError,
    compile_trigger_filter,
    iso_instant,
)

EVENT: dict[str, str] = {
    "specversion": "1.0",
    "id": "e-1",
    "source": "https://shop.example/orders",
    "type": "com.example.order.created",
    "subject": "order-42",
    "time": "2024-05-01T14:30:00.5+02:00",
    "dataschema": "https://schemas.example/order.json",
    "datacontenttype": "application/json",
    "region": "eu-west",
    "knativekafkapartition": "3",
}


def compile_filters(*entries: Any) -> Filter:
    return compile_trigger_filter({"broker": "default", "filters": list(entries)})


# --- §2.1 which filter applies -------------------------------------------------------------


def test_no_filter_matches_every_event() -> None:
    f = compile_trigger_filter({"broker": "default", "subscriber": {"uri": "http://x"}})
    assert f.matches(EVENT)
    assert f.matches({})


def test_empty_filter_and_empty_attributes_match_everything() -> None:
    assert compile_trigger_filter({"filter": {}}).matches({})
    assert compile_trigger_filter({"filter": {"attributes": {}}}).matches({})
    assert compile_trigger_filter({"filter": None, "filters": None}).matches({})


def test_non_empty_filters_win_over_filter() -> None:
    spec = {
        "filter": {"attributes": {"type": "something.else"}},
        "filters": [{"exact": {"type": "com.example.order.created"}}],
    }
    f = compile_trigger_filter(spec)
    assert f.matches(EVENT)
    assert not f.matches({**EVENT, "type": "something.else"})


def test_empty_filters_list_falls_back_to_filter() -> None:
    spec = {"filter": {"attributes": {"type": "something.else"}}, "filters": []}
    f = compile_trigger_filter(spec)
    assert not f.matches(EVENT)
    assert f.matches({**EVENT, "type": "something.else"})


def test_filter_is_still_validated_when_filters_win() -> None:
    spec = {"filter": {"attributes": {"Type": "x"}}, "filters": [{"exact": {"type": "x"}}]}
    with pytest.raises(FilterValidationError) as info:
        compile_trigger_filter(spec)
    assert info.value.field == "spec.filter.attributes"


def test_filters_entries_are_anded() -> None:
    f = compile_filters(
        {"exact": {"type": "com.example.order.created"}},
        {"prefix": {"source": "https://shop."}},
        {"suffix": {"subject": "-42"}},
    )
    assert f.matches(EVENT)
    assert not f.matches({**EVENT, "subject": "order-43"})
    assert not f.matches({**EVENT, "source": "http://shop.example"})
    assert not f.matches({**EVENT, "type": "x"})


# --- §2.3 legacy filter.attributes ------------------------------------------------------


def test_attributes_all_keys_must_match_case_sensitively() -> None:
    f = compile_trigger_filter(
        {"filter": {"attributes": {"type": "com.example.order.created", "region": "eu-west"}}}
    )
    assert f.matches(EVENT)
    assert not f.matches({**EVENT, "region": "EU-WEST"})
    assert not f.matches({**EVENT, "type": "com.example.order.created "})


def test_attributes_match_extensions_by_string_form() -> None:
    f = compile_trigger_filter({"filter": {"attributes": {"knativekafkapartition": "3"}}})
    assert f.matches(EVENT)
    assert not f.matches({**EVENT, "knativekafkapartition": "03"})


@pytest.mark.parametrize("where", ["attributes", "exact", "prefix", "suffix"])
def test_empty_expected_value_is_ignored_even_if_attribute_missing(where: str) -> None:
    if where == "attributes":
        f = compile_trigger_filter({"filter": {"attributes": {"missingext": "", "type": ""}}})
    else:
        f = compile_filters({where: {"missingext": ""}})
    assert f.matches(EVENT)
    assert f.matches({})


def test_empty_value_ignored_but_other_keys_still_apply() -> None:
    f = compile_trigger_filter({"filter": {"attributes": {"missingext": "", "region": "eu-west"}}})
    assert f.matches(EVENT)
    assert not f.matches({**EVENT, "region": "us-east"})


@pytest.mark.parametrize("dialect", ["exact", "prefix", "suffix"])
@pytest.mark.parametrize("key", ["missingext", "subject", "datacontenttype", "time"])
def test_missing_attribute_never_matches_non_empty_value(dialect: str, key: str) -> None:
    f = compile_filters({dialect: {key: "x"}})
    attributes = {k: v for k, v in EVENT.items() if k != key}
    assert not f.matches(attributes)


def test_present_but_empty_attribute_does_not_match_non_empty_value() -> None:
    assert not compile_filters({"exact": {"region": "eu"}}).matches({**EVENT, "region": ""})


# --- time and schemaurl -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wire", "instant"),
    [
        ("2024-05-01T14:30:00+02:00", "2024-05-01T12:30:00Z"),
        ("2024-05-01T12:30:00Z", "2024-05-01T12:30:00Z"),
        ("2024-05-01t12:30:00z", "2024-05-01T12:30:00Z"),
        ("2024-05-01T14:30:00.5+02:00", "2024-05-01T12:30:00.500Z"),
        ("2024-05-01T12:30:00.000Z", "2024-05-01T12:30:00Z"),
        ("2024-05-01T12:30:00.1234Z", "2024-05-01T12:30:00.123400Z"),
        ("2024-05-01T12:30:00.123456789Z", "2024-05-01T12:30:00.123456789Z"),
        ("2024-12-31T23:30:00-01:00", "2025-01-01T00:30:00Z"),
        ("2024-05-01T12:30:00-00:00", "2024-05-01T12:30:00Z"),
        ("not a time", "not a time"),
    ],
)
def test_iso_instant_normalization(wire: str, instant: str) -> None:
    assert iso_instant(wire) == instant


def test_time_is_compared_in_utc_instant_form() -> None:
    exact = compile_filters({"exact": {"time": "2024-05-01T12:30:00.500Z"}})
    assert exact.matches(EVENT)
    # The expected value is not normalized: an offset form never matches (as in Kafka).
    assert not compile_filters({"exact": {"time": EVENT["time"]}}).matches(EVENT)
    assert compile_filters({"prefix": {"time": "2024-05-01T12:"}}).matches(EVENT)
    assert compile_filters({"suffix": {"time": "Z"}}).matches(EVENT)
    legacy = compile_trigger_filter(
        {"filter": {"attributes": {"time": "2024-05-01T12:30:00.500Z"}}}
    )
    assert legacy.matches(EVENT)


def test_schemaurl_means_dataschema_both_ways() -> None:
    url = EVENT["dataschema"]
    assert compile_filters({"exact": {"schemaurl": url}}).matches(EVENT)
    v03 = {k: v for k, v in EVENT.items() if k != "dataschema"} | {"schemaurl": url}
    assert compile_filters({"exact": {"dataschema": url}}).matches(v03)
    assert compile_trigger_filter({"filter": {"attributes": {"schemaurl": url}}}).matches(v03)
    assert not compile_filters({"exact": {"schemaurl": url}}).matches({"type": "x"})


# --- §2.4 dialects ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dialect", "value", "expected"),
    [
        ("exact", "com.example.order.created", True),
        ("exact", "com.example.order", False),
        ("exact", "COM.EXAMPLE.ORDER.CREATED", False),
        ("prefix", "com.example.", True),
        ("prefix", "com.example.order.created", True),
        ("prefix", "org.example", False),
        ("suffix", ".created", True),
        ("suffix", "Created", False),
    ],
)
def test_string_dialects(dialect: str, value: str, expected: bool) -> None:
    assert compile_filters({dialect: {"type": value}}).matches(EVENT) is expected


def test_several_keys_in_one_dialect_are_anded() -> None:
    f = compile_filters({"prefix": {"type": "com.example.", "source": "https://"}})
    assert f.matches(EVENT)
    assert not f.matches({**EVENT, "source": "http://x"})


def test_all_requires_every_nested_filter() -> None:
    f = compile_filters(
        {"all": [{"exact": {"region": "eu-west"}}, {"suffix": {"type": ".created"}}]}
    )
    assert f.matches(EVENT)
    assert not f.matches({**EVENT, "region": "us"})
    assert not f.matches({**EVENT, "type": "com.example.order.deleted"})


def test_any_requires_one_nested_filter() -> None:
    f = compile_filters({"any": [{"exact": {"region": "us"}}, {"exact": {"region": "eu-west"}}]})
    assert f.matches(EVENT)
    assert not f.matches({**EVENT, "region": "apac"})
    assert not f.matches({})


def test_not_negates() -> None:
    f = compile_filters({"not": {"exact": {"region": "eu-west"}}})
    assert not f.matches(EVENT)
    assert f.matches({**EVENT, "region": "us"})
    assert f.matches({"type": "x"})  # a missing attribute fails exact, so `not` passes


def test_nested_combination() -> None:
    f = compile_filters(
        {
            "any": [
                {"all": [{"prefix": {"type": "com.example."}}, {"not": {"exact": {"id": "x"}}}]},
                {"exact": {"subject": "vip"}},
            ]
        }
    )
    assert f.matches(EVENT)
    assert not f.matches({**EVENT, "id": "x"})
    assert f.matches({**EVENT, "id": "x", "subject": "vip"})


def test_cesql_dialect_matches_boolean_true_without_errors() -> None:
    # CESQL itself is covered by test_cesql.py; here the wiring of the dialect.
    f = compile_filters({"cesql": "knativekafkapartition = 3 AND type LIKE '%.created'"})
    assert f.matches(EVENT)
    assert not f.matches({**EVENT, "knativekafkapartition": "4"})
    assert not compile_filters({"cesql": "missingext = 'x'"}).matches(EVENT)
    assert not compile_filters({"cesql": "'true'"}).matches(EVENT)  # not a boolean


def test_not_over_cesql_passes_when_cesql_fails_on_a_missing_attribute() -> None:
    # Kafka's NotFilter only sees the CESQL filter's false; the error does not propagate.
    f = compile_filters({"not": {"cesql": "missingext = 'x'"}})
    assert f.matches(EVENT)


def test_cesql_inside_any_and_all() -> None:
    f = compile_filters(
        {
            "any": [
                {"cesql": "region IN ('us', 'apac')"},
                {"all": [{"exact": {"region": "eu-west"}}, {"cesql": "EXISTS subject"}]},
            ]
        }
    )
    assert f.matches(EVENT)
    assert f.matches({"region": "us"})
    assert not f.matches({"region": "eu-west"})


def test_cesql_dialect_is_validated() -> None:
    with pytest.raises(FilterValidationError) as info:
        compile_filters({"cesql": "type = "})
    assert info.value.field == "spec.filters[0].cesql"
    assert str(info.value) == (
        "spec.filters[0].cesql: invalid CESQL expression: column 7: "
        "unexpected end of the expression; expected one of: '(', '-', EXISTS, FALSE, NOT, "
        "TRUE, a string literal, an attribute or function name, an integer"
    )


# --- §2.2 validation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "field", "fragment"),
    [
        (
            {"filters": [{"exact": {"type": "x"}}, {"any": [{"exact": {"Bad-Key": "1"}}]}]},
            "spec.filters[1].any[0].exact",
            "attribute key 'Bad-Key' must match ^[a-z][a-z0-9]*$",
        ),
        (
            {"filter": {"attributes": {"9lives": "x"}}},
            "spec.filter.attributes",
            "attribute key '9lives' must match",
        ),
        ({"filters": [{"prefix": {"my_ext": "x"}}]}, "spec.filters[0].prefix", "'my_ext'"),
        ({"filters": [{"suffix": {"": "x"}}]}, "spec.filters[0].suffix", "attribute key ''"),
        (
            {"filters": [{"exact": {"type": "x"}, "suffix": {"source": "y"}}]},
            "spec.filters[0]",
            "multiple dialects found",
        ),
        (
            {"filters": [{"all": [{"not": {"exact": {"a": "1"}, "cesql": "true"}}]}]},
            "spec.filters[0].all[0].not",
            "multiple dialects found",
        ),
        ({"filters": [{}]}, "spec.filters[0]", "no dialect found"),
        ({"filters": [{"exacts": {"a": "1"}}]}, "spec.filters[0]", "unknown dialect 'exacts'"),
        ({"filters": [{"all": []}]}, "spec.filters[0].all", "at least one nested filter"),
        ({"filters": [{"any": []}]}, "spec.filters[0].any", "at least one nested filter"),
        ({"filters": [{"exact": "x"}]}, "spec.filters[0].exact", "must be a mapping"),
        (
            {"filters": [{"exact": {"knativekafkapartition": 1}}]},
            "spec.filters[0].exact",
            "value of attribute 'knativekafkapartition' must be a string, got integer",
        ),
        ({"filters": [{"prefix": {"a": None}}]}, "spec.filters[0].prefix", "got null"),
        ({"filters": [{"any": {"exact": {"a": "1"}}}]}, "spec.filters[0].any", "must be a list"),
        ({"filters": [{"not": [{"exact": {"a": "1"}}]}]}, "spec.filters[0].not", "got list"),
        ({"filters": [{"cesql": 5}]}, "spec.filters[0].cesql", "must be a string"),
        ({"filters": [{"cesql": ""}]}, "spec.filters[0].cesql", "expression is empty"),
        (
            {"filters": [{"any": [{"cesql": "a = 'x"}]}]},
            "spec.filters[0].any[0].cesql",
            "unterminated string literal",
        ),
        ({"filters": "type = x"}, "spec.filters", "must be a list"),
        ({"filters": ["exact"]}, "spec.filters[0]", "must be a mapping"),
        ({"filter": "x"}, "spec.filter", "must be a mapping"),
        ({"filter": {"exact": {"a": "1"}}}, "spec.filter", "unknown field 'exact'"),
        ({"filter": {"attributes": ["type"]}}, "spec.filter.attributes", "must be a mapping"),
    ],
)
def test_validation_errors_name_the_field(spec: dict[str, Any], field: str, fragment: str) -> None:
    with pytest.raises(FilterValidationError) as info:
        compile_trigger_filter(spec)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")
    assert fragment in str(info.value)


def test_validation_error_message_format() -> None:
    with pytest.raises(FilterValidationError) as info:
        compile_filters({"exact": {"type": "x"}}, {"any": [{"exact": {"x": "1"}}]}, {"not": {}})
    assert str(info.value) == (
        "spec.filters[2].not: no dialect found; "
        "expected exactly one of exact, prefix, suffix, all, any, not, cesql"
    )
    assert isinstance(info.value, ValueError)


def test_spec_must_be_a_mapping() -> None:
    with pytest.raises(FilterValidationError, match=r"^spec: must be a mapping"):
        compile_trigger_filter(["filters"])  # type: ignore[arg-type]


def test_empty_dialect_map_matches_everything() -> None:
    assert compile_filters({"exact": {}}).matches({})


def test_typical_filter_is_cheap_to_evaluate() -> None:
    # No timing assertion (shared noisy cores): just a sanity run of many evaluations.
    f = compile_filters(
        {"exact": {"type": "com.example.order.created"}},
        {"prefix": {"source": "https://shop."}},
        {"suffix": {"subject": "-42"}},
    )
    assert all(f.matches(EVENT) for _ in range(10_000))
