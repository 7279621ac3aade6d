"""The committable offset is the end of the gap-free run of finished records."""

from __future__ import annotations

import random

import pytest

from cascade.broker.dispatch.offsets import PartitionOffsets


def test_starts_at_the_given_offset_with_nothing_to_commit() -> None:
    offsets = PartitionOffsets(7)
    assert offsets.next_offset == 7
    assert offsets.committable == 7
    assert not offsets.needs_commit()


def test_in_order_completion_advances_one_by_one() -> None:
    offsets = PartitionOffsets(0)
    for offset in range(3):
        offsets.start(offset)
    offsets.finish(0)
    assert offsets.committable == 1
    offsets.finish(1)
    offsets.finish(2)
    assert offsets.committable == 3
    assert offsets.in_flight == 0


def test_a_gap_holds_the_commit_back_until_it_is_filled() -> None:
    offsets = PartitionOffsets(10)
    for offset in range(10, 15):
        offsets.start(offset)
    for offset in (11, 12, 14):
        offsets.finish(offset)
    assert offsets.committable == 10  # 10 still in flight: a crash must redeliver it
    assert offsets.in_flight == 2
    offsets.finish(10)
    assert offsets.committable == 13
    offsets.finish(13)
    assert offsets.committable == 15


def test_offsets_absent_from_the_log_are_not_waited_for() -> None:
    offsets = PartitionOffsets(0)
    offsets.start(0)
    offsets.start(5)  # 1..4 do not exist (e.g. compacted away)
    offsets.finish(5)
    assert offsets.committable == 0
    offsets.finish(0)
    assert offsets.committable == 6


def test_commit_bookkeeping() -> None:
    offsets = PartitionOffsets(0)
    offsets.start(0)
    offsets.finish(0)
    assert offsets.needs_commit()
    offsets.mark_committed(offsets.committable)
    assert offsets.committed == 1
    assert not offsets.needs_commit()


def test_skip_to_moves_the_read_position_when_idle() -> None:
    offsets = PartitionOffsets(0)
    offsets.skip_to(4)
    assert offsets.next_offset == 4
    assert offsets.committable == 4
    offsets.start(4)
    with pytest.raises(ValueError, match="in flight"):
        offsets.skip_to(9)


@pytest.mark.parametrize(
    ("action", "message"),
    [
        (lambda o: o.start(2), "out of order"),
        (lambda o: o.finish(9), "not in flight"),
    ],
)
def test_misuse_is_refused(action: object, message: str) -> None:
    offsets = PartitionOffsets(3)
    with pytest.raises(ValueError, match=message):
        action(offsets)  # type: ignore[operator]


def test_finishing_twice_is_refused() -> None:
    offsets = PartitionOffsets(0)
    offsets.start(0)
    offsets.start(1)
    offsets.finish(1)
    with pytest.raises(ValueError, match="not in flight"):
        offsets.finish(1)


def test_negative_start_is_refused() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        PartitionOffsets(-1)


def test_random_completion_order_never_commits_an_unfinished_offset() -> None:
    rng = random.Random(42)
    offsets = PartitionOffsets(0)
    total = 500
    for offset in range(total):
        offsets.start(offset)
    order = list(range(total))
    rng.shuffle(order)
    finished: set[int] = set()
    for offset in order:
        offsets.finish(offset)
        finished.add(offset)
        committable = offsets.committable
        assert all(o in finished for o in range(committable))
        assert committable == total or committable not in finished
    assert offsets.committable == total
