"""The verdict of a chaos run, read from the functions' stores and the broker's log.

Nothing here trusts a counter of the chaos tool: the clients only say which orders the API
accepted (and of what kind); everything else is read back from where the system keeps it:

- the order store (``orders``): every accepted order present once, final in the state its kind
  dictates; one that is not final counts as explained when the dead-letter store holds a dead
  letter of it still waiting for a replay, else as unresolved (a replayed dead letter explains
  nothing: the replay should have finished the order);
- the inventory store (``inventory_stock``): seed = available + reserved + sold per SKU,
  nothing left reserved, and sold = the units of the confirmed orders;
- the payment store (``payment_decisions``) and the broker log's ``payment.authorized``
  events: one decision per order, at most one authorization id per order;
- the SMTP server's mailbox: one email (one Message-ID) per final order; a resent copy of the
  same message (kill -9 between the send and the commit) is counted on its own;
- the broker log against every function's dedupe records (``cascade_dedupe``) and the
  dead-letter store (``dead_letters``): each event the broker accepted reached every Trigger
  whose filter matches it (the subscriber committed it) or was dead-lettered from it; and each
  Trigger's committed offsets are at the end of the log.

The order outbox is not read: its table belongs to the runtime now and may be renamed; a
final order is proof its events were published.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from bench.chaos.load import KINDS, OrderSpec
from bench.chaos.smtp import mailbox_rows
from cascade.broker.event import Record
from cascade.broker.log.base import BrokerLog
from cascade.broker.log.factory import open_log
from cascade.broker.topology import Topology, load_topology

__all__ = ["Verdict", "broker_topology", "check"]

FINAL = ("CONFIRMED", "CANCELLED")
_SAMPLES = 10  # problems listed per kind in the result


@dataclass
class Verdict:
    orders: int
    lost: list[str] = field(default_factory=list)
    double: list[str] = field(default_factory=list)
    unresolved: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not (self.lost or self.double or self.unresolved)

    def summary(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "lost": len(self.lost),
            "double_effects": len(self.double),
            "unresolved": len(self.unresolved),
            "examples": {
                "lost": self.lost[:_SAMPLES],
                "double_effects": self.double[:_SAMPLES],
                "unresolved": self.unresolved[:_SAMPLES],
            },
            **self.figures,
        }


@dataclass(frozen=True)
class Stores:
    """Where each function keeps its state: SQLite files in the data directory, or one
    PostgreSQL database shared by all (``database_url``)."""

    data_dir: Path
    database_url: str | None = None

    def query(self, function: str, sql: str) -> list[Any]:
        url = self.database_url or f"sqlite:///{self.data_dir / f'{function}.sqlite3'}"
        engine = create_engine(url)
        try:
            with engine.connect() as connection:
                return list(connection.execute(text(sql)))
        finally:
            engine.dispose()


def broker_topology(manifests: Path, functions: list[str]) -> Topology:
    """The manifests as the broker reads them (the URLs do not matter here)."""
    urls = {("default", name): f"http://127.0.0.1/{name}" for name in functions}
    return load_topology([manifests], service_urls=urls)


def check(
    *,
    accepted: Mapping[str, OrderSpec],
    stores: Stores,
    broker_log: BrokerLog,
    topology: Topology,
    mailbox: Path,
    seed_stock: Mapping[str, int],
) -> Verdict:
    verdict = Verdict(orders=len(accepted))
    orders = _check_orders(verdict, accepted, stores)
    _check_stock(verdict, orders, stores, seed_stock)
    records = list(_all_records(broker_log))
    _check_payments(verdict, orders, stores, records)
    _check_emails(verdict, orders, mailbox)
    _check_deliveries(verdict, records, broker_log, topology, stores)
    return verdict


# --- orders --------------------------------------------------------------------------------


def _check_orders(
    verdict: Verdict, accepted: Mapping[str, OrderSpec], stores: Stores
) -> dict[str, tuple[str, str | None, list[dict[str, Any]]]]:
    rows = stores.query("order", "SELECT id, state, reason, items FROM orders")
    orders = {
        row[0]: (row[1], row[2], row[3] if isinstance(row[3], list) else json.loads(row[3]))
        for row in rows
    }
    dead = stores.query(
        "dead-letter",
        "SELECT order_id, type, error_code, reason, dest, replay_count FROM dead_letters",
    )
    waiting = {row[0] for row in dead if row[0] and row[5] == 0}
    explained = 0
    states: Counter[str] = Counter()
    for order_id, spec in accepted.items():
        if order_id not in orders:
            verdict.lost.append(f"order {order_id} ({spec.kind}) was accepted but is not stored")
            continue
        state, reason, _ = orders[order_id]
        states[state] += 1
        want_state, want_reason = KINDS[spec.kind]
        if state in FINAL:
            if state != want_state or (want_reason is not None and reason != want_reason):
                verdict.unresolved.append(
                    f"order {order_id} ({spec.kind}) ended {state}/{reason}, "
                    f"not {want_state}/{want_reason}"
                )
        elif order_id in waiting:
            explained += 1  # parked in the dead-letter queue with its reason
        else:
            verdict.unresolved.append(
                f"order {order_id} ({spec.kind}) is {state}, no dead letter waiting"
            )
    for order_id in orders.keys() - accepted.keys():
        verdict.double.append(f"order {order_id} is stored but no client was given it")
    verdict.figures["order_states"] = dict(states)
    verdict.figures["orders_explained_by_a_dead_letter"] = explained
    verdict.figures["dead_letters"] = len(dead)
    verdict.figures["dead_letters_by_type"] = dict(Counter(row[1] for row in dead))
    unexplained = [row for row in dead if not (row[4] and (row[2] or row[3] or row[4]))]
    for row in unexplained:
        verdict.unresolved.append(f"dead letter of {row[0]} ({row[1]}) names no destination")
    return orders


def _check_stock(
    verdict: Verdict,
    orders: Mapping[str, tuple[str, str | None, list[dict[str, Any]]]],
    stores: Stores,
    seed_stock: Mapping[str, int],
) -> None:
    sold_by_orders: Counter[str] = Counter()
    for state, _, items in orders.values():
        if state == "CONFIRMED":
            for item in items:
                sold_by_orders[item["sku"]] += int(item["quantity"])
    rows = stores.query(
        "inventory", "SELECT sku, seed, available, reserved, sold FROM inventory_stock"
    )
    stock = {}
    for sku, seed, available, reserved, sold in rows:
        stock[sku] = {"seed": seed, "available": available, "reserved": reserved, "sold": sold}
        if seed != seed_stock.get(sku, seed) or available + reserved + sold != seed:
            verdict.lost.append(f"stock of {sku} not conserved: {stock[sku]}")
        if reserved:
            verdict.unresolved.append(f"{reserved} units of {sku} still reserved at the end")
        if sold > sold_by_orders[sku]:
            verdict.double.append(
                f"{sku}: {sold} sold, confirmed orders hold {sold_by_orders[sku]}"
            )
        elif sold < sold_by_orders[sku]:
            verdict.lost.append(f"{sku}: {sold} sold, confirmed orders hold {sold_by_orders[sku]}")
    verdict.figures["stock"] = stock


# --- payments and emails -------------------------------------------------------------------


def _check_payments(
    verdict: Verdict,
    orders: Mapping[str, tuple[str, str | None, list[dict[str, Any]]]],
    stores: Stores,
    records: list[Record],
) -> None:
    decisions = stores.query(
        "payment", "SELECT order_id, status, authorization_id FROM payment_decisions"
    )
    by_order = {row[0]: (row[1], row[2]) for row in decisions}
    authorizations: dict[str, set[str]] = defaultdict(set)
    for record in records:
        if record.event.attributes.get("type", "").endswith(".payment.authorized"):
            data = json.loads(record.event.data)
            authorizations[data["order_id"]].add(data["authorization_id"])
    for order_id, ids in authorizations.items():
        if len(ids) > 1:
            verdict.double.append(f"order {order_id} authorized {len(ids)} times: {sorted(ids)}")
        stored = by_order.get(order_id)
        if stored is None or stored[0] != "AUTHORIZED" or stored[1] not in ids:
            verdict.double.append(f"order {order_id}: authorization {ids} is not the stored one")
    for order_id, (state, reason, _) in orders.items():
        decision = by_order.get(order_id)
        if state == "CONFIRMED" and (decision is None or decision[0] != "AUTHORIZED"):
            verdict.lost.append(f"order {order_id} CONFIRMED without an authorization: {decision}")
        if reason == "payment_declined" and (decision is None or decision[0] != "DECLINED"):
            verdict.lost.append(f"order {order_id} declined without a decision: {decision}")
    verdict.figures["payment_decisions"] = dict(Counter(row[1] for row in decisions))


def _check_emails(
    verdict: Verdict,
    orders: Mapping[str, tuple[str, str | None, list[dict[str, Any]]]],
    mailbox: Path,
) -> None:
    messages: dict[str, Counter[str]] = defaultdict(Counter)
    for order_id, message_id in mailbox_rows(mailbox):
        messages[order_id or "?"][message_id or "?"] += 1
    resent = 0
    for order_id, (state, _, _) in orders.items():
        got = messages.get(order_id, Counter())
        if state in FINAL and not got:
            verdict.lost.append(f"order {order_id} is {state} but no email reached the server")
        if len(got) > 1:
            verdict.double.append(f"order {order_id}: {len(got)} different emails {sorted(got)}")
        resent += sum(got.values()) - len(got)
    for order_id in messages.keys() - orders.keys():
        verdict.double.append(f"an email about {order_id}, which is not an order")
    verdict.figures["emails"] = sum(len(got) for got in messages.values())
    verdict.figures["emails_resent_same_message_id"] = resent


# --- the broker log ------------------------------------------------------------------------


def _all_records(log: BrokerLog) -> Iterator[Record]:
    for partition in range(log.partitions):
        offset, end = 0, log.end_offset(partition)
        while offset < end:
            batch = log.read(partition, offset, 500)
            if not batch:
                break
            yield from batch
            offset = batch[-1].offset + 1


def _check_deliveries(
    verdict: Verdict,
    records: list[Record],
    log: BrokerLog,
    topology: Topology,
    stores: Stores,
) -> None:
    handled: dict[str, set[tuple[str, str]]] = {}
    dead: set[tuple[str, str, str]] = {
        (row[0], row[1], row[2])
        for row in stores.query("dead-letter", "SELECT source, event_id, dest FROM dead_letters")
    }
    dead_events = {(source, event_id) for source, event_id, _ in dead}
    delivered = dead_lettered = 0
    for trigger in topology.triggers:
        service = trigger.subscriber_service
        if service is None:
            continue
        if service.name not in handled:
            rows = stores.query(
                service.name,
                "SELECT function, source, event_id FROM cascade_dedupe WHERE status < 300",
            )
            handled[service.name] = {(r[1], r[2]) for r in rows if r[0] == service.name}
        for record in records:
            attributes = record.event.attributes
            if not trigger.filter.matches(attributes):
                continue
            key = (attributes.get("source", ""), attributes.get("id", ""))
            if key in handled[service.name]:
                delivered += 1
            elif key in dead_events:
                dead_lettered += 1
            else:
                verdict.lost.append(
                    f"{attributes.get('type')} {key[1]} (partition {record.partition} offset "
                    f"{record.offset}) neither reached {trigger.name} nor was dead-lettered"
                )
        for partition in range(log.partitions):
            committed = log.committed(trigger.group, partition) or 0
            if committed < log.end_offset(partition):
                verdict.unresolved.append(
                    f"{trigger.name} committed {committed} of {log.end_offset(partition)} "
                    f"on partition {partition}"
                )
    verdict.figures["events_in_log"] = len(records)
    verdict.figures["events_by_type"] = dict(
        Counter(
            r.event.attributes.get("type", "?").rsplit(".", 2)[-2]
            + "."
            + r.event.attributes.get("type", "?").rsplit(".", 1)[-1]
            for r in records
        )
    )
    verdict.figures["trigger_deliveries_checked"] = delivered + dead_lettered
    verdict.figures["trigger_deliveries_dead_lettered"] = dead_lettered


def open_broker_log(
    kind: str,
    data_dir: Path,
    bootstrap_servers: str | None,
    nats_url: str | None = None,
    partitions: int = 10,
) -> BrokerLog:
    return open_log(
        kind,  # type: ignore[arg-type]
        namespace="default",
        broker="shop",
        partitions=partitions,
        data_dir=data_dir,
        bootstrap_servers=bootstrap_servers,
        nats_url=nats_url,
    )
