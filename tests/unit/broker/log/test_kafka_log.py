"""KafkaLog specifics: the records and group offsets a real Kafka client sees."""

from __future__ import annotations

import socket
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from cascade.broker.event import StoredEvent
from cascade.broker.log.base import LogError
from cascade.broker.log.factory import open_log
from cascade.broker.log.kafka import KafkaLog, topic_name
from cascade.broker.log.partitioner import partition_for_key

pytestmark = pytest.mark.kafka


def _unique() -> str:
    return uuid.uuid4().hex[:12]


def test_topic_name_is_knatives_default_template() -> None:
    assert topic_name("shop", "default") == "knative-broker-shop-default"


def test_records_are_cloudevents_in_kafka_binary_mode(kafka_bootstrap: str) -> None:
    topic = f"wire-{_unique()}"
    log = KafkaLog(kafka_bootstrap, topic, 3, timeout=20)
    event = StoredEvent(
        {
            "specversion": "1.0",
            "id": "order-1",
            "source": "/shop",
            "type": "order.created",
            "datacontenttype": "application/json",
            "subject": "ünïcode",
            "partitionkey": "customer-42",
        },
        b'{"total": 3}',
    )
    try:
        partition, offset = log.append(event, {"traceparent": "00-abc-def-01"})
    finally:
        log.close()
    assert partition == partition_for_key("customer-42", 3)
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": f"raw-{_unique()}"})
    try:
        consumer.assign([TopicPartition(topic, partition, offset)])
        messages = consumer.consume(1, timeout=10)
    finally:
        consumer.close()
    [message] = messages
    assert message.error() is None
    assert message.key() == b"customer-42"
    assert message.value() == b'{"total": 3}'
    assert dict(message.headers() or []) == {
        "ce_specversion": b"1.0",
        "ce_id": b"order-1",
        "ce_source": b"/shop",
        "ce_type": b"order.created",
        "content-type": b"application/json",
        "ce_subject": "ünïcode".encode(),
        # Knative keeps the extension on the event besides using it as the key.
        "ce_partitionkey": b"customer-42",
        "traceparent": b"00-abc-def-01",
    }


def test_keyless_records_have_no_key(kafka_bootstrap: str) -> None:
    topic = f"nokey-{_unique()}"
    log = KafkaLog(kafka_bootstrap, topic, 1, timeout=20)
    try:
        log.append(StoredEvent({"specversion": "1.0", "id": "1", "source": "/", "type": "t"}))
    finally:
        log.close()
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": f"raw-{_unique()}"})
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        [message] = consumer.consume(1, timeout=10)
    finally:
        consumer.close()
    assert message.key() is None
    assert not message.value()


def test_group_offsets_are_the_kafka_consumer_groups(kafka_bootstrap: str) -> None:
    topic = f"groups-{_unique()}"
    prefix = f"p{_unique()}-"
    log = KafkaLog(kafka_bootstrap, topic, 2, group_prefix=prefix, timeout=20)
    try:
        log.commit("knative-trigger-ns-t", {0: 4, 1: 9})
    finally:
        log.close()
    consumer = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": prefix + "knative-trigger-ns-t",
            "enable.auto.commit": False,
        }
    )
    try:
        committed = consumer.committed(
            [TopicPartition(topic, 0), TopicPartition(topic, 1)], timeout=10
        )
    finally:
        consumer.close()
    assert [tp.offset for tp in committed] == [4, 9]


def test_partitions_match_librdkafkas_murmur2_partitioner(kafka_bootstrap: str) -> None:
    # An independent implementation: librdkafka's Java-compatible partitioner chooses the
    # partition itself; ours must agree, including keys with 1-byte tails.
    topic = f"murmur-{_unique()}"
    KafkaLog(kafka_bootstrap, topic, 7, timeout=20).close()  # creates the topic
    producer = Producer(
        {"bootstrap.servers": kafka_bootstrap, "partitioner": "murmur2", "batch.num.messages": 1}
    )
    keys = ["a", "ab", "abc", "abcd", "abcde", "日本語", "order-17"] + [f"k{i}" for i in range(60)]
    chosen: dict[str, int | None] = {}
    for key in keys:
        producer.produce(
            topic,
            value=b"v",
            key=key.encode(),
            on_delivery=lambda _err, msg, key=key: chosen.__setitem__(key, msg.partition()),
        )
    assert producer.flush(20) == 0
    producer.close()
    assert chosen == {key: partition_for_key(key, 7) for key in keys}


def test_existing_topic_with_other_partition_count_is_refused(kafka_bootstrap: str) -> None:
    topic = f"count-{_unique()}"
    KafkaLog(kafka_bootstrap, topic, 2, timeout=20).close()
    with pytest.raises(LogError, match="has 2 partitions, asked for 5"):
        KafkaLog(kafka_bootstrap, topic, 5, timeout=20)


def test_unreachable_cluster_is_a_bounded_log_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound but not listening: connections are refused
        started = time.monotonic()
        with pytest.raises(LogError, match="cannot create kafka topic"):
            KafkaLog(f"127.0.0.1:{port}", "nowhere", 1, timeout=2)
    assert time.monotonic() - started < 60


def test_factory_opens_the_knative_topic(kafka_bootstrap: str, tmp_path: Path) -> None:
    namespace = f"ns{_unique()}"
    log = open_log(
        "kafka",
        namespace=namespace,
        broker="default",
        partitions=2,
        data_dir=tmp_path,
        bootstrap_servers=kafka_bootstrap,
    )
    try:
        assert isinstance(log, KafkaLog)
        assert log.topic == f"knative-broker-{namespace}-default"
        assert log.group_prefix == ""
    finally:
        log.close()
