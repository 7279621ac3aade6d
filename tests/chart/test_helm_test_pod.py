"""The `helm test` pod's script, taken from the render and run against the real order API (served
on 127.0.0.1 from functions/order), with the rest of the chain played by the test: it passes
when the order is CONFIRMED and fails, saying why, on CANCELLED, on a refused order and on a
timeout."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from werkzeug.serving import make_server

from cascade.settings import Settings
from cascade.testing import FunctionClient
from functions.shop import samples
from tests.chart.support import CHART, ROOT, documents, helm, of_kind
from tests.shop import load
from tests.unit.runtime.sink import Sink

RENDERED = ROOT / "k8s" / "rendered" / "shop.yaml"


class OrderApi:
    """functions/order over HTTP, its K_SINK a recording sink, plus the saga's last step."""

    def __init__(self, data_dir: Path) -> None:
        self.sink = Sink()
        self.client = FunctionClient(
            load("order").fn, Settings(data_dir=data_dir, sink=self.sink.url, publish_retries=0)
        )
        self.server = make_server("127.0.0.1", 0, self.client.app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def answer_first_order(self, outcome: str) -> threading.Thread:
        """In the background: wait for order.created at K_SINK, then deliver the payment result
        (as inventory and payment would through the Broker)."""

        def run() -> None:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                created = [
                    orjson.loads(body)
                    for headers, body in list(self.sink.requests)
                    if headers.get("ce-type") == "com.example.shop.order.created"
                ]
                if created:
                    order_id = created[0]["order_id"]
                    lines = {line["sku"]: line["quantity"] for line in created[0]["items"]}
                    event = (
                        samples.payment_authorized(order_id, lines)
                        if outcome == "authorized"
                        else samples.payment_declined(order_id)
                    )
                    result = self.client.send(event, partitionkey=order_id, source="/payment")
                    assert result.status == 200, result.body
                    return
                time.sleep(0.05)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=10)
        self.client.close()
        self.sink.close()


@pytest.fixture
def order_api(tmp_path: Path) -> Iterator[OrderApi]:
    api = OrderApi(tmp_path / "order")
    try:
        yield api
    finally:
        api.close()


@pytest.fixture(scope="module")
def test_pod(tools: Path, default_docs: list[dict[str, Any]]) -> dict[str, Any]:
    [pod] = of_kind(default_docs, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    return dict(pod["spec"]["containers"][0])


def run_test_pod(
    container: dict[str, Any], url: str, **env: str
) -> subprocess.CompletedProcess[str]:
    """The container's command, with ORDER_URL pointed at the local order API."""
    assert container["command"] == ["python", "-c"]
    values = {e["name"]: e["value"] for e in container["env"]}
    values.update({"ORDER_URL": url, "TIMEOUT_SECONDS": "20"}, **env)
    return subprocess.run(
        [sys.executable, "-c", container["args"][0]],
        env=values,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_rendered_pod_targets_the_order_service(test_pod: dict[str, Any]) -> None:
    env = {e["name"]: e["value"] for e in test_pod["env"]}
    assert env["ORDER_URL"] == "http://order.default.svc.cluster.local"
    assert env["SKU"] == "STICKER"
    assert test_pod["image"] == "cascade-order:0.1.0"


def test_passes_when_the_order_is_confirmed(test_pod: dict[str, Any], order_api: OrderApi) -> None:
    chain = order_api.answer_first_order("authorized")
    result = run_test_pod(test_pod, order_api.url)
    chain.join(timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "placed order" in result.stdout
    assert "CONFIRMED: PENDING (placed) -> CONFIRMED" in result.stdout


def test_fails_when_the_order_is_cancelled(test_pod: dict[str, Any], order_api: OrderApi) -> None:
    chain = order_api.answer_first_order("declined")
    result = run_test_pod(test_pod, order_api.url)
    chain.join(timeout=30)
    assert result.returncode == 1
    assert "is CANCELLED: PENDING (placed) -> CANCELLED" in result.stdout


def test_fails_at_once_when_the_order_is_refused(
    test_pod: dict[str, Any], order_api: OrderApi
) -> None:
    result = run_test_pod(test_pod, order_api.url, SKU="not a sku!")
    assert result.returncode == 1
    assert "FAILED: POST /orders answered 422" in result.stdout


def test_fails_when_the_order_stays_pending(test_pod: dict[str, Any], order_api: OrderApi) -> None:
    result = run_test_pod(test_pod, order_api.url, TIMEOUT_SECONDS="1")
    assert result.returncode == 1
    assert "still PENDING; see the Triggers and dead letters" in result.stdout


def test_retries_while_the_order_api_is_not_up(test_pod: dict[str, Any]) -> None:
    result = run_test_pod(test_pod, "http://127.0.0.1:9", TIMEOUT_SECONDS="2")
    assert result.returncode == 1
    assert "order API not ready" in result.stdout
    assert "FAILED: could not place an order at http://127.0.0.1:9/orders" in result.stdout


# ---------------------------------------------------------------------------- NOTES.txt


def render_notes(tmp_path: Path, *set_values: str) -> str:
    """NOTES.txt as `helm install` prints it (helm template skips NOTES: render a copy of the
    chart where a ConfigMap includes it)."""
    chart = tmp_path / "cascade"
    shutil.copytree(CHART, chart)
    notes = (chart / "templates" / "NOTES.txt").read_text(encoding="utf-8")
    (chart / "templates" / "_notes.tpl").write_text(
        '{{- define "cascade.notes" -}}\n' + notes + "{{- end -}}\n", encoding="utf-8"
    )
    (chart / "templates" / "notes.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\n"
        'data:\n  notes: {{ include "cascade.notes" . | quote }}\n',
        encoding="utf-8",
    )
    args = ["template", "cascade", str(chart), "-n", "shop", "--show-only", "templates/notes.yaml"]
    for assignment in set_values:
        args += ["--set", assignment]
    result = helm(*args)
    assert result.returncode == 0, result.stderr
    [config] = documents(result.stdout)
    return str(config["data"]["notes"])


def test_notes_tell_how_to_order_and_where_to_look(tools: Path, tmp_path: Path) -> None:
    notes = render_notes(tmp_path)
    for expected in (
        "5 functions (dead-letter, inventory, notification, order, payment) behind the shop Broker",
        "kubectl -n shop wait kafka/cascade --for=condition=Ready",
        "kubectl -n shop wait kafkauser/shop-knative-broker --for=condition=Ready",
        "kubectl -n shop wait broker/shop --for=condition=Ready",
        "kubectl -n shop wait trigger --all --for=condition=Ready",
        "kubectl -n shop wait sinkbinding --all --for=condition=Ready",
        "kubectl -n shop wait ksvc --all --for=condition=Ready",
        "curl -si http://order.shop.127.0.0.1.sslip.io/orders -H 'Content-Type: application/json'",
        "helm test cascade -n shop --logs --timeout 5m",
        "kubectl -n observability port-forward service/jaeger 16686",
        "kubectl -n monitoring port-forward service/kube-prometheus-stack-grafana 3000:80",
        "curl -s localhost:8081/dead-letters -H 'Host: dead-letter.shop.svc.cluster.local'",
    ):
        assert expected in notes
    assert "WARNING" not in notes


def test_notes_warn_when_state_lives_in_the_pods(tools: Path, tmp_path: Path) -> None:
    notes = render_notes(tmp_path, "database.secretName=", "functionDefaults.scaling.maxScale=1")
    assert "WARNING: database.secretName is empty" in notes
    assert "kubectl -n shop wait kafka" in notes


# ---------------------------------------------------------------------------- the whole chain


@pytest.mark.slow
def test_the_rendered_shop_passes_the_helm_test_under_cascade_run(
    test_pod: dict[str, Any], tmp_path: Path
) -> None:
    """k8s/rendered/shop.yaml run locally (broker + five functions): the test pod's script
    places an order and sees it CONFIRMED through the rendered Triggers."""
    data = tmp_path / "run"
    log = (tmp_path / "run.log").open("wb")
    runner = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("cascade")),
            "run",
            "-f",
            str(RENDERED),
            "--data-dir",
            str(data),
            # Free ports picked by cascade run itself (run.json names them): a block chosen here
            # raced with the ports the run opens for itself, such as its span receiver.
            "--port",
            "0",
            "--base-port",
            "0",
        ],
        cwd=ROOT,
        stdout=log,
        stderr=log,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith(("PAYMENT_", "OTEL_"))},
            # loopback and a temporary folder, whatever a manifest might say
            "CASCADE_HOST": "127.0.0.1",
            "CASCADE_DATA_DIR": str(data),
        },
    )
    try:
        deadline = time.monotonic() + 90
        order_url = None
        while time.monotonic() < deadline and runner.poll() is None and order_url is None:
            try:
                order_url = orjson.loads((data / "run.json").read_bytes())["functions"]["order"][
                    "url"
                ]
            except (OSError, ValueError, KeyError):
                time.sleep(0.2)
        assert order_url, (tmp_path / "run.log").read_text(errors="replace")
        result = run_test_pod(test_pod, order_url, TIMEOUT_SECONDS="60")
        assert result.returncode == 0, result.stdout + result.stderr
        assert " CONFIRMED: PENDING (placed) -> CONFIRMED" in result.stdout
    finally:
        runner.send_signal(signal.SIGINT)
        try:
            runner.wait(timeout=60)
        finally:
            if runner.poll() is None:
                runner.kill()
                runner.wait(timeout=10)
            log.close()
    assert runner.returncode == 0
