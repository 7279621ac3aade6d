"""Drive a real ``cascade run`` of the shop from the tests: start, place orders, wait, stop.

``cascade run`` is started from the repository root on free ports, in a temporary data
directory, in its own process group. Its children (broker, one gunicorn per function) run in
process groups of their own; their PIDs come from ``run.json``. Teardown kills every one of
those groups by PID. Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from bench._memory import child_pids as children_of

from tests.http_call import Answer, call

ROOT = Path(__file__).resolve().parents[2]
CASCADE = str(Path(sys.executable).with_name("cascade"))
SHOP_MANIFESTS = ROOT / "k8s" / "rendered" / "shop.yaml"
STOCK_SEED: dict[str, int] = json.loads(
    (ROOT / "functions" / "inventory" / "stock.json").read_text()
)
FINAL = ("CONFIRMED", "CANCELLED")
T = TypeVar("T")


# --- manifests ------------------------------------------------------------------------------


def fast_manifests(directory: Path, backoff_delay: str = "PT0.05S") -> Path:
    """A copy of k8s/rendered/shop.yaml whose retries back off from ``backoff_delay``, not 0.2 s.

    Everything else (retries, timeouts, ordering, sinks) stays as in the shop, so a test sees
    the same behaviour, only quicker: 5 retries from 0.05 s take about 3 s instead of 12 s.
    """
    documents = list(yaml.safe_load_all(SHOP_MANIFESTS.read_text()))
    for document in documents:
        if not isinstance(document, dict):
            continue
        delivery = (document.get("spec") or {}).get("delivery")
        if isinstance(delivery, dict) and "backoffDelay" in delivery:
            delivery["backoffDelay"] = backoff_delay
    path = directory / "shop-fast.yaml"
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return path


# --- HTTP -----------------------------------------------------------------------------------


def get_json(url: str, timeout: float = 30.0) -> Any:
    answer = call("GET", url, timeout=timeout)
    assert answer.status == 200, f"GET {url}: {answer.status} {answer.body[:300]!r}"
    return answer.json()


def send_json(method: str, url: str, document: object, timeout: float = 30.0) -> Answer:
    return call(
        method,
        url,
        json.dumps(document).encode(),
        {"Content-Type": "application/json"},
        timeout=timeout,
    )


def wait_until(
    probe: Callable[[], T | None], timeout: float, what: str, interval: float = 0.5
) -> T:
    """Call ``probe`` until it returns something truthy; AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = probe()
        except (OSError, http.client.HTTPException, AssertionError) as exc:
            value, last = None, exc
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what} (last error: {last})")


# --- the run --------------------------------------------------------------------------------


def _is_cascade(pid: int) -> bool:
    """Only signal PIDs that are still ours (a PID may be reused once its process is gone)."""
    try:
        return b"cascade" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


@dataclass
class ShopRun:
    data_dir: Path
    manifests: Path
    env: Mapping[str, str] = field(default_factory=dict)
    args: tuple[str, ...] = ()  # more `cascade run` options, e.g. the broker log's
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    child_pids: list[int] = field(default_factory=list)
    starts: int = 0

    @classmethod
    def in_dir(cls, base: Path) -> ShopRun:
        """The shop with fast retries, its data in ``base/data``, e-mails in ``base/outbox``."""
        return cls(
            data_dir=base / "data",
            manifests=fast_manifests(base),
            env={"NOTIFICATION_OUTBOX": str(base / "outbox")},
        )

    def start(self, timeout: float = 120.0) -> None:
        self.starts += 1
        self.log = self.data_dir.parent / f"run-{self.starts}.out"
        environment = {
            k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PROMETHEUS"))
        }
        environment.update(self.env)
        environment["NO_COLOR"] = "1"
        with self.log.open("wb") as sink:
            self.process = subprocess.Popen(
                [
                    CASCADE,
                    "run",
                    "--manifests",
                    str(self.manifests),
                    "--data-dir",
                    str(self.data_dir),
                    "--port",
                    "0",
                    "--base-port",
                    "0",
                    *self.args,
                ],
                cwd=ROOT,
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        process = self.process

        def ready() -> dict[str, Any] | None:
            if process.poll() is not None:
                raise RuntimeError(f"cascade run exited with {process.returncode}")
            state = self.state()
            return state if state and state.get("pid") == process.pid else None

        try:
            state = wait_until(ready, timeout, "cascade run to be ready")
        except (AssertionError, RuntimeError) as exc:
            raise AssertionError(f"{exc}\n{self.output()}") from None
        self.child_pids += [state["broker"]["pid"]] + [
            fn["pid"] for fn in state["functions"].values()
        ]

    def state(self) -> dict[str, Any] | None:
        try:
            document: dict[str, Any] = json.loads((self.data_dir / "run.json").read_text())
        except (OSError, ValueError):
            return None
        return document

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log else ""

    def running_state(self) -> dict[str, Any]:
        """run.json of the running `cascade run` (fails the test when it is not running)."""
        state = self.state()
        assert state is not None, "cascade run is not running"
        return state

    def url(self, function: str) -> str:
        return str(self.running_state()["functions"][function]["url"])

    def workers(self, function: str) -> list[int]:
        """The gunicorn workers of ``function`` (its `cascade serve` master's children)."""
        return children_of(int(self.running_state()["functions"][function]["pid"]))

    @property
    def broker(self) -> str:
        return str(self.running_state()["broker"]["url"])

    @property
    def ingress(self) -> str:
        return str(next(iter(self.running_state()["broker"]["ingress"].values())))

    def stop(self, signum: int = signal.SIGINT, timeout: float = 120.0) -> int:
        """Signal ``cascade run`` itself (as Ctrl-C would) and wait for it to exit."""
        assert self.process is not None
        self.process.send_signal(signum)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill_all()
            raise AssertionError(
                f"cascade run did not stop in {timeout} s\n{self.output()}"
            ) from None

    def kill_all(self) -> None:
        """SIGKILL every process of the run: the children's groups first, then the runner's."""
        for pid in self.child_pids:
            if _is_cascade(pid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        # gunicorn workers live in their master's group, so they are gone too; wait for
        # the ports and files to be let go.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_is_cascade(p) for p in self.child_pids):
            time.sleep(0.1)
        self.child_pids = [p for p in self.child_pids if _is_cascade(p)]


def running_shop(base: Path, *args: str, env: Mapping[str, str] | None = None) -> Iterator[ShopRun]:
    """For a fixture: the shop started in ``base`` (``args``: more `cascade run` options,
    ``env``: more environment); a clean stop is asserted, then it is killed."""
    run = ShopRun.in_dir(base)
    run.args = args
    run.env = {**run.env, **(env or {})}
    try:
        run.start()
        yield run
        assert run.stop() == 0, run.output()
    finally:
        run.kill_all()


# --- the shop -------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlacedOrder:
    id: str
    kind: str  # what the test expects: confirmed, out_of_stock, declined
    items: tuple[tuple[str, int], ...]


def place_order(
    order_url: str,
    items: Iterable[tuple[str, int]],
    *,
    customer: str = "cust-e2e",
    key: str | None = None,
    timeout: float = 60.0,
) -> str:
    """POST /orders with an Idempotency-Key, retried until the API answers; the order id."""
    body = {
        "customer": {"id": customer, "email": f"{customer}@example.com"},
        "items": [{"sku": sku, "quantity": quantity} for sku, quantity in items],
    }
    headers = {"Content-Type": "application/json", "Idempotency-Key": key or str(uuid.uuid4())}

    def attempt() -> str | None:
        answer = call("POST", f"{order_url}/orders", json.dumps(body).encode(), headers)
        if answer.status in (200, 201):
            return str(answer.json()["id"])
        assert answer.status == 503, f"POST /orders: {answer.status} {answer.body[:300]!r}"
        return None

    return wait_until(attempt, timeout, "POST /orders to be answered", interval=0.2)


def orders_by_state(order_url: str) -> dict[str, str]:
    """Every order (up to 500 per state) → its state."""
    states: dict[str, str] = {}
    for state in ("PENDING", *FINAL):
        document = get_json(f"{order_url}/orders?state={state}&limit=500")
        states.update({order["id"]: order["state"] for order in document["orders"]})
    return states


def broker_lag(broker: str) -> int:
    return sum(int(trigger["lag"]) for trigger in get_json(f"{broker}/-/triggers"))


def activity(broker: str) -> list[dict[str, Any]]:
    answer = call("GET", f"{broker}/-/activity?limit=2000")
    assert answer.status == 200
    return [json.loads(line) for line in answer.body.splitlines() if line.strip()]


def check_stock(inventory_url: str) -> dict[str, dict[str, int]]:
    """Conservation for every SKU; returns the counters by SKU."""
    document = get_json(f"{inventory_url}/stock")
    rows = {row["sku"]: row for row in document["skus"]}
    assert document["conserved"] is True
    for sku, seed in STOCK_SEED.items():
        row = rows[sku]
        assert row["seed"] == seed, row
        assert row["available"] + row["reserved"] + row["sold"] == seed, row
    return rows


def run_cli(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CASCADE, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "NO_COLOR": "1"},
    )
