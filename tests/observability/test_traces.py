"""Trace contract: real orders under ``cascade run``, their traces equal to what the shop declares.

Each order's spans are read back from the run's own span store (its OTLP receiver) and
compared, edge for edge, with the tree derived from functions/shop/topology.py and the
Triggers (tests/observability/trace_shape.py): which span is the parent of which, which span
links to the order's origin, no orphan, one trace id from the order API to the last handler;
retries and the dead-letter hop included, and a replay as its own trace linked to the original.
"""

from __future__ import annotations

import pytest

from cascade.telemetry.tracing import CONVERSATION_ID
from cascade.traces.store import StoredSpan, spans_from_otlp
from functions.shop.topology import ORIGIN, SAGAS
from tests.e2e.harness import ShopRun, run_cli, wait_until
from tests.observability.conftest import Scenario, settled_traces
from tests.observability.trace_shape import (
    Node,
    Routes,
    actual_trace,
    canonical,
    difference,
    expected_order_trace,
    expected_replay_trace,
)
from tests.unit.telemetry.otlp_collector import Collector

pytestmark = pytest.mark.slow


def origin_of(spans: list[StoredSpan]) -> tuple[str, str]:
    """The order API's publish span: the origin every event of the order names."""
    (origin,) = [
        s for s in spans if s.service == ORIGIN.function and s.name == f"send {ORIGIN.event_type}"
    ]
    return origin.trace_id, origin.span_id


def check(expected: Node, spans: list[StoredSpan], origin: tuple[str, str]) -> None:
    actual = actual_trace(spans, origin)
    assert not actual.problems, "\n".join(actual.problems)
    diff = difference(expected, actual.tree)
    assert not diff, f"the trace differs from the declared one:\n{diff}\n\nexpected:\n" + canonical(
        expected
    )


@pytest.mark.parametrize(
    "name", ["confirmed", "out_of_stock", "declined", "retried", "dead_lettered"]
)
def test_an_order_is_one_trace_with_exactly_the_declared_edges(
    name: str, scenarios: dict[str, Scenario], shop: ShopRun, routes: Routes
) -> None:
    scenario = scenarios[name]
    expected = expected_order_trace(SAGAS[scenario.saga], routes, scenario.faults)
    wanted = [expected.count()] + ([1] if scenario.replayed else [])
    traces = settled_traces(shop, scenario.order_id, wanted)
    assert len(traces) == len(wanted), [len(t) for t in traces]
    spans = traces[0]
    check(expected, spans, origin_of(spans))
    # The order id is on every span but the API request that made it: one search finds it.
    assert all(s.attributes.get(CONVERSATION_ID) == scenario.order_id for s in spans[1:])
    assert spans[0].name == f"{ORIGIN.method} {ORIGIN.route}"


def test_a_replayed_dead_letter_is_a_new_trace_linked_to_the_original(
    scenarios: dict[str, Scenario], shop: ShopRun, routes: Routes
) -> None:
    scenario = scenarios["dead_lettered"]
    assert scenario.replayed is not None
    trigger, event_type = scenario.replayed
    saga = SAGAS[scenario.saga]
    original = expected_order_trace(saga, routes, scenario.faults)
    replay = expected_replay_trace(saga, routes, trigger, event_type)
    first, second = settled_traces(shop, scenario.order_id, [original.count(), replay.count()])
    assert first[0].trace_id != second[0].trace_id
    # Every link of the replay (its root and each handler) points at the original's origin.
    check(replay, second, origin_of(first))


def test_cascade_trace_shows_retries_the_dead_letter_hop_and_the_replay(
    scenarios: dict[str, Scenario], shop: ShopRun, routes: Routes
) -> None:
    retried = scenarios["retried"]
    failures = retried.faults.failures["payment-inventory-reserved"]
    settled_traces(
        shop,
        retried.order_id,
        [expected_order_trace(SAGAS["confirmed"], routes, retried.faults).count()],
    )
    shown = run_cli(
        "trace", retried.order_id[:8], "--data-dir", str(shop.data_dir), "--width", "20"
    )
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].startswith("trace ")
    assert f"order {retried.order_id}" in lines[0]
    retries = [line for line in lines if "deliver default/payment-inventory-reserved" in line]
    assert len(retries) == failures + 1
    for number, line in enumerate(retries, start=1):  # siblings are drawn by start time
        assert ("503" in line) == (number <= failures), line
        assert ("retry #" in line) == (number > 1), line
        assert number == 1 or f"retry #{number - 1}" in line, line

    parked = scenarios["dead_lettered"]
    shown = run_cli("trace", parked.order_id, "--data-dir", str(shop.data_dir))
    assert shown.returncode == 0, shown.stderr
    blocks = shown.stdout.split("\n\n")
    assert len(blocks) == 2
    assert "→ dead-letter sink" in blocks[0]
    assert "linked from trace" in blocks[0]
    assert "cascade-cli" in blocks[1]
    assert "links to trace" in blocks[1]


def test_every_span_is_also_forwarded_to_the_collector_named_in_the_environment(
    scenarios: dict[str, Scenario], shop: ShopRun, routes: Routes, forwarded: Collector
) -> None:
    scenario = scenarios["confirmed"]
    expected = expected_order_trace(SAGAS[scenario.saga], routes, scenario.faults)
    (spans,) = settled_traces(shop, scenario.order_id, [expected.count()])
    wanted = {(s.trace_id, s.span_id) for s in spans}

    def arrived() -> set[tuple[str, str]]:
        received = [span for _, body in list(forwarded.bodies) for span in spans_from_otlp(body)]
        return {(s.trace_id, s.span_id) for s in received} & wanted

    wait_until(lambda: arrived() == wanted, 30, "the forwarded spans")
