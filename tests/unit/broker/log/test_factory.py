"""open_log picks the backend and names the storage after the Broker."""

from __future__ import annotations

from pathlib import Path

import pytest

from cascade.broker.event import StoredEvent
from cascade.broker.log.factory import open_log
from cascade.broker.log.memory import MemoryLog
from cascade.broker.log.sqlite import SqliteLog


def test_sqlite_file_is_named_after_namespace_and_broker(tmp_path: Path) -> None:
    data_dir = tmp_path / "state" / "brokers"
    log = open_log("sqlite", namespace="shop", broker="default", partitions=4, data_dir=data_dir)
    try:
        assert isinstance(log, SqliteLog)
        assert log.partitions == 4
        log.append(StoredEvent({"id": "1"}))
    finally:
        log.close()
    assert (data_dir / "shop.default.log.sqlite3").is_file()
    again = open_log("sqlite", namespace="shop", broker="default", partitions=4, data_dir=data_dir)
    try:
        assert sum(again.end_offset(p) for p in range(4)) == 1
    finally:
        again.close()


def test_memory_log(tmp_path: Path) -> None:
    log = open_log("memory", namespace="ns", broker="b", partitions=2, data_dir=tmp_path)
    try:
        assert isinstance(log, MemoryLog)
        assert log.partitions == 2
    finally:
        log.close()
    assert list(tmp_path.iterdir()) == []


def test_kafka_needs_bootstrap_servers(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="bootstrap servers"):
        open_log("kafka", namespace="ns", broker="b", partitions=2, data_dir=tmp_path)


def test_unknown_kind(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown broker log kind 'redis'"):
        open_log("redis", namespace="ns", broker="b", partitions=1, data_dir=tmp_path)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("namespace", "broker", "bad"),
    [
        ("../etc", "b", "namespace"),
        ("a.b", "b", "namespace"),
        ("ns", "x/y", "broker"),
        ("ns", "", "broker"),
        ("NS", "b", "namespace"),
    ],
)
def test_names_must_be_kubernetes_names(
    tmp_path: Path, namespace: str, broker: str, bad: str
) -> None:
    with pytest.raises(ValueError, match=bad):
        open_log("sqlite", namespace=namespace, broker=broker, partitions=1, data_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []
