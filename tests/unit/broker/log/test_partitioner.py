"""murmur2 and the keyed partition choice must equal Apache Kafka's, bit for bit."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cascade.broker.log.partitioner import murmur2, partition_for_key, to_positive

# Expected values of Kafka's Utils.murmur2 (Apache Kafka's UtilsTest.testMurmur2).
KAFKA_VECTORS = [
    (b"21", -973932308),
    (b"foobar", -790332482),
    (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    (b"abc", 479470107),
]


@pytest.mark.parametrize(("data", "expected"), KAFKA_VECTORS)
def test_murmur2_matches_kafka_vectors(data: bytes, expected: int) -> None:
    assert murmur2(data) == expected


def test_one_byte_tail_reaches_the_hash() -> None:
    # The Kafka vectors have tails of 0, 2 and 3 bytes; test_kafka_log checks 1-byte tails
    # against librdkafka's murmur2 partitioner.
    assert murmur2(b"a") != murmur2(b"b")
    assert murmur2(b"abcda") != murmur2(b"abcdb")


@given(st.binary(max_size=64))
def test_murmur2_is_a_signed_32_bit_int(data: bytes) -> None:
    assert -(2**31) <= murmur2(data) < 2**31


def test_to_positive_clears_the_sign_bit_instead_of_negating() -> None:
    assert to_positive(-973932308) == -973932308 & 0x7FFFFFFF == 1173551340
    assert to_positive(-(2**31)) == 0
    assert to_positive(5) == 5


@pytest.mark.parametrize(("key", "partitions"), [("21", 10), ("foobar", 7), ("abc", 3)])
def test_partition_for_key_is_kafkas_formula(key: str, partitions: int) -> None:
    expected = dict(KAFKA_VECTORS)[key.encode()] & 0x7FFFFFFF
    assert partition_for_key(key, partitions) == expected % partitions


def test_known_partitions() -> None:
    # Hand-computed from the vectors: (-973932308 & 0x7fffffff) % 10 == 1173551340 % 10 == 0.
    assert partition_for_key("21", 10) == 0
    assert partition_for_key("abc", 10) == 479470107 % 10 == 7


def test_key_is_hashed_as_utf8() -> None:
    key = "clé-日本"
    assert partition_for_key(key, 1000) == to_positive(murmur2(key.encode("utf-8"))) % 1000


@given(st.text(min_size=1, max_size=40), st.integers(min_value=1, max_value=64))
def test_partition_in_range_and_stable(key: str, partitions: int) -> None:
    partition = partition_for_key(key, partitions)
    assert 0 <= partition < partitions
    assert partition_for_key(key, partitions) == partition


def test_single_partition_takes_everything() -> None:
    assert {partition_for_key(f"k{i}", 1) for i in range(50)} == {0}


@pytest.mark.parametrize("partitions", [0, -1])
def test_partition_count_must_be_positive(partitions: int) -> None:
    with pytest.raises(ValueError, match="partitions"):
        partition_for_key("k", partitions)
