"""Event contracts, the type registry and Function registration."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from cascade import Context, Event, EventRegistry, Function, Reply, registry
from cascade.events import bound_type


class Pinged(Event, type="com.example.api.pinged"):
    n: int


class Ponged(Event, type="com.example.api.ponged"):
    n: int


class Shared(Event):
    """Unbound: only shares fields."""

    tenant: str


class Tenanted(Shared, type="com.example.api.tenanted"):
    pass


def test_bound_models_register_globally() -> None:
    assert registry.get("com.example.api.pinged") is Pinged
    assert bound_type(Tenanted) == "com.example.api.tenanted"
    assert Shared.ce_type is None
    assert "com.example.api.tenanted" in registry


def test_subclass_does_not_inherit_its_parents_type() -> None:
    class Child(Pinged):
        pass

    assert Child.ce_type is None
    with pytest.raises(TypeError, match="not bound"):
        bound_type(Child)


@pytest.mark.parametrize("bad", ["", "has space", "tab\t", 3])
def test_invalid_type_names_are_refused(bad: object) -> None:
    with pytest.raises(TypeError, match="CloudEvents type"):

        class Bad(Event, type=bad):  # type: ignore[arg-type]
            pass


def test_two_models_cannot_bind_one_type() -> None:
    with pytest.raises(TypeError, match="already bound"):

        class Impostor(Event, type="com.example.api.pinged"):
            pass

    assert registry.get("com.example.api.pinged") is Pinged


def test_json_schema_export() -> None:
    local = EventRegistry()
    local.register(Pinged)
    local.register(Ponged)
    schemas = local.json_schemas()
    assert list(schemas) == ["com.example.api.pinged", "com.example.api.ponged"]
    assert schemas["com.example.api.pinged"]["properties"]["n"]["type"] == "integer"
    assert schemas["com.example.api.pinged"]["x-cloudevents-type"] == "com.example.api.pinged"
    with pytest.raises(KeyError, match="unknown"):
        local.json_schema("nope")


def test_event_serialises_compactly() -> None:
    assert Pinged(n=1).to_json_bytes() == b'{"n":1}'
    with pytest.raises(ValidationError):
        Pinged.model_validate_json(b'{"n":"x"}')


def test_function_registers_handlers_and_reply_types() -> None:
    fn = Function("api")

    @fn.on(Pinged)
    def ping(event: Pinged, ctx: Context) -> Ponged | Reply | None:
        return Ponged(n=event.n)

    @fn.on(Tenanted)
    def tenant(event: Tenanted) -> None:
        return None

    assert fn.consumes() == ["com.example.api.pinged", "com.example.api.tenanted"]
    assert fn.produces() == ["com.example.api.ponged"]
    assert fn.handlers["com.example.api.pinged"].takes_context is True
    assert fn.handlers["com.example.api.tenanted"].takes_context is False
    assert set(fn.registry) == {
        "com.example.api.pinged",
        "com.example.api.ponged",
        "com.example.api.tenanted",
    }
    assert ping(Pinged(n=2), None) == Ponged(n=2)  # type: ignore[arg-type]  # undecorated


def test_one_handler_per_type() -> None:
    fn = Function("api")
    fn.on(Pinged)(lambda e, c: None)
    with pytest.raises(ValueError, match="already has a handler"):
        fn.on(Pinged)(lambda e, c: None)


def test_handler_needs_an_event_parameter() -> None:
    fn = Function("api")
    with pytest.raises(TypeError, match=r"\(event, ctx\)"):
        fn.on(Pinged)(lambda: None)


def test_unbound_model_cannot_be_handled() -> None:
    with pytest.raises(TypeError, match="not bound"):
        Function("api").on(Shared)


@pytest.mark.parametrize("name", ["", "Inventory", "a_b", "-a", "a" * 64, "with space"])
def test_function_names_are_dns_labels(name: str) -> None:
    with pytest.raises(ValueError, match="DNS-1123"):
        Function(name)


def test_examples_need_a_handler() -> None:
    fn = Function("api")
    with pytest.raises(ValueError, match="no handler"):
        fn.example(Pinged(n=1))
    fn.on(Pinged)(lambda e, c: None)
    assert fn.example(Pinged(n=1)) == Pinged(n=1)
    assert fn.examples == [Pinged(n=1)]


def test_reserved_routes_are_refused() -> None:
    fn = Function("api")
    for rule in ("/", "/metrics", "/health/liveness", "orders"):
        with pytest.raises(ValueError, match="reserved|must start"):
            fn.route(rule)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"subject": ""}, "subject"),
        ({"partitionkey": ""}, "partitionkey"),
        ({"extensions": {"UPPER": "x"}}, "extension name"),
        ({"extensions": {"waytoolongextensionname": "x"}}, "extension name"),
        ({"extensions": {"traceparent": "x"}}, "set by the runtime"),
        ({"extensions": {"n": 1}}, "must be a string"),
    ],
)
def test_reply_options_are_validated(kwargs: dict[str, object], needle: str) -> None:
    with pytest.raises((ValueError, TypeError), match=needle):
        Reply(Ponged(n=1), **kwargs)  # type: ignore[arg-type]


def test_reply_needs_a_bound_event() -> None:
    with pytest.raises(TypeError):
        Reply({"n": 1})  # type: ignore[arg-type]


def test_public_api_is_small_and_importable() -> None:
    import cascade

    for name in cascade.__all__:
        assert getattr(cascade, name) is not None
    with pytest.raises(AttributeError):
        cascade.nope  # type: ignore[attr-defined]  # noqa: B018
