"""`cascade run`: the plan it makes from the manifests, and every way it refuses to start
(without starting anything)."""

from __future__ import annotations

import socket
from pathlib import Path

import click
import pytest
import yaml
from click.testing import CliRunner

from cascade.broker.log.options import broker_log_args
from cascade.broker.log.retention import RetentionPolicy
from cascade.broker.topology import ManifestError
from cascade.cli import main
from cascade.runner.plan import PlanError, make_plan
from cascade.runner.state import lock_data_dir

ROOT = Path(__file__).resolve().parents[3]
SHOP = ROOT / "k8s" / "rendered" / "shop.yaml"
FUNCTIONS = ROOT / "functions"


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["run", *args])
    return result.exit_code, result.output


def test_plan_of_the_shop() -> None:
    plan = make_plan(
        manifests=[SHOP],
        functions_dir=FUNCTIONS,
        data_dir=Path("/tmp/cascade-plan"),
        host="127.0.0.1",
        port=0,
        base_port=0,
        environ={"PAYMENT_FAULT_RATE": "0.25", "UNRELATED": "x"},
    )
    names = [fn.name for fn in plan.functions]
    # The order API (a SinkBinding subject) first, then the manifest's Service order.
    assert names == ["order", "dead-letter", "inventory", "notification", "payment"]
    ports = [plan.broker_port, *(fn.port for fn in plan.functions)]
    assert len(set(ports)) == len(ports)
    by_name = {fn.name: fn for fn in plan.functions}
    ingress = plan.ingress["default/shop"]
    assert ingress == f"http://127.0.0.1:{plan.broker_port}/default/shop"
    # The SinkBinding gives the order API its K_SINK, and nobody else one.
    assert by_name["order"].env["K_SINK"] == ingress
    assert all("K_SINK" not in fn.env for fn in plan.functions if fn.name != "order")
    # The Service's env comes along; the environment cascade run was started with wins.
    assert by_name["payment"].env == {
        "CASCADE_LOG_LEVEL": "INFO",
        "CASCADE_THREADS": "1",
        "PAYMENT_FAULT_RATE": "0.25",
        "PAYMENT_FAULT_MODE": "error",
        "PAYMENT_HANG_SECONDS": "5",
    }
    assert len(by_name["inventory"].triggers) == 4
    # Trigger refs and dead-letter sinks resolve to the local functions.
    for trigger in plan.topology.triggers:
        assert trigger.subscriber.startswith(by_name[trigger.subscriber_service.name].url)
        assert trigger.delivery.dead_letter_sink == by_name["dead-letter"].url + "/dead-letters"
    assert f"default/payment={by_name['payment'].url}" in plan.service_url_options()
    assert not any("SinkBinding" in notice for notice in plan.notices)


def test_fixed_ports_count_up_from_the_base_port() -> None:
    problems = []
    # Below the ephemeral range (32768-60999), where client sockets come and go all the time.
    for base in (20100, 21300, 23500, 25700, 27900):
        try:
            plan = make_plan(
                manifests=[SHOP], functions_dir=FUNCTIONS, data_dir=Path("/tmp/x"),
                host="127.0.0.1", port=0, base_port=base, environ={},
            )  # fmt: skip
        except PlanError as exc:
            problems.append(str(exc))
            continue
        assert [fn.port for fn in plan.functions] == list(range(base, base + 5))
        assert all(fn.url == f"http://127.0.0.1:{fn.port}" for fn in plan.functions)
        return
    pytest.fail(f"no free run of 5 ports found: {problems}")


def test_missing_manifests_exit_2(tmp_path: Path) -> None:
    code, output = run("--manifests", str(tmp_path / "nope.yaml"))
    assert code == 2
    assert "does not exist" in output


def test_an_invalid_manifest_exits_2_naming_file_object_and_field(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    documents = [d for d in yaml.safe_load_all(SHOP.read_text()) if d]
    [payment] = [
        d
        for d in documents
        if d["kind"] == "Trigger" and d["metadata"]["name"] == "payment-inventory-reserved"
    ]
    payment["spec"]["delivery"]["backoffDelay"] = "soon"
    broken.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    code, output = run(
        "--manifests", str(broken), "--functions-dir", str(FUNCTIONS), "--port", "0",
        "--base-port", "0", "--data-dir", str(tmp_path / "data"),
    )  # fmt: skip
    assert code == 2, output
    assert "invalid manifest" in output
    assert "payment-inventory-reserved" in output
    assert "spec.delivery.backoffDelay" in output
    assert not (tmp_path / "data").exists()  # nothing started, nothing written


def test_a_reference_to_a_service_without_function_exits_2(tmp_path: Path) -> None:
    functions = tmp_path / "functions"
    (functions / "order").mkdir(parents=True)
    (functions / "order" / "func.py").write_text("")
    code, output = run(
        "--manifests", str(SHOP), "--functions-dir", str(functions), "--port", "0",
        "--base-port", "0", "--data-dir", str(tmp_path / "data"),
    )  # fmt: skip
    assert code == 2
    assert "dead-letter cannot be resolved to a URL" in output


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda d: None, "no <name>/func.py inside"),
        (lambda d: (d / "Bad_Name").mkdir() or (d / "Bad_Name" / "func.py").write_text(""),
         "'Bad_Name' cannot be a function name"),
    ],
)  # fmt: skip
def test_a_functions_dir_without_usable_functions_exits_2(
    tmp_path: Path, setup: object, message: str
) -> None:
    functions = tmp_path / "functions"
    functions.mkdir()
    assert callable(setup)
    setup(functions)
    code, output = run("--manifests", str(SHOP), "--functions-dir", str(functions))
    assert code == 2
    assert message in output


def test_a_port_in_use_exits_1_naming_it(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, output = run(
            "--manifests", str(SHOP), "--functions-dir", str(FUNCTIONS), "--port", str(port),
            "--base-port", "0", "--data-dir", str(tmp_path),
        )  # fmt: skip
    assert code == 1
    assert f"port {port} on 127.0.0.1 for the broker (--port) is in use" in output


def test_ports_beyond_65535_exit_2(tmp_path: Path) -> None:
    code, output = run(
        "--manifests", str(SHOP), "--functions-dir", str(FUNCTIONS), "--port", "0",
        "--base-port", "65534", "--data-dir", str(tmp_path),
    )  # fmt: skip
    assert code == 2
    assert "port 65536 for function #3 (--base-port 65534) is above 65535" in output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--otlp-endpoint", "collector:4318"], "use an http:// or https:// URL"),
        (["--port", "70000"], "--port"),
        (["--startup-timeout", "0"], "--startup-timeout"),
        (["--functions-dir", "/no/such/dir"], "does not exist"),
        (["--log", "kafka"], "--log kafka needs --bootstrap-servers HOST:PORT"),
        (["--log", "nosuch"], "'nosuch' is not one of 'sqlite', 'memory', 'kafka'"),
        (["--bootstrap-servers", "127.0.0.1:9092"], "is for --log kafka, not --log sqlite"),
        (["--restart-delay", "5", "--restart-max-delay", "1"], "below --restart-delay 5"),
        (["--restart-delay", "-1"], "--restart-delay"),
        (["--retention", "soon"], "'soon' is not a duration > 0 like 7d"),
        (["--retention-bytes", "lots"], "'lots' is not a size like 1GiB"),
    ],
)
def test_bad_options_exit_2(args: list[str], message: str) -> None:
    code, output = run("--manifests", str(SHOP), *args)
    assert code == 2
    assert message in output


def test_a_data_dir_in_use_by_another_run_exits_1(tmp_path: Path) -> None:
    holder = lock_data_dir(tmp_path)
    try:
        code, output = run(
            "--manifests", str(SHOP), "--functions-dir", str(FUNCTIONS), "--port", "0",
            "--base-port", "0", "--data-dir", str(tmp_path),
        )  # fmt: skip
    finally:
        holder.close()
    assert code == 1
    assert f"another cascade run uses {tmp_path}" in output


def test_manifest_errors_are_the_brokers_own() -> None:
    with pytest.raises(ManifestError, match="must be a Kubernetes object"):
        make_plan(
            manifests=[ROOT / "pyproject.toml"], functions_dir=FUNCTIONS, data_dir=Path("/x"),
            host="127.0.0.1", port=0, base_port=0, environ={},
        )  # fmt: skip


def test_cluster_settings_in_a_services_env_are_not_taken(tmp_path: Path) -> None:
    manifest = tmp_path / "one.yaml"
    manifest.write_text(
        """
apiVersion: serving.knative.dev/v1
kind: Service
metadata: {name: order}
spec:
  template:
    spec:
      containers:
        - image: cascade-order
          env:
            - {name: CASCADE_HOST, value: 0.0.0.0}
            - {name: CASCADE_DATA_DIR, value: /data}
            - {name: DATABASE_URL, value: "postgresql://db.cluster/shop"}
            - {name: OTEL_EXPORTER_OTLP_ENDPOINT, value: "http://collector.cluster:4318"}
            - {name: PORT, value: "8080"}
            - {name: CASCADE_WORKERS, value: "4"}
            - {name: FROM_SECRET, valueFrom: {secretKeyRef: {name: s, key: k}}}
            - {name: SHOP_SETTING, value: "7"}
"""
    )
    functions = tmp_path / "functions"
    (functions / "order").mkdir(parents=True)
    (functions / "order" / "func.py").write_text("")
    plan = make_plan(
        manifests=[manifest], functions_dir=functions, data_dir=tmp_path / "data",
        host="127.0.0.1", port=0, base_port=0, environ={},
    )  # fmt: skip
    [order] = plan.functions
    assert order.env == {"SHOP_SETTING": "7"}
    assert order.service
    assert order.triggers == ()
    assert order.sink is None
    assert plan.ingress == {}


def test_run_and_broker_share_the_log_options() -> None:
    """`cascade run` passes --log/--bootstrap-servers on to its broker: same choices, same help."""
    from cascade.broker.command import broker
    from cascade.runner.command import run as run_command

    def log_params(command: click.Command) -> list[dict[str, object]]:
        return [
            param.to_info_dict()
            for param in command.params
            if param.name
            in (
                "log_kind",
                "bootstrap_servers",
                "nats_url",
                "retention",
                "retention_bytes",
                "retention_interval",
            )
        ]

    assert len(log_params(run_command)) == 6
    assert log_params(run_command) == log_params(broker)
    assert broker_log_args("kafka", "h:1") == ["--log", "kafka", "--bootstrap-servers", "h:1"]
    assert broker_log_args("memory", None) == ["--log", "memory"]
    policy = RetentionPolicy(max_age_seconds=3600.0, max_bytes=None)
    assert broker_log_args("sqlite", None, retention=policy) == [
        "--log", "sqlite", "--retention", "3600.0s", "--retention-bytes", "none",
        "--retention-interval", "30.0",
    ]  # fmt: skip
