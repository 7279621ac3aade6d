"""Kafka's default partitioner for keyed records, so partition numbers match a real cluster.

Apache Kafka picks ``toPositive(murmur2(utf8(key))) % numPartitions`` for a keyed record
(``BuiltInPartitioner.partitionForKey``); librdkafka's ``murmur2`` partitioner agrees.
"""

from __future__ import annotations

import struct

_MASK32 = 0xFFFFFFFF
_SEED = 0x9747B28C
_M = 0x5BD1E995
_R = 24


def murmur2(data: bytes) -> int:
    """MurmurHash2 as Kafka's ``Utils.murmur2``: a signed 32-bit result."""
    length = len(data)
    h = (_SEED ^ length) & _MASK32
    whole = length - length % 4
    for (k,) in struct.iter_unpack("<I", data[:whole]):
        k = (k * _M) & _MASK32
        k ^= k >> _R
        k = (k * _M) & _MASK32
        h = ((h * _M) & _MASK32) ^ k
    tail = data[whole:]
    # The tail bytes fall through from the highest to the lowest, as in the Java switch.
    if len(tail) == 3:
        h ^= tail[2] << 16
    if len(tail) >= 2:
        h ^= tail[1] << 8
    if tail:
        h ^= tail[0]
        h = (h * _M) & _MASK32
    h ^= h >> 13
    h = (h * _M) & _MASK32
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def to_positive(value: int) -> int:
    """Kafka's ``Utils.toPositive``: clear the sign bit (not ``abs``)."""
    return value & 0x7FFFFFFF


def partition_for_key(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives a record with this key."""
    if partitions < 1:
        raise ValueError(f"partitions must be >= 1, got {partitions}")
    return to_positive(murmur2(key.encode("utf-8"))) % partitions
