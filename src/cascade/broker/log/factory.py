"""Open the log of one Broker by backend name."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from cascade.broker.log.base import BrokerLog, LogError
from cascade.broker.log.memory import MemoryLog
from cascade.broker.log.sqlite import SqliteLog

LogKind = Literal["sqlite", "memory", "kafka", "nats"]

# Where --log nats looks when no --nats-url is given (a local nats-server -js).
DEFAULT_NATS_URL = "nats://127.0.0.1:4222"

# Kubernetes names: a namespace is a DNS-1123 label, a Broker name a DNS-1123 subdomain.
# Checking them also keeps the sqlite file name inside data_dir.
_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")


def sqlite_path(data_dir: Path, namespace: str, broker: str) -> Path:
    """Where the sqlite log of ``namespace/broker`` lives (a namespace never has a dot)."""
    return Path(data_dir) / f"{namespace}.{broker}.log.sqlite3"


def open_log(
    kind: LogKind,
    *,
    namespace: str,
    broker: str,
    partitions: int,
    data_dir: Path,
    bootstrap_servers: str | None = None,
    nats_url: str | None = None,
) -> BrokerLog:
    """The log of Broker ``namespace/broker``, created if missing.

    ``sqlite``: ``<data_dir>/<namespace>.<broker>.log.sqlite3`` (data_dir is created).
    ``memory``: lost on exit, for tests. ``kafka``: topic ``knative-broker-<ns>-<broker>`` on
    ``bootstrap_servers`` (needs the ``kafka`` extra, confluent-kafka). ``nats``: JetStream
    stream ``knative-broker-<ns>-<broker>`` on ``nats_url`` (default :data:`DEFAULT_NATS_URL`).
    """
    if not _LABEL.fullmatch(namespace):
        raise ValueError(f"namespace {namespace!r} is not a valid Kubernetes namespace name")
    if not _SUBDOMAIN.fullmatch(broker):
        raise ValueError(f"broker name {broker!r} is not a valid Kubernetes object name")
    if kind == "memory":
        return MemoryLog(partitions)
    if kind == "sqlite":
        try:
            Path(data_dir).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LogError(f"cannot create the broker data directory {data_dir}: {exc}") from exc
        return SqliteLog(sqlite_path(data_dir, namespace, broker), partitions)
    if kind == "kafka":
        if not bootstrap_servers:
            raise ValueError(
                "the kafka broker log needs bootstrap servers (host:port[,host:port...])"
            )
        try:
            from cascade.broker.log.kafka import KafkaLog, topic_name
        except ImportError as exc:
            raise LogError(
                f"the kafka broker log needs confluent-kafka: pip install 'cascade[kafka]' ({exc})"
            ) from exc
        return KafkaLog(bootstrap_servers, topic_name(namespace, broker), partitions)
    if kind == "nats":
        try:
            from cascade.broker.log.jetstream import NatsLog, stream_name, subject_prefix
        except ImportError as exc:
            raise LogError(
                f"the nats broker log needs nats-py: pip install 'cascade[nats]' ({exc})"
            ) from exc

        return NatsLog(
            nats_url or DEFAULT_NATS_URL,
            stream_name(namespace, broker),
            subject_prefix(namespace, broker),
            partitions,
        )
    raise ValueError(f"unknown broker log kind {kind!r}: expected sqlite, memory, kafka or nats")
