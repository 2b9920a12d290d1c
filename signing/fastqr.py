"""A fast QR code encoder (ISO/IEC 18004, byte mode, error correction level M).

reportlab's ``qrencoder`` (used by :mod:`signing.render`) spends ~9 ms per
license code in pure Python: eight full matrix builds to choose the mask and a
polynomial Reed-Solomon. The bulk-sealing fast path (:mod:`signing.fastpades`)
needs the same code in well under a millisecond, so this module:

- takes the standard's tables (RS block structure, alignment pattern
  positions, BCH codes of the format and version information) from
  reportlab's encoder, so the two cannot disagree on them;
- caches, per version, the function-pattern matrix and the order in which
  data modules are placed;
- computes Reed-Solomon remainders with precomputed generator products held
  as Python integers (one shift and one XOR per data byte);
- evaluates the eight masks at once with numpy and keeps the one with the
  lowest ISO/IEC 18004 penalty (rules N1-N4), as the standard prescribes.

It must not draw anything: :func:`qr_matrix` returns the dark modules only.
"""

from __future__ import annotations

import functools

import numpy as np
from numpy.typing import NDArray
from reportlab.graphics.barcode import qrencoder

__all__ = ["qr_matrix"]

_EC_M = qrencoder.QRErrorCorrectLevel.M  # format-information bits 00
_MAX_VERSION = 40

# GF(256) with the QR polynomial x^8 + x^4 + x^3 + x^2 + 1.
_EXP = [0] * 512
_LOG = [0] * 256
_x = 1
for _i in range(255):
    _EXP[_i] = _x
    _LOG[_x] = _i
    _x <<= 1
    if _x & 0x100:
        _x ^= 0x11D
for _i in range(255, 512):
    _EXP[_i] = _EXP[_i - 255]


def _gmul(a: int, b: int) -> int:
    return 0 if a == 0 or b == 0 else _EXP[_LOG[a] + _LOG[b]]


@functools.cache
def _generator_rows(ec_len: int) -> tuple[int, ...]:
    """For each factor f, the product f * g(x) (without its leading term) as an integer."""
    gen = [1]
    for i in range(ec_len):
        nxt = [0] * (len(gen) + 1)
        for j, coef in enumerate(gen):
            nxt[j] ^= coef
            nxt[j + 1] ^= _gmul(coef, _EXP[i])
        gen = nxt
    tail = gen[1:]
    return tuple(int.from_bytes(bytes(_gmul(c, f) for c in tail), "big") for f in range(256))


def _rs_remainder(data: bytes, ec_len: int) -> bytes:
    rows = _generator_rows(ec_len)
    mask = (1 << (8 * ec_len)) - 1
    shift = 8 * (ec_len - 1)
    rem = 0
    for byte in data:
        rem = ((rem << 8) & mask) ^ rows[(rem >> shift) ^ byte]
    return rem.to_bytes(ec_len, "big")


@functools.cache
def _blocks(version: int) -> tuple[tuple[int, int], ...]:
    """(total codewords, data codewords) of each RS block."""
    return tuple(
        (b.totalCount, b.dataCount) for b in qrencoder.QRRSBlock.getRSBlocks(version, _EC_M)
    )


def _capacity_bits(version: int) -> int:
    return 8 * sum(d for _, d in _blocks(version))


@functools.cache
def _layout(version: int) -> tuple[NDArray[np.bool_], NDArray[np.bool_], NDArray[np.intp]]:
    """Function-pattern modules (values), which modules are function modules, and the
    flat indices of the data modules in placement order."""
    n = version * 4 + 17
    value = np.zeros((n, n), dtype=bool)
    used = np.zeros((n, n), dtype=bool)

    def finder(r0: int, c0: int) -> None:
        for r in range(-1, 8):
            for c in range(-1, 8):
                rr, cc = r0 + r, c0 + c
                if 0 <= rr < n and 0 <= cc < n:
                    used[rr, cc] = True
                    value[rr, cc] = (
                        (0 <= r <= 6 and c in (0, 6))
                        or (0 <= c <= 6 and r in (0, 6))
                        or (2 <= r <= 4 and 2 <= c <= 4)
                    )

    finder(0, 0)
    finder(n - 7, 0)
    finder(0, n - 7)
    positions = qrencoder.QRUtil.getPatternPosition(version)
    for r in positions:
        for c in positions:
            if used[r, c]:
                continue
            for dr in range(-2, 3):
                for dc in range(-2, 3):
                    used[r + dr, c + dc] = True
                    value[r + dr, c + dc] = max(abs(dr), abs(dc)) != 1
    for i in range(8, n - 8):
        if not used[i, 6]:
            used[i, 6] = True
            value[i, 6] = i % 2 == 0
        if not used[6, i]:
            used[6, i] = True
            value[6, i] = i % 2 == 0
    for r, c in _format_cells(n):
        used[r, c] = True
    used[n - 8, 8] = True
    value[n - 8, 8] = True  # the dark module
    if version >= 7:
        bits = qrencoder.QRUtil.getBCHTypeNumber(version)
        for i in range(18):
            dark = bool((bits >> i) & 1)
            a, b = i // 3, i % 3 + n - 11
            used[a, b] = used[b, a] = True
            value[a, b] = value[b, a] = dark
    order: list[int] = []
    col = n - 1
    upward = True
    while col > 0:
        if col == 6:
            col -= 1
        rows = range(n - 1, -1, -1) if upward else range(n)
        for r in rows:
            for c in (col, col - 1):
                if not used[r, c]:
                    order.append(r * n + c)
        upward = not upward
        col -= 2
    return value, used, np.array(order, dtype=np.intp)


def _format_cells(n: int) -> list[tuple[int, int]]:
    """Cells of the 15 format bits, first copy then second copy, bit i at index i."""
    first = []
    second = []
    for i in range(15):
        first.append((i, 8) if i < 6 else (i + 1, 8) if i < 8 else (n - 15 + i, 8))
        second.append((8, n - i - 1) if i < 8 else (8, 15 - i) if i < 9 else (8, 14 - i))
    return first + second


@functools.cache
def _masks(version: int) -> NDArray[np.bool_]:
    n = version * 4 + 17
    i, j = np.indices((n, n))
    return np.stack(
        [
            (i + j) % 2 == 0,
            i % 2 == 0,
            j % 3 == 0,
            (i + j) % 3 == 0,
            (i // 2 + j // 3) % 2 == 0,
            (i * j) % 2 + (i * j) % 3 == 0,
            ((i * j) % 2 + (i * j) % 3) % 2 == 0,
            ((i * j) % 3 + (i + j) % 2) % 2 == 0,
        ]
    )


def _penalties(cands: NDArray[np.bool_]) -> NDArray[np.int64]:
    """ISO/IEC 18004 mask penalty (N1 + N2 + N3 + N4) of each candidate matrix."""
    total = np.zeros(cands.shape[0], dtype=np.int64)
    n = cands.shape[1]
    for x in (cands, cands.transpose(0, 2, 1)):
        same = x[:, :, 1:] == x[:, :, :-1]
        five = same[:, :, :-3] & same[:, :, 1:-2] & same[:, :, 2:-1] & same[:, :, 3:]
        starts = five.copy()
        starts[:, :, 1:] &= ~same[:, :, : five.shape[2] - 1]
        # A run of L >= 5 counts 3 + (L - 5): its L - 4 five-windows plus 2 at its start.
        total += five.sum(axis=(1, 2)) + 2 * starts.sum(axis=(1, 2))
        # Finder-like 1011101 with four light modules after (or before) it.
        w = n - 10
        core = x[:, :, 0 : w + 4] & x[:, :, 2 : w + 6] & x[:, :, 3 : w + 7] & x[:, :, 4 : w + 8]
        core &= x[:, :, 6 : w + 10] & ~x[:, :, 1 : w + 5] & ~x[:, :, 5 : w + 9]
        light = ~(x[:, :, :-3] | x[:, :, 1:-2] | x[:, :, 2:-1] | x[:, :, 3:])
        hits = (core[:, :, :w] & light[:, :, 7 : w + 7]).sum(axis=(1, 2))
        hits += (light[:, :, :w] & core[:, :, 4 : w + 4]).sum(axis=(1, 2))
        total += 40 * hits
    block = (
        (cands[:, :-1, :-1] == cands[:, 1:, :-1])
        & (cands[:, :-1, :-1] == cands[:, :-1, 1:])
        & (cands[:, :-1, :-1] == cands[:, 1:, 1:])
    )
    total += 3 * block.sum(axis=(1, 2))
    dark = cands.sum(axis=(1, 2)) * 100 // (n * n)
    total += 10 * (np.abs(dark - 50) // 5)
    return total


@functools.cache
def _format_bits(n: int) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.bool_]]:
    """Rows, columns and the values per mask (8 x 30) of the format information."""
    cells = _format_cells(n)
    values = np.array(
        [
            [(qrencoder.QRUtil.getBCHTypeInfo(_EC_M << 3 | m) >> (i % 15)) & 1 for i in range(30)]
            for m in range(8)
        ],
        dtype=bool,
    )
    return np.array([r for r, _ in cells]), np.array([c for _, c in cells]), values


def _codewords(data: bytes) -> tuple[int, bytes]:
    """The smallest version holding ``data`` and its interleaved codewords."""
    for version in range(1, _MAX_VERSION + 1):
        count_bits = 8 if version < 10 else 16
        if 4 + count_bits + 8 * len(data) <= _capacity_bits(version):
            break
    else:
        raise ValueError(f"{len(data)} bytes do not fit a QR code at error correction level M")
    capacity = _capacity_bits(version) // 8
    bits = (0b0100 << count_bits | len(data)) << (8 * len(data)) | int.from_bytes(data, "big")
    nbits = 4 + count_bits + 8 * len(data)
    terminator = min(4, 8 * capacity - nbits)
    bits <<= terminator
    nbits += terminator
    bits <<= -nbits % 8
    nbits += -nbits % 8
    stream = bits.to_bytes(nbits // 8, "big")
    stream += (b"\xec\x11" * capacity)[: capacity - len(stream)]
    data_blocks, ec_blocks = [], []
    at = 0
    for total, count in _blocks(version):
        chunk = stream[at : at + count]
        at += count
        data_blocks.append(chunk)
        ec_blocks.append(_rs_remainder(chunk, total - count))
    out = bytearray()
    for blocks in (data_blocks, ec_blocks):
        for k in range(max(len(b) for b in blocks)):
            out.extend(b[k] for b in blocks if k < len(b))
    return version, bytes(out)


def qr_matrix(text: str, mask: int | None = None) -> NDArray[np.bool_]:
    """The modules of the QR code of ``text`` (UTF-8, byte mode, level M): True = dark.

    ``mask`` forces a mask pattern (0-7); by default the one with the lowest
    penalty. Raises :class:`ValueError` when the text is longer than a version-40
    code holds.
    """
    version, words = _codewords(text.encode("utf-8"))
    value, used, order = _layout(version)
    n = value.shape[0]
    bits = np.unpackbits(np.frombuffer(words, dtype=np.uint8)).astype(bool)
    flat = value.copy().reshape(-1)
    flat[order[: len(bits)]] = bits[: len(order)]
    free = ~used
    cands = np.repeat(flat.reshape(n, n)[None], 8, axis=0)
    cands ^= _masks(version) & free
    rows, cols, flags = _format_bits(n)
    cands[:, rows, cols] = flags
    best = int(np.argmin(_penalties(cands))) if mask is None else mask
    result: NDArray[np.bool_] = cands[best]
    return result
