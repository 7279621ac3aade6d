"""The dashboards and rules against a real Prometheus scraping a real ``cascade run``.

Every PromQL expression of the Grafana dashboards (charts/cascade/dashboards/*.json) and of the
rules file (charts/cascade/rules/cascade.rules.yaml) is extracted from those files, so none can
be forgotten, and evaluated after orders of every kind went through the shop: each dashboard
and recording expression returns data with a real value, each alert expression is valid, and
every metric any of them names exists (a cluster-only metric must be declared as such below).
``promtool check rules`` and ``promtool test rules`` (the alerts fire when they should) pass.

Prometheus is the Debian package (``apt-get install -y --no-install-recommends prometheus``;
.ci/run installs it). It runs on 127.0.0.1 on a free port with a generated configuration and a
temporary TSDB, and is stopped by PID.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlencode, urlsplit

import pytest
import yaml

from tests.e2e.harness import ShopRun, call, get_json, place_order, wait_until
from tests.observability.conftest import Scenario, wait_final

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "charts" / "cascade" / "rules" / "cascade.rules.yaml"
RULES_TEST = Path(__file__).with_name("cascade.rules.test.yaml")
DASHBOARDS = sorted((ROOT / "charts" / "cascade" / "dashboards").glob("*.json"))

# Metrics that exist only on a cluster, each used beside a local alternative (an `or`).
CLUSTER_ONLY: Final = {
    "kafka_consumergroup_lag": "Strimzi's Kafka Exporter; locally cascade_broker_lag_events",
}
# Grafana's variables, as a dashboard would fill them in.
# $__rate_interval is wider than Grafana would pick for a 1 s scrape: the test places its orders,
# then waits for the recorded series and runs every query, which on a loaded machine can take
# longer than a minute, and a rate over a window with no delivery left is NaN, not missing data.
GRAFANA_VARIABLES: Final = {
    "$__rate_interval": "5m",
    "$__range": "1h",
    "$__interval": "15s",
    "$function": ".+",
}
_KEYWORDS: Final = frozenset(
    {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right"}
    | {"bool", "offset", "inf", "nan", "atan2"}
)


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        message = f"{name} is not installed: apt-get install -y --no-install-recommends prometheus"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + " (.ci/run installs it)")
        pytest.skip(message)
    return found


# --- what the dashboards and rules ask Prometheus ------------------------------------------


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels") or [])


def dashboard_expressions() -> dict[str, str]:
    """``"<file> / <panel> / <refId>"`` → PromQL, for every target of every dashboard."""
    found = {}
    for path in DASHBOARDS:
        document = json.loads(path.read_text())
        for panel in _panels(document["panels"]):
            for target in panel.get("targets") or []:
                found[f"{path.name} / {panel['title']} / {target['refId']}"] = target["expr"]
    return found


def dashboard_variable_metrics() -> dict[str, str]:
    """Metrics named by the dashboards' ``label_values(metric, label)`` variables."""
    found = {}
    for path in DASHBOARDS:
        for variable in json.loads(path.read_text())["templating"]["list"]:
            if variable.get("type") != "query":
                continue
            match = re.fullmatch(r"label_values\((\w+),\s*\w+\)", variable["definition"])
            assert match, f"{path.name} variable {variable['name']}: {variable['definition']}"
            found[f"{path.name} / ${variable['name']}"] = match.group(1)
    return found


def rule_expressions() -> tuple[dict[str, str], dict[str, str]]:
    """(recording rules, alerts): name → PromQL."""
    records, alerts = {}, {}
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            if "record" in rule:
                records[rule["record"]] = rule["expr"]
            else:
                alerts[rule["alert"]] = rule["expr"]
    return records, alerts


def filled(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    assert "$" not in re.sub(r'"[^"]*"', "", expr), f"unknown Grafana variable in {expr}"
    return expr


def metric_names(expr: str) -> set[str]:
    """The metric (and recorded series) names a PromQL expression reads."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    text = re.sub(
        r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text
    )  # label lists
    names = set()
    for match in re.finditer(r"(?<![\w.:])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", text):
        name, call_paren = match.group(1), match.group(2)
        if call_paren or name.lower() in _KEYWORDS:
            continue
        names.add(name)
    return names


def test_the_metric_name_extraction_understands_promql() -> None:
    expr = (
        'sum by (trigger) (cascade_broker_lag_events{a="x or y"}) or on() '
        "histogram_quantile(0.99, sum by (le) (rate(cascade:x:p99[5m] offset 1m))) "
        "/ ignoring(b) group_left(c) other_metric > bool 1e3"
    )
    assert metric_names(expr) == {"cascade_broker_lag_events", "cascade:x:p99", "other_metric"}


# --- promtool ---------------------------------------------------------------------------------


def test_promtool_checks_the_rules_and_the_alerts_fire_as_tested() -> None:
    promtool = tool("promtool")
    checked = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    records, alerts = rule_expressions()
    assert f"SUCCESS: {len(records) + len(alerts)} rules found" in checked.stdout
    tested = subprocess.run(
        [promtool, "test", "rules", RULES_TEST.name],
        cwd=RULES_TEST.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    # Every alert has a promtool test that expects it to fire.
    tests = yaml.safe_load(RULES_TEST.read_text())["tests"]
    firing = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert firing == set(alerts)


# --- a real Prometheus ------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _hostport(url: str) -> str:
    return str(urlsplit(url).netloc)


@pytest.fixture(scope="module")
def prometheus(shop: ShopRun, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = tool("prometheus")
    base = tmp_path_factory.mktemp("prometheus")
    state = shop.state()
    assert state is not None
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {
                "job_name": "cascade-broker",
                "static_configs": [{"targets": [_hostport(shop.broker)]}],
            },
            {
                "job_name": "cascade-functions",
                "static_configs": [
                    {"targets": [_hostport(fn["url"]) for fn in state["functions"].values()]}
                ],
            },
        ],
    }
    (base / "prometheus.yml").write_text(yaml.safe_dump(config))
    url = f"http://127.0.0.1:{_free_port()}"
    with (base / "prometheus.log").open("wb") as log:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={base / 'prometheus.yml'}",
                f"--storage.tsdb.path={base / 'tsdb'}",
                f"--web.listen-address={_hostport(url)}",
                "--log.level=warn",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(lambda: call("GET", f"{url}/-/ready").status == 200, 60, "Prometheus ready")

        def all_up() -> bool:
            targets = target_health(url)
            return len(targets) == 1 + len(state["functions"]) and all(
                t["health"] == "up" for t in targets
            )

        wait_until(all_up, 60, "every target scraped")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def query(url: str, expr: str) -> list[dict[str, Any]]:
    answer = get_json(f"{url}/api/v1/query?{urlencode({'query': expr})}")
    assert answer["status"] == "success", answer
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def values(result: list[dict[str, Any]]) -> list[float]:
    return [float(sample["value"][1]) for sample in result]


def without_data(url: str, expressions: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    """The expressions whose result has no finite value, with the result they gave."""
    empty = {}
    for where, expr in expressions.items():
        result = query(url, filled(expr))
        if not [v for v in values(result) if not math.isnan(v)]:
            empty[where] = result
    return empty


def target_health(url: str) -> list[dict[str, Any]]:
    targets = get_json(f"{url}/api/v1/targets")["data"]["activeTargets"]
    return [
        {key: target.get(key) for key in ("scrapeUrl", "health", "lastError", "lastScrapeDuration")}
        for target in targets
    ]


def test_every_dashboard_and_rule_expression_returns_data(
    prometheus: str, scenarios: dict[str, Scenario], shop: ShopRun
) -> None:
    # Orders while Prometheus scrapes, so rates and latency quantiles have something to show.
    order_url = shop.url("order")
    fresh = [
        (place_order(order_url, [("STICKER", 1)], customer="cust-prom"), "CONFIRMED"),
        (place_order(order_url, [("VINYL", 1)], customer="cust-prom"), "CANCELLED"),
        (place_order(order_url, [("MUG", 1)], customer="cust-blocked"), "CANCELLED"),
    ]
    for order_id, state in fresh:
        wait_final(shop, order_id, state)
    records, alerts = rule_expressions()
    # Recorded series exist once the rules were evaluated after the orders were scraped.
    wait_until(
        lambda: all(query(prometheus, name) for name in records), 30, "every recorded series"
    )

    expressions = {
        **dashboard_expressions(),
        **{f"rule {name}": expr for name, expr in records.items()},
    }
    # A scrape can time out on a loaded machine; a rate over scrapes that missed the orders is
    # NaN. So each expression gets until the deadline to show the orders, then it must.
    empty = without_data(prometheus, expressions)
    deadline = time.monotonic() + 60
    while empty and time.monotonic() < deadline:
        time.sleep(2)
        empty = without_data(prometheus, {where: expressions[where] for where in empty})
    assert not empty, (
        "expressions without data:\n"
        + "\n".join(f"{where}: {expressions[where]!r} → {got}" for where, got in empty.items())
        + "\ntargets: "
        + json.dumps(target_health(prometheus))
    )

    for expr in alerts.values():
        query(prometheus, expr)  # valid PromQL (it returns data only while the alert is active)

    used = {
        name: where
        for where, expr in {
            **dashboard_expressions(),
            **records,
            **alerts,
        }.items()
        for name in metric_names(filled(expr))
    }
    used.update({name: where for where, name in dashboard_variable_metrics().items()})
    missing = [
        f"{name} (in {where})"
        for name, where in sorted(used.items())
        if name not in CLUSTER_ONLY and not query(prometheus, f'count({{__name__="{name}"}})')
    ]
    assert not missing, "metrics with no series:\n" + "\n".join(missing)
    assert set(CLUSTER_ONLY) <= set(used), "a cluster-only metric nothing uses any more"


def test_the_order_funnel_counts_every_order_once_across_workers(
    prometheus: str, scenarios: dict[str, Scenario], shop: ShopRun
) -> None:
    states: dict[str, int] = {}
    for state in ("PENDING", "CONFIRMED", "CANCELLED"):
        orders = get_json(f"{shop.url('order')}/orders?state={state}&limit=500")["orders"]
        states[state.lower()] = len(orders)
    wanted = {
        "placed": float(sum(states.values())),
        "confirmed": float(states["confirmed"]),
        "cancelled": float(states["cancelled"]),
    }
    found: dict[str, float] = {}

    def counted() -> bool:
        result = query(prometheus, "sum by (state) (cascade_shop_orders_total)")
        found.clear()
        found.update({sample["metric"]["state"]: float(sample["value"][1]) for sample in result})
        return found == wanted

    assert len(shop.workers("order")) == 2
    # Both gunicorn workers count into the multiprocess files; one scrape sums them.
    with contextlib.suppress(AssertionError):
        wait_until(counted, 15, "the funnel to match the orders")
    assert found == wanted
    assert values(query(prometheus, "max(cascade_shop_orders_pending)")) == [states["pending"]]
    # The dead-lettered order was replayed: nothing waits, but the type is still reported.
    waiting = query(prometheus, "cascade:dead_letters_waiting:max")
    assert waiting
    assert values(waiting) == [0.0] * len(waiting)
