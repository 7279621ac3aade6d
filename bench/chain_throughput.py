"""Orders per second through the whole shop under ``cascade run``: the order API, the broker
(sqlite log) and every function, with their default settings.

Concurrent clients place in-stock orders (``POST /orders`` on the order API); the harness
polls the order function's store until every order is CONFIRMED or CANCELLED and the broker is
idle, then reports confirmed orders/s, order-to-CONFIRMED latency, CPU per order of each
process tree and, from the spans the run keeps, the cost of each hop (bench/_hops.py).
docs/benchmarks.md describes the method and the flags.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from bench._cli import RESULTS_DIR, _positive_int, add_out_flag, results_path
from bench._hops import hops_of
from bench._report import (
    Floor,
    machine_info,
    markdown_table,
    percentile,
    progress,
    source_revision,
    utc_now,
    write_json,
)
from bench._servers import REPO_ROOT, process_tree_cpu_s
from bench.chaos.checks import Stores
from bench.chaos.load import Clients, OrderSpec, in_stock_orders, stock_for
from bench.chaos.run import Shop, shop_env, start_shop, stop_shop, wait_idle
from cascade.traces.store import STORE_FILE, SpanStore

__all__ = ["ChainOptions", "main", "run_chain"]

NAME = "chain_throughput"
TARGET_ORDERS_PER_S = 200.0
FINAL_STATES = ("CONFIRMED", "CANCELLED")


@dataclass(frozen=True)
class ChainOptions:
    orders: int = 2000
    clients: int = 16
    warmup_orders: int = 100
    seed: int = 1
    quick: bool = False
    out: Path = RESULTS_DIR / f"{NAME}.json"
    keep: bool = False  # keep the data directory (logs, stores, traces) afterwards
    progress_every_s: float = 2.0


def _parse(argv: Sequence[str] | None) -> ChainOptions:
    parser = argparse.ArgumentParser(prog=f"python -m bench.{NAME}", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 200 orders after 20 warm-up orders"
    )
    parser.add_argument(
        "--orders", type=_positive_int, metavar="N", help="measured orders (default 2000)"
    )
    parser.add_argument(
        "--clients",
        type=_positive_int,
        default=16,
        metavar="N",
        help="concurrent clients placing orders (default 16)",
    )
    parser.add_argument(
        "--warmup-orders",
        type=int,
        metavar="N",
        help="orders placed and finished before the measured ones (default 100, quick 20; "
        "0 skips the warm-up)",
    )
    parser.add_argument(
        "--seed", type=int, default=1, metavar="N", help="seed of the orders' items (default 1)"
    )
    add_out_flag(parser, NAME)
    parser.add_argument(
        "--keep", action="store_true", help="keep the run's data directory (stores, logs, traces)"
    )
    args = parser.parse_args(argv)
    if args.warmup_orders is not None and args.warmup_orders < 0:
        parser.error(f"--warmup-orders must be >= 0, got {args.warmup_orders}")
    quick = bool(args.quick)
    return ChainOptions(
        orders=args.orders or (200 if quick else 2000),
        clients=args.clients,
        warmup_orders=args.warmup_orders
        if args.warmup_orders is not None
        else (20 if quick else 100),
        seed=args.seed,
        quick=quick,
        out=results_path(args.out, NAME, quick),
        keep=args.keep,
    )


# --- measuring ----------------------------------------------------------------------------


def _cpu_by_process(shop: Shop) -> dict[str, float]:
    """CPU seconds so far of each process tree; ``cascade run`` is its own process alone (the
    span receiver, the supervisor), its children counted under their names."""
    by_name = {name: process_tree_cpu_s(pid) for name, pid in shop.pids().items()}
    by_name["cascade run"] = process_tree_cpu_s(shop.process.pid) - sum(by_name.values())
    return by_name


def _states(stores: Stores, ids: set[str]) -> dict[str, tuple[str, str, str]]:
    """id -> (state, created_at, updated_at) of the orders ``ids``, read from the order store."""
    with contextlib.suppress(Exception):  # the store is busy: the next poll asks again
        rows = stores.query("order", "SELECT id, state, created_at, updated_at FROM orders")
        return {str(r[0]): (str(r[1]), str(r[2]), str(r[3])) for r in rows if r[0] in ids}
    return {}


def _place_and_settle(
    shop: Shop,
    orders: list[OrderSpec],
    clients: int,
    label: str,
    every_s: float,
) -> tuple[Clients, dict[str, tuple[str, str, str]], float]:
    """Place ``orders``, poll until each accepted one is final; (clients, states, placing s)."""
    stores = Stores(shop.data_dir)
    placing = Clients(orders, clients, lambda: shop.url("order"))
    started = time.monotonic()
    placing.start()
    placed_s: float | None = None
    states: dict[str, tuple[str, str, str]] = {}
    deadline = started + 120.0 + len(orders) / 2.0  # generous: 2 orders/s at the worst
    next_report = started + every_s
    while time.monotonic() < deadline:
        if not shop.alive():
            raise RuntimeError("cascade run stopped while the orders were placed")
        done_placing = placing.join(0.25)
        if done_placing and placed_s is None:
            placed_s = time.monotonic() - started
        ids = set(placing.accepted)
        states = _states(stores, ids) if ids else {}
        final = sum(1 for s in states.values() if s[0] in FINAL_STATES)
        if time.monotonic() >= next_report or (placed_s is not None and final == len(ids)):
            next_report += every_s
            confirmed = sum(1 for s in states.values() if s[0] == "CONFIRMED")
            progress(
                f"{label}: {time.monotonic() - started:6.1f} s  placed {len(ids)}/{len(orders)}  "
                f"confirmed {confirmed}  final {final}"
            )
        if placed_s is not None and final == len(ids):
            break
        if done_placing:
            time.sleep(0.25)  # join() no longer waits: poll the store at the same pace
    return placing, states, placed_s if placed_s is not None else time.monotonic() - started


def _wait_spans(store_path: Path, timeout_s: float = 30.0) -> int:
    """Until the span store stops growing (the exporters flush every 0.5 s); the span count."""
    deadline = time.monotonic() + timeout_s
    counts: list[int] = []
    while time.monotonic() < deadline:
        with SpanStore(store_path, readonly=True) as store:
            counts.append(store.count())
        if len(counts) >= 3 and counts[-1] == counts[-3]:
            break
        time.sleep(1.0)
    return counts[-1] if counts else 0


def _timestamp(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def order_figures(states: dict[str, tuple[str, str, str]]) -> dict[str, Any]:
    """Confirmed orders/s (first order placed -> last confirmed, by the order function's own
    timestamps) and the latency of each confirmed order from placed to CONFIRMED."""
    confirmed = [(_timestamp(c), _timestamp(u)) for s, c, u in states.values() if s == "CONFIRMED"]
    latencies_ms = [(u - c) * 1000.0 for c, u in confirmed]
    window_s = (max(u for _, u in confirmed) - min(c for c, _ in confirmed)) if confirmed else 0.0
    return {
        "confirmed": len(confirmed),
        "cancelled": sum(1 for s, _, _ in states.values() if s == "CANCELLED"),
        "pending": sum(1 for s, _, _ in states.values() if s not in FINAL_STATES),
        "window_s": round(window_s, 3),
        "confirmed_per_s": round(len(confirmed) / window_s, 1) if window_s > 0 else 0.0,
        "latency_ms": {
            "p50": round(percentile(latencies_ms, 50), 1),
            "p99": round(percentile(latencies_ms, 99), 1),
            "max": round(percentile(latencies_ms, 100), 1),
        },
    }


def run_chain(options: ChainOptions, say: Callable[[str], None] = progress) -> dict[str, Any]:
    """Start the shop, warm it up, measure ``options.orders`` orders; the figures."""
    rng = random.Random(options.seed)
    warmup = in_stock_orders(options.warmup_orders, rng)
    orders = in_stock_orders(options.orders, rng)
    workdir = Path(tempfile.mkdtemp(prefix="cascade-chain-"))
    say(f"{options.orders} orders from {options.clients} clients, in {workdir}")
    with contextlib.ExitStack() as stack:
        shop = start_shop(
            workdir, shop_env(workdir, stock_for(warmup + orders)), ["--log", "sqlite"]
        )
        stack.callback(stop_shop, shop)
        say(f"shop ready: {', '.join(f'{n} pid {p}' for n, p in shop.pids().items())}")
        if warmup:
            _place_and_settle(shop, warmup, options.clients, "warm-up", options.progress_every_s)
            wait_idle(shop, 60)
        cpu_before = _cpu_by_process(shop)
        clients, states, placing_s = _place_and_settle(
            shop, orders, options.clients, "measured", options.progress_every_s
        )
        idle = wait_idle(shop, 120)  # the deliveries after CONFIRMED count in the CPU too
        cpu = {k: v - cpu_before[k] for k, v in _cpu_by_process(shop).items()}
        spans = _wait_spans(shop.data_dir / STORE_FILE)
        with SpanStore(shop.data_dir / STORE_FILE, readonly=True) as store:
            hops = hops_of(store.spans(), set(clients.accepted))
        restarts = shop.restarts()
    figures = order_figures(states)
    finished = figures["confirmed"] + figures["cancelled"]
    per_order = max(1, finished)
    result = {
        **figures,
        "orders": options.orders,
        "accepted": len(clients.accepted),
        "not_accepted": len(clients.failures),
        "client_posts": clients.posts,
        "placing_s": round(placing_s, 2),
        "placed_per_s": round(len(clients.accepted) / placing_s, 1) if placing_s else 0.0,
        "broker_idle_after": idle,
        "restarts": restarts,
        "cpu_s": {k: round(v, 3) for k, v in cpu.items()},
        "cpu_ms_per_order": {k: round(v * 1000.0 / per_order, 3) for k, v in cpu.items()},
        "spans_in_store": spans,
        "hops": hops,
        "workdir": str(workdir),
    }
    if not options.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    return result


# --- reporting ----------------------------------------------------------------------------


def errors_of(result: dict[str, Any]) -> list[str]:
    """What makes the run wrong rather than slow: orders lost, unfinished, or restarts."""
    errors = []
    if result["not_accepted"]:
        errors.append(f"{result['not_accepted']} orders were never accepted by the order API")
    if result["pending"] or result["accepted"] != result["confirmed"] + result["cancelled"]:
        final = result["confirmed"] + result["cancelled"]
        errors.append(f"only {final} of {result['accepted']} accepted orders reached a final state")
    if result["cancelled"]:
        errors.append(f"{result['cancelled']} in-stock orders were CANCELLED")
    if result["restarts"]:
        errors.append(f"{result['restarts']} process restarts during the run")
    if not result["broker_idle_after"]:
        errors.append("the broker still had events in flight after the orders were final")
    return errors


def _ms(stats: dict[str, float] | None) -> str:
    return "-" if stats is None else f"{stats['p50']:.1f} / {stats['p99']:.1f}"


def tables(result: dict[str, Any], check: Floor) -> str:
    cpu_total = sum(result["cpu_ms_per_order"].values())
    cpu_rows = [
        [name, f"{ms:.2f}", f"{ms / cpu_total:.0%}" if cpu_total else "-"]
        for name, ms in sorted(result["cpu_ms_per_order"].items(), key=lambda kv: -kv[1])
    ]
    cpu_rows.append(["total", f"{cpu_total:.2f}", "100%"])
    hop_rows = [
        [
            h["hop"],
            str(h["count"]),
            _ms(h["wait_ms"]),
            _ms(h["attempt_ms"]),
            _ms(h["handler_ms"]),
            "-" if h["starts_after_ms"] is None else f"{h['starts_after_ms']:.0f}",
        ]
        for h in result["hops"]
    ]
    latency = result["latency_ms"]
    return "\n\n".join(
        [
            markdown_table(
                ["orders", "confirmed", "confirmed/s", "placed/s", "p50 ms", "p99 ms", "errors"],
                [
                    [
                        str(result["accepted"]),
                        str(result["confirmed"]),
                        f"{result['confirmed_per_s']:.1f}",
                        f"{result['placed_per_s']:.1f}",
                        f"{latency['p50']:.0f}",
                        f"{latency['p99']:.0f}",
                        str(len(result["errors"])),
                    ]
                ],
            ),
            markdown_table(["process (tree)", "CPU ms/order", "share"], cpu_rows),
            markdown_table(
                [
                    "hop",
                    "count",
                    "wait p50/p99 ms",
                    "attempt p50/p99 ms",
                    "handler p50/p99 ms",
                    "starts at ms",
                ],
                hop_rows,
            ),
            markdown_table(
                ["check", "value", "target", "verdict"],
                [[check.name, f"{check.value:.1f}", f">= {check.floor:g}", check.verdict]],
            ),
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    options = _parse(argv)
    # Stop cleanly on SIGTERM: the ExitStack stops cascade run as the exit unwinds.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    started = time.monotonic()
    result = run_chain(options)
    result["errors"] = errors_of(result)
    check = Floor("confirmed orders/s", result["confirmed_per_s"], TARGET_ORDERS_PER_S, "orders/s")
    payload = {
        "benchmark": NAME,
        "date": utc_now(),
        "elapsed_s": round(time.monotonic() - started, 1),
        "machine": machine_info(),
        "source": source_revision(REPO_ROOT),
        "settings": {
            "orders": options.orders,
            "clients": options.clients,
            "warmup_orders": options.warmup_orders,
            "seed": options.seed,
            "log": "sqlite",
        },
        "result": result,
        "checks": [check.as_dict()],
    }
    write_json(options.out, payload)
    print()
    print(tables(result, check))
    for error in result["errors"]:
        print(f"ERROR: {error}")
    print(f"\nresults: {options.out}", flush=True)
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
