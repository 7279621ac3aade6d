"""The in-memory tail of a log: serves what it holds, declines everything else."""

from __future__ import annotations

import tracemalloc

from cascade.broker.event import Record, StoredEvent
from cascade.broker.http.event import event_size
from cascade.broker.log.tail import RECORD_OVERHEAD_BYTES, TailCache


def record(partition: int, offset: int, size: int = 10) -> Record:
    return Record(partition, offset, StoredEvent({"id": str(offset)}, b"x" * size))


def test_serves_contiguous_records_from_an_offset() -> None:
    tail = TailCache(2)
    tail.add([record(0, 5), record(1, 0), record(0, 6), record(0, 7)])
    assert [r.offset for r in tail.read(0, 6, 10) or []] == [6, 7]
    assert [r.offset for r in tail.read(0, 5, 2) or []] == [5, 6]
    assert [r.offset for r in tail.read(1, 0, 10) or []] == [0]


def test_declines_offsets_it_does_not_hold() -> None:
    tail = TailCache(2)
    assert tail.read(0, 0, 10) is None
    tail.add([record(0, 5), record(0, 6)])
    assert tail.read(0, 4, 10) is None  # older: read the log
    assert tail.read(0, 7, 10) is None  # newer than anything stored here


def test_a_gap_means_another_writer_and_restarts_the_cache() -> None:
    tail = TailCache(1)
    tail.add([record(0, 1), record(0, 2)])
    tail.add([record(0, 9)])
    assert tail.read(0, 1, 10) is None
    assert [r.offset for r in tail.read(0, 9, 10) or []] == [9]


def test_memory_is_bounded() -> None:
    tail = TailCache(1, max_bytes=1000)
    tail.add([record(0, n, size=100) for n in range(100)])
    assert tail.read(0, 0, 1) is None
    held = tail.read(0, 99, 1)
    assert held is not None
    assert held[0].offset == 99


def test_the_bound_counts_each_records_memory_not_only_its_bytes() -> None:
    # Tiny events: their bytes alone would let all 100 in.
    tail = TailCache(1, max_bytes=10 * (RECORD_OVERHEAD_BYTES + 20))
    tail.add([record(0, n, size=1) for n in range(100)])
    assert tail.read(0, 89, 1) is None
    assert [r.offset for r in tail.read(0, 99, 10) or []] == [99]


def test_the_overhead_estimate_is_what_a_typical_record_holds() -> None:
    attributes = {
        "specversion": "1.0",
        "type": "com.example.order.created",
        "source": "/orders",
        "datacontenttype": "application/json",
        "time": "2026-12-06T03:00:00Z",
    }
    headers = {"traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01"}
    body = b'{"order_id": "o-1", "items": [{"sku": "sku-1", "quantity": 2}]}' * 3
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        held = [
            Record(
                0,
                n,
                StoredEvent({**attributes, "id": f"event-{n:08d}"}, bytes(body)),
                dict(headers),
            )
            for n in range(2000)
        ]
        per_record = (tracemalloc.get_traced_memory()[0] - start) / len(held)
    finally:
        tracemalloc.stop()
    estimate = event_size(held[0].event) + RECORD_OVERHEAD_BYTES
    assert 0.5 < per_record / estimate < 2, (per_record, estimate)


def test_caught_up_only_just_past_the_newest_record_held() -> None:
    tail = TailCache(2)
    assert not tail.caught_up(0, 0)  # holds nothing: only the log knows
    tail.add([record(0, 5), record(0, 6)])
    assert tail.caught_up(0, 7)
    assert not tail.caught_up(0, 6)  # a record is still to be read
    assert not tail.caught_up(0, 8)  # beyond what this process stored
    assert not tail.caught_up(1, 7)
