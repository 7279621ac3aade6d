"""One chaos run: start the shop, place orders through faults and kills, settle, check."""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from scripts.kafka_server import tansu_broker
from scripts.nats_server import NatsServer
from sqlalchemy import create_engine, text

from bench._report import machine_info, source_revision, utc_now, write_json
from bench.chaos.checks import Stores, Verdict, broker_topology, check, open_broker_log
from bench.chaos.load import Clients, OrderSpec, make_orders, stock_for
from bench.chaos.rss import RssSampler
from bench.chaos.smtp import RefusingSmtp

__all__ = ["ChaosOptions", "ChaosResult", "main", "run_chaos"]

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "k8s" / "rendered" / "shop.yaml"
FUNCTIONS = ("order", "dead-letter", "inventory", "notification", "payment")
TARGETS = ("broker", *FUNCTIONS)
MIN_KILL_GAP_S = 3.0  # kills left over when the placing ends are spread, not fired at once
DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@dataclass(frozen=True)
class ChaosOptions:
    orders: int = 10_000
    kills: int = 20
    seed: int = 1
    log: str = "sqlite"
    state: str = "sqlite"
    clients: int = 8
    postgres_url: str = DEFAULT_POSTGRES
    results: Path = ROOT / "bench" / "results"
    keep: bool = False  # keep the data directory for a post-mortem
    progress_every: float = 10.0


def say(text_: str) -> None:
    print(f"chaos: {text_}", flush=True)


# --- the pieces around cascade run ------------------------------------------------------


@contextlib.contextmanager
def fresh_schema(base_url: str) -> Iterator[str]:
    """A new PostgreSQL schema for this run's stores (dropped afterwards); its URL."""
    engine = create_engine(base_url)
    schema = f"chaos_{uuid.uuid4().hex[:12]}"
    with engine.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in base_url else "?"
    try:
        yield f"{base_url}{separator}options={quote(f'-csearch_path={schema}')}"
    finally:
        with engine.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


def http_json(method: str, url: str, body: Any = None, timeout: float = 10.0) -> Any:
    rest = url.split("://", 1)[1]
    host_port, _, path = rest.partition("/")
    host, port = host_port.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        payload = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if payload else {}
        connection.request(method, "/" + path, payload, headers)
        response = connection.getresponse()
        data = response.read()
        if response.status >= 400:
            raise OSError(f"{method} {url}: {response.status} {data[:200]!r}")
        return json.loads(data) if data.strip() else None
    finally:
        connection.close()


@dataclass
class Shop:
    """The ``cascade run`` process of this chaos run and what run.json says about it."""

    data_dir: Path
    process: subprocess.Popen[bytes]
    output: Path

    def state(self) -> dict[str, Any]:
        document: dict[str, Any] = json.loads((self.data_dir / "run.json").read_text())
        return document

    def url(self, name: str) -> str:
        state = self.state()
        return str(state["broker"]["url"] if name == "broker" else state["functions"][name]["url"])

    def pids(self) -> dict[str, int]:
        state = self.state()
        pids = {name: int(fn["pid"]) for name, fn in state["functions"].items()}
        return {"broker": int(state["broker"]["pid"]), **pids}

    def restarts(self) -> int:
        state = self.state()
        return int(state["broker"].get("restarts", 0)) + sum(
            int(fn.get("restarts", 0)) for fn in state["functions"].values()
        )

    def triggers(self) -> list[dict[str, Any]]:
        # Slow on a Kafka log: every partition's end offset is asked of the cluster.
        result: list[dict[str, Any]] = http_json(
            "GET", self.url("broker") + "/-/triggers", timeout=60.0
        )
        return result

    def lag(self) -> int:
        return sum(int(t["lag"]) for t in self.triggers())

    def events(self) -> int:
        return sum(int(p["end_offset"]) for p in self.triggers()[0]["partitions"])

    def alive(self) -> bool:
        return self.process.poll() is None


def start_shop(
    workdir: Path, env: dict[str, str], log_args: Sequence[str], timeout: float = 180.0
) -> Shop:
    data_dir = workdir / "data"
    output = workdir / "cascade-run.out"
    argv = [
        str(Path(sys.executable).with_name("cascade")),
        "run",
        "--manifests", str(MANIFESTS),
        "--functions-dir", str(ROOT / "functions"),
        "--data-dir", str(data_dir),
        "--port", "0",
        "--base-port", "0",
        "--no-console",
        "--quiet",
        *log_args,
    ]  # fmt: skip
    with output.open("wb") as sink:
        process = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
    shop = Shop(data_dir, process, output)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"cascade run exited with {process.returncode}:\n{tail(output)}")
        with contextlib.suppress(OSError, ValueError):
            if shop.state().get("pid") == process.pid:
                return shop
        time.sleep(0.5)
    raise RuntimeError(f"cascade run was not ready after {timeout:g} s:\n{tail(output)}")


def shop_env(workdir: Path, seed_stock: dict[str, int]) -> dict[str, str]:
    """This environment without telemetry settings of its own (``cascade run`` sets those),
    no colours, and the inventory seeded with ``seed_stock`` (a ``stock.json`` in ``workdir``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PROMETHEUS"))}
    env["NO_COLOR"] = "1"
    stock_file = workdir / "stock.json"
    stock_file.write_text(json.dumps(seed_stock))
    env["INVENTORY_STOCK_FILE"] = str(stock_file)
    return env


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(cannot read {path}: {exc})"


# --- chaos while the orders stream in -------------------------------------------------------


@dataclass
class Chaos:
    """Faults by phase of the placing (share of orders placed) and kills at random moments."""

    shop: Shop
    smtp: RefusingSmtp
    rng: random.Random
    kills_planned: int
    seed: int
    kills: list[dict[str, Any]] = field(default_factory=list)
    phases: list[str] = field(default_factory=list)
    _moments: list[float] = field(default_factory=list)
    _targets: list[str] = field(default_factory=list)
    _last_kill: float = 0.0

    def __post_init__(self) -> None:
        self._moments = sorted(self.rng.uniform(0.05, 0.95) for _ in range(self.kills_planned))
        rounds = -(-self.kills_planned // len(TARGETS))
        targets = [t for _ in range(rounds) for t in self.rng.sample(TARGETS, len(TARGETS))]
        self._targets = targets[: self.kills_planned]

    def at(self, share: float) -> None:
        """Bring faults and kills up to ``share`` (0..1) of the orders placed."""
        phase = self._phase(share)
        if not self.phases or self.phases[-1] != phase:
            self._apply(phase)
            self.phases.append(phase)
        while self._moments and self._moments[0] <= share:
            self._moments.pop(0)
            self._kill(self._targets.pop(0))

    @staticmethod
    def _phase(share: float) -> str:
        if share < 0.15:
            return "calm"
        if share < 0.40:
            return "payment errors 30%, smtp refuses 20%"
        if share < 0.55:
            return "payment hangs 5%, smtp refuses 20%"
        if share < 0.75:
            return "payment errors 10%"
        return "calm"

    def _apply(self, phase: str) -> None:
        payment = self.shop.url("payment") + "/faults"
        say(f"faults: {phase}")
        for attempt in range(30):  # payment may be restarting
            try:
                if phase.startswith("payment errors"):
                    rate = 0.3 if "30%" in phase else 0.1
                    http_json("PUT", payment, {"rate": rate, "mode": "error", "seed": self.seed})
                elif phase.startswith("payment hangs"):
                    body = {"rate": 0.05, "mode": "hang", "hang_seconds": 3.0, "seed": self.seed}
                    http_json("PUT", payment, body)
                else:
                    http_json("DELETE", payment)
                break
            except OSError:
                time.sleep(0.5 + attempt * 0.1)
        self.smtp.refuse(0.2 if "smtp" in phase else 0.0, permanent_share=0.1)

    def _kill(self, target: str) -> None:
        if self._last_kill and time.monotonic() - self._last_kill < MIN_KILL_GAP_S:
            time.sleep(MIN_KILL_GAP_S - (time.monotonic() - self._last_kill))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # not while it is already down (in back-off)
            pid = self.shop.pids()[target]
            if _alive(pid):
                break
            time.sleep(0.5)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)  # the master alone, like the OOM killer or a crash
        self._last_kill = time.monotonic()
        self.kills.append({"target": target, "pid": pid, "at": utc_now()})
        say(f"kill -9 {target} (pid {pid}), kill {len(self.kills)}/{self.kills_planned}")

    def off(self) -> None:
        self._apply("calm")


def _alive(pid: int) -> bool:
    try:
        return b"cascade" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


# --- settling -----------------------------------------------------------------------------


def wait_idle(shop: Shop, timeout: float) -> bool:
    """Until the broker has nothing in flight for three polls in a row."""
    deadline = time.monotonic() + timeout
    quiet = 0
    while time.monotonic() < deadline:
        try:
            quiet = quiet + 1 if shop.lag() == 0 else 0
        except (OSError, ValueError, KeyError, IndexError):
            quiet = 0
        if quiet >= 3:
            return True
        time.sleep(1.0)
    return False


def wait_orders_final(shop: Shop, stores: Stores, timeout: float) -> int:
    """Until no order is PENDING and the broker is idle (bounded); the PENDING count left.

    The broker being idle is not enough: a kill -9 of the order function leaves the events its
    relay had claimed in the outbox until the claim's lease runs out, then another relay sends
    them."""
    deadline = time.monotonic() + timeout
    pending = -1
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):  # a busy store: ask again
            (pending,) = stores.query(
                "order", "SELECT COUNT(*) FROM orders WHERE state = 'PENDING'"
            )[0]
        if pending == 0 and wait_idle(shop, 60):
            break
        time.sleep(2.0)
    say(f"orders still PENDING: {pending}")
    return int(pending)


def replay_dead_letters(shop: Shop) -> str:
    """One ``cascade dlq replay --all``, as an operator would once the faults are gone."""
    cascade = str(Path(sys.executable).with_name("cascade"))
    result = subprocess.run(
        [cascade, "dlq", "--data-dir", str(shop.data_dir), "replay", "--all"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        env={**os.environ, "NO_COLOR": "1"},
    )
    last = (result.stdout.strip().splitlines() or [result.stderr.strip()])[-1]
    say(f"dlq replay (exit {result.returncode}): {last}")
    wait_idle(shop, 300)
    return last


# --- the run ------------------------------------------------------------------------------


@dataclass
class ChaosResult:
    verdict: Verdict
    figures: dict[str, Any]
    accepted: dict[str, OrderSpec]  # what the clients were answered: the checks' input
    seed_stock: dict[str, int]
    workdir: Path


def run_chaos(options: ChaosOptions) -> ChaosResult:
    rng = random.Random(options.seed)
    orders = make_orders(options.orders, rng)
    seed_stock = stock_for(orders)
    workdir = Path(tempfile.mkdtemp(prefix="cascade-chaos-"))
    say(
        f"{options.orders} orders, {options.kills} kills, seed {options.seed}, log "
        f"{options.log}, state {options.state}, in {workdir}"
    )
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        env = shop_env(workdir, seed_stock)
        smtp = RefusingSmtp(workdir / "mailbox.sqlite3", options.seed)
        env["SMTP_URL"] = smtp.start()
        stack.callback(smtp.stop)
        database_url = None
        if options.state == "postgres":
            database_url = stack.enter_context(fresh_schema(options.postgres_url))
            env["DATABASE_URL"] = database_url
        log_args = ["--log", options.log]
        bootstrap = None
        nats_url = None
        if options.log == "kafka":
            bootstrap = stack.enter_context(tansu_broker())
            log_args += ["--bootstrap-servers", bootstrap]
        elif options.log == "nats":
            # A server of its own: the stream of an earlier run must not count in the checks.
            nats_url = stack.enter_context(NatsServer()).url
            log_args += ["--nats-url", nats_url]
        shop = start_shop(workdir, env, log_args)
        stack.callback(stop_shop, shop)
        say(f"shop ready in {time.monotonic() - started:.1f} s; placing orders")

        sampler = RssSampler(leaders=shop.pids, events=shop.events)
        sampler.start()
        stack.callback(sampler.stop)
        clients = Clients(orders, options.clients, lambda: shop.url("order"))
        chaos = Chaos(shop, smtp, rng, options.kills, options.seed)
        placing_started = time.monotonic()
        clients.start()
        next_report = time.monotonic() + options.progress_every
        while not clients.join(0.5):
            if not shop.alive():
                raise RuntimeError(f"cascade run stopped:\n{tail(shop.output)}")
            chaos.at(clients.placed / options.orders)
            if time.monotonic() >= next_report:
                next_report += options.progress_every
                _report_progress(shop, clients, chaos, options, placing_started, sampler)
        placing_s = time.monotonic() - placing_started
        chaos.at(1.0)
        chaos.off()
        say(f"placed {clients.placed} orders in {placing_s:.0f} s; faults off, settling")
        idle = wait_idle(shop, 600)
        replay = replay_dead_letters(shop)
        stores = Stores(shop.data_dir, database_url)
        pending = wait_orders_final(shop, stores, 300)
        settled_s = time.monotonic() - placing_started
        events = shop.events()
        restarts = shop.restarts()
        sampler.stop()
        code = stop_shop(shop)  # a clean stop must work after all this (exit 0)
        say(f"stopped (exit {code}); checking the stores and the broker log")
        broker_log = open_broker_log(options.log, shop.data_dir, bootstrap, nats_url)
        try:
            verdict = check(
                accepted=clients.accepted,
                stores=stores,
                broker_log=broker_log,
                topology=broker_topology(MANIFESTS, list(FUNCTIONS)),
                mailbox=workdir / "mailbox.sqlite3",
                seed_stock=seed_stock,
            )
        finally:
            broker_log.close()
        if clients.failures:
            verdict.lost.extend(f"order key {k} was never accepted" for k in clients.failures)
        if code != 0:
            verdict.unresolved.append(f"cascade run exited with {code} on SIGINT")
        if not idle:
            verdict.unresolved.append("the broker did not become idle after the faults stopped")
    figures = {
        "orders": options.orders,
        "accepted": len(clients.accepted),
        "client_posts": clients.posts,
        "kills": chaos.kills,
        "restarts": restarts,
        "fault_phases": chaos.phases,
        "smtp_refused": smtp.refused,
        "dlq_replay": replay,
        "pending_after_settling": pending,
        "placing_s": round(placing_s, 1),
        "until_settled_s": round(settled_s, 1),
        "orders_per_s": round(len(clients.accepted) / placing_s, 1) if placing_s else None,
        "events": events,
        "events_per_s": round(events / settled_s, 1) if settled_s else None,
        "rss": sampler.report(warmup_events=max(1, events // 10)),
        "workdir": str(workdir),
    }
    if not options.keep and verdict.passed:
        shutil.rmtree(workdir, ignore_errors=True)
    return ChaosResult(verdict, figures, dict(clients.accepted), seed_stock, workdir)


def stop_shop(shop: Shop) -> int:
    if shop.process.poll() is None:
        shop.process.send_signal(signal.SIGINT)
        try:
            return shop.process.wait(180)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(shop.process.pid, signal.SIGKILL)
            shop.process.wait(10)
    return int(shop.process.returncode)


def _report_progress(
    shop: Shop,
    clients: Clients,
    chaos: Chaos,
    options: ChaosOptions,
    started: float,
    sampler: RssSampler,
) -> None:
    try:
        lag, restarts, events = shop.lag(), shop.restarts(), shop.events()
    except (OSError, ValueError, KeyError, IndexError):
        lag = restarts = events = -1  # the broker is restarting
    rss = sampler.samples[-1]["rss_kib"] if sampler.samples else {}
    memory = " ".join(f"{name} {kib // 1024}M" for name, kib in sorted(rss.items()))
    say(
        f"{time.monotonic() - started:6.0f} s  placed {clients.placed}/{options.orders}  "
        f"events {events}  lag {lag}  kills {len(chaos.kills)}/{options.kills}  "
        f"restarts {restarts}  rss {memory}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__)
    parser.add_argument("--orders", type=int, default=10_000)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--log", choices=("sqlite", "kafka", "nats"), default="sqlite")
    parser.add_argument("--state", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument(
        "--postgres-url", default=os.environ.get("CASCADE_TEST_POSTGRES_URL") or DEFAULT_POSTGRES
    )
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--keep", action="store_true", help="Keep the run's data directory.")
    args = parser.parse_args(argv)
    # Stop cleanly on SIGTERM, and on SIGINT even when started in the background (which
    # ignores it): the run, Tansu and the schema are undone by the ExitStack as the exit unwinds.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if args.orders < 1 or args.kills < 0 or args.clients < 1:
        parser.error("--orders and --clients must be >= 1, --kills >= 0")
    options = ChaosOptions(
        orders=args.orders,
        kills=args.kills,
        seed=args.seed,
        log=args.log,
        state=args.state,
        clients=args.clients,
        postgres_url=args.postgres_url,
        results=args.results,
        keep=args.keep,
    )
    started = time.monotonic()
    outcome = run_chaos(options)
    verdict, figures = outcome.verdict, outcome.figures
    line = final_line(verdict, len(figures["kills"]))
    result = {
        "benchmark": "chaos",
        "date": utc_now(),
        "elapsed_s": round(time.monotonic() - started, 1),
        "machine": machine_info(),
        "source": source_revision(ROOT),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in options.__dict__.items()},
        "verdict": verdict.summary(),
        "figures": figures,
        "line": line,
    }
    stamp = utc_now().replace(":", "").replace("-", "")
    path = options.results / f"chaos-{options.log}-{options.state}-{stamp}.json"
    write_json(path, result)
    print(f"results: {path}")
    print(line, flush=True)
    return 0 if verdict.passed else 1


def final_line(verdict: Verdict, kills: int) -> str:
    return (
        f"chaos: {verdict.orders} orders, {kills} kills, lost {len(verdict.lost)}, "
        f"double effects {len(verdict.double)}, unresolved {len(verdict.unresolved)}: "
        f"{'PASS' if verdict.passed else 'FAIL'}"
    )
