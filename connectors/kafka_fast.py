"""Fast paths for kafka-python's two pure-Python hot spots: CRC-32C and murmur2.

**CRC-32C, vectorized with numpy.**
Every Kafka v2 record batch carries a CRC-32C (Castagnoli) of its body: the
producer computes it for each batch it sends, the consumer checks it for each
batch it reads. kafka-python computes it in pure Python (~170 ms per MB) unless
the optional C package ``crc32c`` is installed; on the return feeds that was
~85 % of the producer's CPU time. :func:`crc32c` splits the buffer into lanes
computed side by side with numpy table look-ups, then folds the lane CRCs
pairwise (CRC is linear over GF(2): ``crc(A‖B) = shift_|B|(crc(A)) ^ crc(B)``),
~30× faster on batches of 100 kB and more.

**murmur2**: the key → partition hash of Kafka's default partitioner (the Java
client's and kafka-python's, so a record's versions land on the partition they
always did), word by word with :mod:`struct` instead of byte by byte: ~2× faster.

:func:`install` makes kafka-python use the CRC, unless the C package is there
(faster still); :class:`Murmur2Partitioner` is passed as the producer's
``partitioner``. Must not import Airflow.
"""

from __future__ import annotations

import functools
import struct
from typing import Any

import numpy as np

POLY = 0x82F63B78  # CRC-32C, reflected
LANE = 64  # bytes per lane: the number of vector steps per buffer
_SMALL = 2048  # below this, the table loop of kafka-python is as fast


def _byte_table() -> np.ndarray:
    table = np.zeros(256, dtype=np.uint32)
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ POLY if c & 1 else c >> 1
        table[i] = c
    return table


_TABLE = _byte_table()


def _shift_bytes(c: int, n: int) -> int:
    """The register after ``n`` zero bytes from ``c`` (init 0, no final xor)."""
    t = _TABLE
    for _ in range(n):
        c = int(t[c & 0xFF]) ^ (c >> 8)
    return c


def _compose(tables: np.ndarray, c: int) -> int:
    return int(tables[0][c & 0xFF] ^ tables[1][(c >> 8) & 0xFF]
               ^ tables[2][(c >> 16) & 0xFF] ^ tables[3][c >> 24])  # fmt: skip


@functools.cache
def _shift_tables(level: int) -> np.ndarray:
    """Four 256-entry tables of the linear map "append LANE·2^level zero bytes"."""
    if level == 0:
        out = np.zeros((4, 256), dtype=np.uint32)
        for k in range(4):
            for b in range(256):
                out[k, b] = _shift_bytes(b << (8 * k), LANE)
        return out
    prev = _shift_tables(level - 1)  # shifting by 2L = shifting by L twice
    out = np.zeros((4, 256), dtype=np.uint32)
    for k in range(4):
        for b in range(256):
            out[k, b] = _compose(prev, _compose(prev, b << (8 * k)))
    return out


def crc32c(data: Any) -> int:
    """CRC-32C of ``data`` (bytes, bytearray or memoryview), as kafka-python's ``calc_crc32c``."""
    buf = np.frombuffer(bytes(data), dtype=np.uint8)
    n = buf.size
    if n < _SMALL:
        return _fallback(data)
    # Init 0xFFFFFFFF = init 0 with the first four bytes inverted; leading zero
    # bytes leave a zero register unchanged, so the front is padded to a whole
    # power-of-two number of lanes.
    lanes = 1 << max(0, (-(-n // LANE) - 1).bit_length())
    padded = np.zeros(lanes * LANE, dtype=np.uint8)
    padded[lanes * LANE - n :] = buf
    padded[lanes * LANE - n : lanes * LANE - n + 4] ^= 0xFF
    cols = padded.reshape(lanes, LANE).T.astype(np.uint32)  # row j: byte j of every lane
    c = np.zeros(lanes, dtype=np.uint32)
    table = _TABLE
    for j in range(LANE):
        c = table[(c ^ cols[j]) & 0xFF] ^ (c >> 8)
    level = 0
    while c.size > 1:
        left, right = c[0::2], c[1::2]
        t = _shift_tables(level)
        c = (t[0][left & 0xFF] ^ t[1][(left >> 8) & 0xFF] ^ t[2][(left >> 16) & 0xFF]
             ^ t[3][left >> 24] ^ right)  # fmt: skip
        level += 1
    return int(c[0]) ^ 0xFFFFFFFF


def _fallback(data: Any) -> int:
    from kafka.record._crc32c import crc

    return int(crc(data))


def install() -> bool:
    """Make kafka-python's record batches use :func:`crc32c`; False when its C
    ``crc32c`` package is installed (it is used as it is)."""
    import kafka.record.default_records as records
    from kafka.record import util

    if util.crc32c_c is not None:
        return False
    records.calc_crc32c = crc32c  # type: ignore[attr-defined]
    return True


_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 of ``data`` (equal to ``kafka.partitioner.default.murmur2``)."""
    length = len(data)
    h = (0x9747B28C ^ length) & _MASK
    words = length // 4
    for k in struct.unpack_from(f"<{words}I", data):
        k = (k * _M) & _MASK
        k ^= k >> 24
        h = ((h * _M) & _MASK) ^ ((k * _M) & _MASK)
    rest = length & 3
    if rest:
        tail = data[words * 4 :]
        if rest >= 3:
            h ^= tail[2] << 16
        if rest >= 2:
            h ^= tail[1] << 8
        h = ((h ^ tail[0]) * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


class Murmur2Partitioner:
    """kafka-python's ``DefaultPartitioner`` for keyed messages, with :func:`murmur2`."""

    def __call__(self, key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
        if key is None:  # as the default: any partition
            import random

            return random.choice(available or all_partitions)
        return all_partitions[(murmur2(key) & 0x7FFFFFFF) % len(all_partitions)]
