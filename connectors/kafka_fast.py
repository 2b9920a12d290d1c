"""Fast paths for kafka-python's two pure-Python hot spots: CRC-32C and murmur2.

**CRC-32C.** Every Kafka v2 record batch carries a CRC-32C (Castagnoli) of its
body: the producer computes it for each batch it sends, the consumer checks it
for each batch it reads. kafka-python computes it in pure Python (~170 ms per
MB) unless the optional C package ``crc32c`` is installed (LGPL: not ours).
:func:`crc32c` uses Google's C library (``google-crc32c``, a dependency:
~0.1 ms per MB). Without it (a build without the C extension), it falls back to
a numpy computation: the buffer split into lanes computed side by side with
table look-ups, the lane CRCs folded pairwise (CRC is linear over GF(2):
``crc(A‖B) = shift_|B|(crc(A)) ^ crc(B)``), ~30× faster than pure Python on
batches of 100 kB and more, but with ~1 ms of fixed cost per batch — as much
as signing 25 feed messages.

**Record batches**: :func:`record_batch` writes a v2 record batch as
kafka-python's ``DefaultRecordBatchBuilder`` does (byte for byte, for what the
feeds send: no compression, one timestamp, one header per record), joining
each record's parts once instead of appending field by field: ~5× faster.

**murmur2**: the key → partition hash of Kafka's default partitioner (the Java
client's and kafka-python's, so a record's versions land on the partition they
always did), word by word with :mod:`struct` instead of byte by byte: ~2× faster;
:func:`murmur2_many` hashes a batch's keys with numpy, ~20× faster again.

:func:`install` makes kafka-python use the CRC, unless the C package is there
(used as it is); :class:`Murmur2Partitioner` is passed as the producer's
``partitioner``. Must not import Airflow.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable, Sequence
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


def _google_crc32c() -> Callable[[bytes], int] | None:
    try:
        import google_crc32c
    except ImportError:  # pragma: no cover - a locked dependency
        return None
    return google_crc32c.value if google_crc32c.implementation == "c" else None


_C_VALUE = _google_crc32c()


def crc32c(data: Any) -> int:
    """CRC-32C of ``data`` (bytes, bytearray or memoryview), as kafka-python's ``calc_crc32c``."""
    if _C_VALUE is not None:
        return int(_C_VALUE(bytes(data)))
    return crc32c_numpy(data)


def _crc32c_of(*chunks: bytes) -> int:
    """:func:`crc32c` of the chunks one after the other."""
    if _C_VALUE is not None:
        import google_crc32c

        crc = 0
        for chunk in chunks:
            crc = google_crc32c.extend(crc, chunk)
        return int(crc)
    return crc32c_numpy(b"".join(chunks))


def crc32c_numpy(data: Any) -> int:
    """:func:`crc32c` with numpy (the fallback without Google's C library)."""
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


def murmur2_many(keys: Sequence[bytes]) -> list[int]:
    """:func:`murmur2` of each key, computed with numpy over the keys of one length
    at a time (the feeds' keys, license identifiers, share a few lengths): ~20×
    faster than one by one on a batch of thousands."""
    out = [0] * len(keys)
    by_length: dict[int, list[int]] = {}
    for i, key in enumerate(keys):
        by_length.setdefault(len(key), []).append(i)
    m = np.uint32(_M)
    for length, idx in by_length.items():
        if len(idx) < 8:  # numpy's fixed costs outweigh the loop
            for i in idx:
                out[i] = murmur2(keys[i])
            continue
        joined = b"".join(keys[i] for i in idx)
        rows = np.frombuffer(joined, dtype=np.uint8).reshape(len(idx), length)
        h = np.full(len(idx), (0x9747B28C ^ length) & _MASK, dtype=np.uint32)
        words = length // 4
        if words:
            block = np.ascontiguousarray(rows[:, : words * 4]).view("<u4")
            for j in range(words):
                k = block[:, j] * m  # uint32 arithmetic wraps as the & _MASK of murmur2
                k ^= k >> np.uint32(24)
                h = (h * m) ^ (k * m)
        rest = length & 3
        if rest:
            tail = rows[:, words * 4 :].astype(np.uint32)
            if rest >= 3:
                h ^= tail[:, 2] << np.uint32(16)
            if rest >= 2:
                h ^= tail[:, 1] << np.uint32(8)
            h = (h ^ tail[:, 0]) * m
        h ^= h >> np.uint32(13)
        h = h * m
        h ^= h >> np.uint32(15)
        for i, v in zip(idx, h.tolist(), strict=True):
            out[i] = v
    return out


class Murmur2Partitioner:
    """kafka-python's ``DefaultPartitioner`` for keyed messages, with :func:`murmur2`."""

    def __call__(self, key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
        if key is None:  # as the default: any partition
            import random

            return random.choice(available or all_partitions)
        return all_partitions[(murmur2(key) & 0x7FFFFFFF) % len(all_partitions)]


# --- record batches ------------------------------------------------------------------

# kafka-python's DefaultRecordBase.HEADER_STRUCT: base offset, length, partition leader
# epoch, magic, CRC, attributes, last offset delta, first and max timestamp, producer
# id and epoch, base sequence, record count.
_BATCH_HEADER = struct.Struct(">qiibIhiqqqhii")
_CRC_AT = struct.calcsize(">qiib")  # the CRC covers everything after it
_AFTER_LENGTH = struct.calcsize(">qi")


def _varint_slow(value: int) -> bytes:
    """Kafka's varint of ``value``: zigzag, then 7 bits a byte, low bits first."""
    z = (value << 1) ^ (value >> 63)
    out = bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


_SMALL_VARINTS = [_varint_slow(v) for v in range(8192)]  # lengths and offsets in a batch


def _varint(value: int) -> bytes:
    return _SMALL_VARINTS[value] if 0 <= value < 8192 else _varint_slow(value)


def record_batch(
    records: Sequence[tuple[bytes, bytes, bytes]], timestamp_ms: int, header_key: bytes
) -> bytes:
    """A v2 record batch of ``(key, value, header value)`` records at offsets 0, 1, ...
    with one ``timestamp_ms`` and one header ``header_key`` each; uncompressed, not
    transactional, no producer id — what ``DefaultRecordBatchBuilder`` builds (magic 2,
    ``producer_id=-1``, ``producer_epoch=-1``, ``base_sequence=-1``) from the same
    appends."""
    if not records:
        raise ValueError("a record batch holds at least one record")
    varint, small = _varint, _SMALL_VARINTS
    header = varint(len(header_key)) + header_key
    parts: list[bytes] = []
    for n, (key, value, header_value) in enumerate(records):
        # attributes 0, timestamp delta 0, offset delta n, key, value, one header
        body = b"".join((
            b"\x00\x00", small[n] if n < 8192 else varint(n), varint(len(key)), key,
            varint(len(value)), value, b"\x02", header, varint(len(header_value)), header_value,
        ))  # fmt: skip
        parts.append(varint(len(body)))
        parts.append(body)
    body = b"".join(parts)
    head = _BATCH_HEADER.pack(
        0, _BATCH_HEADER.size - _AFTER_LENGTH + len(body), 0, 2, 0, 0,
        len(records) - 1, timestamp_ms, timestamp_ms, -1, -1, -1, len(records),
    )  # fmt: skip
    crc = _crc32c_of(head[_CRC_AT + 4 :], body)
    return b"".join((head[:_CRC_AT], struct.pack(">I", crc), head[_CRC_AT + 4 :], body))
