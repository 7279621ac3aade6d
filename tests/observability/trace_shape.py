"""The exact shape of an order's trace, derived from the shop's declaration, and of a real one.

Expected: :data:`functions.shop.topology.SAGAS` (what each handler answers) joined with the
Triggers of k8s/rendered/shop.yaml (who receives what, retries, dead-letter sinks), walked with
the trace convention of ARCHITECTURE.md:

- the order API's ``POST /orders`` SERVER span is the root; its ``send <type>`` PRODUCER span
  (the publish to K_SINK) is the event's origin, named by its CloudEvents ``traceparent``;
- the broker's ingress ``POST /<ns>/<broker>`` SERVER span is the child of the publish;
- per matching Trigger, one ``deliver <ns>/<trigger>`` CLIENT span per attempt, each the parent
  of the subscriber's ``process <type>`` CONSUMER span (linked to the origin);
- a reply is a broker ``send <type>`` PRODUCER span below the handler that answered, parent of
  the reply's deliveries;
- when the retries run out: one more ``deliver`` to the dead-letter sink, parent of the sink's
  catch-all handler's ``process <type>`` CONSUMER span (linked to the origin);
- a replay of a dead letter (``cascade dlq replay``) is a trace of its own: ``replay <type>``
  PRODUCER (service ``cascade-cli``, linked to the origin) → the subscriber's handler (linked to
  the origin) → ``send <reply>`` PRODUCER → the broker's ingress → deliveries as above.

Both sides become a canonical text tree (children sorted), so a difference reads as a diff.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from cascade.broker.topology import load_topology
from cascade.traces.store import StoredSpan
from cascade.traces.waterfall import TraceTree
from functions.shop.topology import ORIGIN, Origin, Saga

BROKER_SERVICE = "cascade-broker"
CLI_SERVICE = "cascade-cli"
ORIGIN_MARK = "↗origin"


@dataclass
class Node:
    service: str
    kind: str
    name: str
    detail: str = ""
    linked: bool = False  # links to the order's origin span (and nothing else)
    children: list[Node] = field(default_factory=list)

    def signature(self) -> str:
        text = f"{self.service}: {self.kind} {self.name}"
        if self.detail:
            text += f" [{self.detail}]"
        if self.linked:
            text += f" {ORIGIN_MARK}"
        return text

    def add(self, child: Node) -> Node:
        self.children.append(child)
        return child

    def count(self) -> int:
        return 1 + sum(child.count() for child in self.children)


def canonical(node: Node, depth: int = 0) -> str:
    """The tree as indented lines, siblings in a stable order (their own canonical text)."""
    below = sorted(canonical(child, depth + 1) for child in node.children)
    return "\n".join(["  " * depth + node.signature(), *below])


@dataclass(frozen=True)
class Route:
    trigger: str  # "<namespace>/<name>"
    subscriber: str  # function name
    attempts: int  # 1 + retries
    sink: str | None  # function name of the dead-letter sink


@dataclass(frozen=True)
class Routes:
    """Who receives each event type, from the Triggers of the manifests."""

    namespace: str
    broker: str
    by_type: Mapping[str, tuple[Route, ...]]

    @classmethod
    def from_manifests(
        cls, path: Path, functions: Iterable[str], event_types: Iterable[str]
    ) -> Routes:
        urls = {("default", name): f"http://{name}.local" for name in functions}
        topology = load_topology([path], service_urls=urls)
        ((namespace, broker),) = topology.brokers
        found: dict[str, list[Route]] = {}
        for event_type in event_types:
            attributes = {"specversion": "1.0", "id": "x", "source": "/x", "type": event_type}
            for trigger in topology.triggers:
                if trigger.subscriber_service is None or not trigger.filter.matches(attributes):
                    continue
                sink = trigger.delivery.dead_letter_sink
                found.setdefault(event_type, []).append(
                    Route(
                        f"{trigger.namespace}/{trigger.name}",
                        trigger.subscriber_service.name,
                        trigger.delivery.retry + 1,
                        (urlsplit(sink).hostname or "").removesuffix(".local") if sink else None,
                    )
                )
        return cls(namespace, broker, {k: tuple(v) for k, v in found.items()})

    @property
    def ingress(self) -> str:
        return f"POST /{self.namespace}/{self.broker}"

    def of(self, event_type: str) -> tuple[Route, ...]:
        return self.by_type.get(event_type, ())

    def route(self, trigger: str) -> Route:
        for routes in self.by_type.values():
            for route in routes:
                if route.trigger.split("/")[-1] == trigger.split("/")[-1]:
                    return route
        raise KeyError(f"no Trigger {trigger!r} in the manifests")


# --- expected -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Faults:
    """What went wrong on the way: failed attempts before success, or dead letters, by Trigger
    name (without namespace)."""

    failures: Mapping[str, int] = field(default_factory=dict)
    dead_lettered: frozenset[str] = frozenset()


def _deliveries(parent: Node, event_type: str, saga: Saga, routes: Routes, faults: Faults) -> None:
    """Children of the span under which ``event_type`` was stored in the log."""
    for route in routes.of(event_type):
        name = route.trigger.split("/")[-1]
        dead = name in faults.dead_lettered
        failed = route.attempts if dead else faults.failures.get(name, 0)
        if failed > route.attempts:
            raise ValueError(f"{name}: {failed} failures but only {route.attempts} attempts")
        for attempt in range(1, failed + 1):
            deliver = parent.add(_deliver(route, attempt, "503"))
            deliver.add(Node(route.subscriber, "consumer", f"process {event_type}", "retry", True))
        if dead:
            assert route.sink is not None, f"{name} has no dead-letter sink"
            deliver = parent.add(_deliver(route, 1, "204", sink=True))
            deliver.add(Node(route.sink, "consumer", f"process {event_type}", "done", True))
            continue
        reply = saga.reply_to(event_type, route.subscriber)
        deliver = parent.add(_deliver(route, failed + 1, "200" if reply else "204"))
        handler = deliver.add(
            Node(
                route.subscriber,
                "consumer",
                f"process {event_type}",
                "replied" if reply else "done",
                True,
            )
        )
        if reply is not None:
            stored = handler.add(Node(BROKER_SERVICE, "producer", f"send {reply}"))
            _deliveries(stored, reply, saga, routes, faults)


def _deliver(route: Route, attempt: int, status: str, *, sink: bool = False) -> Node:
    detail = f"attempt {attempt}, {status}" + (", dead-letter sink" if sink else "")
    return Node(BROKER_SERVICE, "client", f"deliver {route.trigger}", detail)


def expected_order_trace(
    saga: Saga, routes: Routes, faults: Faults = Faults(), origin: Origin = ORIGIN
) -> Node:
    root = Node(origin.function, "server", f"{origin.method} {origin.route}", "201")
    publish = root.add(Node(origin.function, "producer", f"send {origin.event_type}", "202"))
    ingress = publish.add(Node(BROKER_SERVICE, "server", routes.ingress, "202"))
    _deliveries(ingress, origin.event_type, saga, routes, faults)
    return root


def expected_replay_trace(
    saga: Saga, routes: Routes, trigger: str, event_type: str, faults: Faults = Faults()
) -> Node:
    """A dead letter of ``event_type`` that failed at ``trigger``, replayed once, succeeding."""
    route = routes.route(trigger)
    reply = saga.reply_to(event_type, route.subscriber)
    root = Node(CLI_SERVICE, "producer", f"replay {event_type}", "200" if reply else "204", True)
    handler = root.add(
        Node(
            route.subscriber,
            "consumer",
            f"process {event_type}",
            "replied" if reply else "done",
            True,
        )
    )
    if reply is not None:
        sent = handler.add(Node(CLI_SERVICE, "producer", f"send {reply}", "202"))
        ingress = sent.add(Node(BROKER_SERVICE, "server", routes.ingress, "202"))
        _deliveries(ingress, reply, saga, routes, faults)
    return root


# --- actual ---------------------------------------------------------------------------------

_KINDS = {1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}


def _detail(span: StoredSpan) -> str:
    attributes = span.attributes
    status = attributes.get("http.response.status_code")
    if span.name.startswith("deliver "):
        text = f"attempt {attributes.get('cascade.delivery.attempt')}, {status}"
        if attributes.get("cascade.delivery.target") == "dead-letter sink":
            text += ", dead-letter sink"
        return text
    outcome = attributes.get("cascade.outcome")
    if outcome is not None:
        return {"acked": "done", "dropped": "done"}.get(str(outcome), str(outcome))
    return "" if status is None else str(status)


@dataclass(frozen=True)
class Actual:
    tree: Node | None
    problems: tuple[str, ...]


def actual_trace(spans: Sequence[StoredSpan], origin: tuple[str, str]) -> Actual:
    """The real trace as a :class:`Node` tree; ``problems`` lists orphans, extra roots and links
    that go anywhere but ``origin`` (trace id, span id)."""
    problems = []
    tree = TraceTree.of(spans)
    trace_ids = {span.trace_id for span in spans}
    if len(trace_ids) != 1:
        problems.append(f"spans of several traces: {sorted(trace_ids)}")
    for span_id in sorted(tree.orphans):
        problems.append(f"span {span_id} is orphaned (its parent is not in the trace)")
    if len(tree.roots) != 1:
        problems.append(f"{len(tree.roots)} roots: {[r.name for r in tree.roots]}")

    def build(span: StoredSpan) -> Node:
        links = [(link.trace_id, link.span_id) for link in span.links]
        if links and links != [origin]:
            problems.append(f"{span.service} {span.name} links to {links}, not {origin}")
        node = Node(
            span.service,
            _KINDS.get(span.kind, str(span.kind)),
            span.name,
            _detail(span),
            links == [origin],
        )
        node.children = [build(child) for child in tree.children.get(span.span_id, ())]
        return node

    root = build(tree.roots[0]) if tree.roots else None
    return Actual(root, tuple(problems))


def difference(expected: Node, actual: Node | None) -> str:
    """A unified diff of the two canonical trees ('' when they are equal)."""
    want = canonical(expected).splitlines()
    got = canonical(actual).splitlines() if actual is not None else []
    if want == got:
        return ""
    return "\n".join(difflib.unified_diff(want, got, "expected", "actual", lineterm=""))
