"""Settings of one ``cascade broker`` process, validated once at start."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cascade.broker.http.limits import DEFAULT_MAX_CONNECTIONS, DEFAULT_READ_TIMEOUT_SECONDS
from cascade.broker.log.factory import LogKind
from cascade.broker.log.retention import RetentionPolicy
from cascade.broker.oidc import AuthorizationMode

__all__ = ["BrokerSettings"]

DEFAULT_MAX_EVENT_BYTES = 1_048_576  # the Kafka producer's max.request.size (§1.5)
# A subscriber's answer (a reply skips the ingress size check, §5.2, but not this bound).
DEFAULT_MAX_ANSWER_BYTES = 4 * DEFAULT_MAX_EVENT_BYTES


@dataclass(frozen=True)
class BrokerSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    log_kind: LogKind = "sqlite"
    bootstrap_servers: str | None = None
    nats_url: str | None = None  # --log nats; None: the factory's default
    data_dir: Path = Path(".cascade")
    partitions: int = 10  # kafka-broker-config default.topic.partitions (§6.7)
    max_inflight: int = 50  # max.poll.records (§6.3)
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
    max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    read_timeout: float = DEFAULT_READ_TIMEOUT_SECONDS
    max_hops: int | None = None  # opt-in loop guard; the Kafka class has none (§5.4)
    drain_seconds: float = 5.0  # how long in-flight deliveries may finish on SIGTERM
    commit_interval: float = 0.2
    oidc: bool = False  # issue and check sender identity (cascade.broker.oidc)
    oidc_default_mode: AuthorizationMode = "allow-same-namespace"
    retention: RetentionPolicy = field(default_factory=RetentionPolicy)  # sqlite log only

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be 0..65535, got {self.port}")
        if self.partitions < 1:
            raise ValueError(f"partitions must be >= 1, got {self.partitions}")
        if self.max_inflight < 1:
            raise ValueError(f"max-inflight must be >= 1, got {self.max_inflight}")
        if self.max_event_bytes < 1:
            raise ValueError(f"max-event-bytes must be >= 1, got {self.max_event_bytes}")
        if self.max_answer_bytes < 1:
            raise ValueError(f"max-answer-bytes must be >= 1, got {self.max_answer_bytes}")
        if self.max_connections < 1:
            raise ValueError(f"max-connections must be >= 1, got {self.max_connections}")
        if not self.read_timeout > 0:
            raise ValueError(f"read-timeout must be > 0, got {self.read_timeout}")
        if self.max_hops is not None and self.max_hops < 1:
            raise ValueError(f"max-hops must be >= 1, got {self.max_hops}")
        if self.drain_seconds < 0:
            raise ValueError(f"drain-seconds must be >= 0, got {self.drain_seconds}")
        if self.log_kind == "kafka" and not self.bootstrap_servers:
            raise ValueError("--log kafka needs --bootstrap-servers HOST:PORT")
