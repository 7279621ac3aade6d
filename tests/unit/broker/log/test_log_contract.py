"""One contract for every broker log backend (memory, sqlite, kafka)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable

import pytest

from cascade.broker.event import StoredEvent
from cascade.broker.log.base import LogError
from cascade.broker.log.partitioner import partition_for_key

from .conftest import Backend


def event(event_id: str, key: str | None = None, data: bytes = b"{}", **extra: str) -> StoredEvent:
    attributes = {
        "specversion": "1.0",
        "id": event_id,
        "source": "/tests/log",
        "type": "com.example.test",
        "datacontenttype": "application/json",
        **extra,
    }
    if key is not None:
        attributes["partitionkey"] = key
    return StoredEvent(attributes, data)


def key_for(partition: int, partitions: int) -> str:
    """Some partition key that routes to ``partition``."""
    return next(
        f"key-{i}" for i in range(10_000) if partition_for_key(f"key-{i}", partitions) == partition
    )


def test_append_then_read_in_order_with_offsets_from_zero(backend: Backend) -> None:
    log = backend.open(3)
    key = key_for(1, 3)
    positions = [log.append(event(f"e{i}", key)) for i in range(5)]
    assert positions == [(1, i) for i in range(5)]
    records = log.read(1, 0, 100)
    assert [r.event.attributes["id"] for r in records] == [f"e{i}" for i in range(5)]
    assert [(r.partition, r.offset) for r in records] == positions


def test_offsets_count_from_zero_per_partition(backend: Backend) -> None:
    log = backend.open(3)
    for round_ in range(3):
        for partition in (2, 0, 1):
            assert log.append(event(f"{partition}-{round_}", key_for(partition, 3))) == (
                partition,
                round_,
            )


def test_keyed_events_go_to_kafkas_partition(backend: Backend) -> None:
    log = backend.open(5)
    keys = [f"customer-{i}" for i in range(30)] + ["日本", "clé"]
    for key in keys:
        partition, _ = log.append(event(key, key))
        assert partition == partition_for_key(key, 5)
    for key in keys:
        # the same key keeps its partition
        assert log.append(event(key + "-again", key))[0] == partition_for_key(key, 5)


def test_empty_partition_key_counts_as_keyless(backend: Backend) -> None:
    log = backend.open(4)
    partitions = [log.append(event(f"e{i}", key=""))[0] for i in range(8)]
    assert Counter(partitions) == {0: 2, 1: 2, 2: 2, 3: 2}


def test_keyless_events_spread_evenly(backend: Backend) -> None:
    log = backend.open(4)
    partitions = [log.append(event(f"e{i}"))[0] for i in range(40)]
    assert Counter(partitions) == {0: 10, 1: 10, 2: 10, 3: 10}
    assert [log.end_offset(p) for p in range(4)] == [10, 10, 10, 10]


def test_end_offset_follows_appends(backend: Backend) -> None:
    log = backend.open(2)
    key = key_for(0, 2)
    assert [log.end_offset(p) for p in range(2)] == [0, 0]
    for expected in range(1, 4):
        log.append(event(f"e{expected}", key))
        assert log.end_offset(0) == expected
    assert log.end_offset(1) == 0


def test_committed_is_none_before_first_commit(backend: Backend) -> None:
    log = backend.open(3)
    log.append(event("e"))
    assert [log.committed("knative-trigger-ns-t", p) for p in range(3)] == [None, None, None]


def test_commit_roundtrip_per_group_and_partition(backend: Backend) -> None:
    log = backend.open(3)
    for i in range(9):
        log.append(event(f"e{i}"))
    log.commit("knative-trigger-ns-a", {0: 2, 2: 3})
    assert log.committed("knative-trigger-ns-a", 0) == 2
    assert log.committed("knative-trigger-ns-a", 1) is None
    assert log.committed("knative-trigger-ns-a", 2) == 3
    log.commit("knative-trigger-ns-a", {0: 3})
    assert log.committed("knative-trigger-ns-a", 0) == 3
    assert log.committed("knative-trigger-ns-a", 2) == 3
    log.commit("knative-trigger-ns-a", {})
    assert log.committed("knative-trigger-ns-a", 0) == 3


def test_groups_are_independent(backend: Backend) -> None:
    log = backend.open(2)
    for i in range(4):
        log.append(event(f"e{i}"))
    log.commit("knative-trigger-ns-a", {0: 1})
    log.commit("knative-trigger-ns-b", {0: 2, 1: 1})
    assert log.committed("knative-trigger-ns-a", 0) == 1
    assert log.committed("knative-trigger-ns-a", 1) is None
    assert log.committed("knative-trigger-ns-b", 0) == 2
    assert log.committed("knative-trigger-ns-b", 1) == 1
    assert log.committed("knative-trigger-ns-c", 0) is None


def test_append_many_keeps_order_and_routing(backend: Backend) -> None:
    log = backend.open(3)
    key = key_for(2, 3)
    items = [(event(f"k{i}", key), {"traceparent": f"00-{i:032x}-{i:016x}-01"}) for i in range(4)]
    items += [(event(f"n{i}"), None) for i in range(3)]
    positions = log.append_many(items)
    assert positions[:4] == [(2, 0), (2, 1), (2, 2), (2, 3)]
    assert sorted(p for p, _ in positions[4:]) == [0, 1, 2]
    assert log.append_many([]) == []
    records = log.read(2, 0, 10)
    assert [r.event.attributes["id"] for r in records][:4] == ["k0", "k1", "k2", "k3"]
    assert records[3].headers == {"traceparent": f"00-{3:032x}-{3:016x}-01"}
    for (partition, offset), (stored, _) in zip(positions[4:], items[4:], strict=True):
        assert log.read(partition, offset, 1)[0].event == stored


@pytest.mark.parametrize(
    "data",
    [b"", b'{"ok": true}', bytes(range(256)), "héllo wörld ✓ 日本語".encode(), b"\x00" * 10_000],
    ids=["empty", "json", "all-bytes", "utf8", "zeros-10k"],
)
def test_event_roundtrips_byte_exact(backend: Backend, data: bytes) -> None:
    log = backend.open(2)
    original = event(
        "id-ü-✓",
        data=data,
        subject="naïve café — 日本",
        time="2024-05-01T12:00:00.123456Z",
        dataschema="https://example.com/schema?x=1&y=ü",
        myextension='a value with spaces, commas; and "quotes"',
        comexampleint="42",
    )
    headers = {
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "tracestate": "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7",
        "baggage": "user=ünïcode",
    }
    partition, offset = log.append(original, headers)
    [record] = log.read(partition, offset, 1)
    assert record.event.data == data
    assert type(record.event.data) is bytes
    assert dict(record.event.attributes) == dict(original.attributes)
    assert dict(record.headers) == headers


def test_event_without_headers_reads_back_empty_headers(backend: Backend) -> None:
    log = backend.open(1)
    log.append(event("plain"))
    [record] = log.read(0, 0, 5)
    assert dict(record.headers) == {}
    assert "datacontenttype" in record.event.attributes


def test_event_without_datacontenttype_stays_without(backend: Backend) -> None:
    log = backend.open(1)
    bare = StoredEvent({"specversion": "1.0", "id": "1", "source": "/s", "type": "t"}, b"x")
    log.append(bare)
    [record] = log.read(0, 0, 1)
    assert dict(record.event.attributes) == dict(bare.attributes)


def test_read_honours_max_records_and_start(backend: Backend) -> None:
    log = backend.open(1)
    for i in range(6):
        log.append(event(f"e{i}"))
    assert [r.offset for r in log.read(0, 0, 2)] == [0, 1]
    assert [r.offset for r in log.read(0, 2, 3)] == [2, 3, 4]
    assert [r.offset for r in log.read(0, 4, 100)] == [4, 5]
    assert log.read(0, 0, 0) == []


def test_read_at_or_beyond_end_is_empty(backend: Backend) -> None:
    log = backend.open(2)
    log.append(event("only", key_for(0, 2)))
    assert list(log.read(0, 1, 10)) == []
    assert list(log.read(0, 50, 10)) == []
    assert list(log.read(1, 0, 10)) == []


def run_threads(work: Callable[[int], None], count: int) -> list[BaseException]:
    """Run ``work(slot)`` for slots 0..count-1 in threads at once; returns what they raised."""
    errors: list[BaseException] = []

    def guarded(slot: int) -> None:
        try:
            work(slot)
        except BaseException as exc:  # returned to the test, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(slot,)) for slot in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return errors


def test_concurrent_appends_get_unique_gapless_offsets(backend: Backend) -> None:
    log = backend.open(3)
    per_thread = 40
    results: list[list[tuple[int, int]]] = [[] for _ in range(4)]

    def writer(slot: int) -> None:
        for i in range(per_thread):
            results[slot].append(log.append(event(f"t{slot}-{i}", key=f"k{slot}")))

    assert run_threads(writer, 4) == []
    positions = [p for slot in results for p in slot]
    assert len(set(positions)) == 4 * per_thread
    for partition in range(3):
        offsets = sorted(o for p, o in positions if p == partition)
        assert offsets == list(range(len(offsets)))
        assert log.end_offset(partition) == len(offsets)
    for slot in range(4):
        # each writer's events keep their order inside their partition
        assert [o for _, o in results[slot]] == sorted(o for _, o in results[slot])


def test_concurrent_reads_see_every_record(backend: Backend) -> None:
    log = backend.open(3)
    positions = log.append_many([(event(f"e{i}"), None) for i in range(30)])
    seen: list[list[str]] = [[] for _ in range(6)]

    def reader(slot: int) -> None:
        for _ in range(5):
            records = log.read(slot % 3, 0, 100)
            seen[slot] = [r.event.attributes["id"] for r in records]

    assert run_threads(reader, 6) == []
    for slot in range(6):
        expected = [f"e{i}" for i, (p, _) in enumerate(positions) if p == slot % 3]
        assert seen[slot] == expected


def test_bad_arguments_are_named(backend: Backend) -> None:
    log = backend.open(2)
    with pytest.raises(ValueError, match="partition 2 out of range"):
        log.read(2, 0, 1)
    with pytest.raises(ValueError, match="partition -1 out of range"):
        log.end_offset(-1)
    with pytest.raises(ValueError, match="offset must be >= 0"):
        log.read(0, -1, 1)
    with pytest.raises(ValueError, match="max_records"):
        log.read(0, 0, -1)
    with pytest.raises(ValueError, match="partition 5 out of range"):
        log.commit("g", {5: 0})
    with pytest.raises(ValueError, match="committed offset"):
        log.commit("g", {0: -3})
    with pytest.raises(ValueError, match="consumer group"):
        log.committed("", 0)
    with pytest.raises(ValueError, match="reserved"):
        log.append(event("e"), {"ce_id": "x"})
    with pytest.raises(ValueError, match="reserved"):
        log.append(event("e"), {"Content-Type": "x"})
    with pytest.raises(ValueError, match="attribute 'id' must be a string"):
        log.append(StoredEvent({"id": 5}, b""))  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="partitions must be"):
        backend.open(0)
    # nothing above was stored
    assert [log.end_offset(p) for p in range(2)] == [0, 0]


def test_closed_log_refuses_every_call(backend: Backend) -> None:
    log = backend.open(2)
    log.append(event("before"))
    log.close()
    log.close()  # closing twice is harmless
    with pytest.raises(LogError, match="closed"):
        log.append(event("after"))
    with pytest.raises(LogError, match="closed"):
        log.append_many([(event("after"), None)])
    with pytest.raises(LogError, match="closed"):
        log.read(0, 0, 1)
    with pytest.raises(LogError, match="closed"):
        log.end_offset(0)
    with pytest.raises(LogError, match="closed"):
        log.committed("g", 0)
    with pytest.raises(LogError, match="closed"):
        log.commit("g", {0: 1})


def test_reopen_keeps_records_offsets_and_commits(persistent_backend: Backend) -> None:
    log = persistent_backend.open(3)
    key = key_for(1, 3)
    stored = [event(f"e{i}", key, data=bytes([i, 255])) for i in range(3)]
    for item in stored:
        log.append(item, {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"})
    log.append(event("keyless"))
    log.commit("knative-trigger-ns-t", {1: 2})
    log.close()

    again = persistent_backend.open(3)
    records = again.read(1, 0, 10)
    assert [r.event for r in records][:3] == stored
    assert again.end_offset(1) == len(records)
    assert again.committed("knative-trigger-ns-t", 1) == 2
    assert again.committed("knative-trigger-ns-t", 0) is None
    assert again.append(event("next", key)) == (1, len(records))


def test_reopen_with_other_partition_count_is_refused(persistent_backend: Backend) -> None:
    persistent_backend.open(3).close()
    with pytest.raises(LogError, match="3 partitions"):
        persistent_backend.open(4)
