"""The output folder of ``ehub office consume`` (:mod:`ehub.office_consumer`): the
files are the source of truth of what an office has received.

``partition-<n>.jsonl`` per partition and ``rejects.jsonl``, each line a JSON
object with ``partition`` and ``offset``. :func:`resume_points` cuts a torn last
line off every file (a kill during a write: no newline, or not a complete JSON
record) and returns, per partition, the offset after the highest one found.
:class:`Writer` appends and makes everything written durable (fsync) on ``sync``.

Must not read or log record contents beyond the partition and offset.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import IO

from ehub.errors import ConfigError

log = logging.getLogger(__name__)

STATE_FILE = "consumer.json"
REJECTS_FILE = "rejects.jsonl"


def partition_file(out_dir: Path, partition: int) -> Path:
    return out_dir / f"partition-{partition}.jsonl"


def _line_start(f: IO[bytes], end: int) -> int:
    """Position just after the newline that precedes ``end`` (0 if none)."""
    pos, step = end, 65536
    while pos > 0:
        lo = max(0, pos - step)
        f.seek(lo)
        chunk = f.read(pos - lo)
        i = chunk.rfind(b"\n")
        if i >= 0:
            return lo + i + 1
        pos = lo
    return 0


def _line_offsets(line: bytes) -> tuple[int, int] | None:
    try:
        row = json.loads(line)
        return int(row["partition"]), int(row["offset"])
    except (ValueError, KeyError, TypeError):
        return None


def repair_tail(path: Path) -> tuple[tuple[int, int] | None, int]:
    """Cut a torn last line off ``path``: returns the (partition, offset) of the last
    complete line, or None, and how many bytes were cut.

    Torn: the bytes after the last newline, then at most one newline-terminated
    line that is not a complete record (a power cut can leave zeros). Anything more
    is not a tear: :class:`ConfigError` rather than cutting an office's data."""
    with open(path, "r+b") as f:
        size = end = f.seek(0, os.SEEK_END)
        last: tuple[int, int] | None = None
        unreadable = 0
        while end > 0:
            f.seek(end - 1)
            if f.read(1) == b"\n":
                start = _line_start(f, end - 1)
                f.seek(start)
                last = _line_offsets(f.read(end - start))
                if last is not None:
                    break
                unreadable += 1
                if unreadable > 1:
                    raise ConfigError(
                        f"{path}: the last lines are not records of `ehub office consume` "
                        "(is this its output folder?); move the file away and re-run"
                    )
            else:
                start = _line_start(f, end)
            end = start
        if end != size:
            f.truncate(end)
            f.flush()
            os.fsync(f.fileno())
    return last, size - end


def _reject_positions(path: Path) -> dict[int, int]:
    """Partition → highest rejected offset (the rejects file is small: read it all)."""
    out: dict[int, int] = {}
    with open(path, "rb") as f:
        for line in f:
            got = _line_offsets(line)
            if got is not None:
                out[got[0]] = max(out.get(got[0], -1), got[1])
    return out


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def resume_points(out_dir: Path) -> tuple[dict[int, int], list[str]]:
    """Partition → next offset from the files (after repairing torn tails), and the
    names of the files repaired."""
    nxt: dict[int, int] = {}
    repaired: list[str] = []
    for path in sorted(out_dir.glob("partition-*.jsonl")):
        last, cut = repair_tail(path)
        if cut:
            repaired.append(path.name)
            log.warning("consume: %s: cut a torn last line (%d bytes)", path.name, cut)
        if last is not None:
            nxt[last[0]] = max(nxt.get(last[0], 0), last[1] + 1)
    rejects = out_dir / REJECTS_FILE
    if rejects.exists():
        _, cut = repair_tail(rejects)
        if cut:
            repaired.append(rejects.name)
            log.warning("consume: %s: cut a torn last line (%d bytes)", rejects.name, cut)
        for p, off in _reject_positions(rejects).items():
            nxt[p] = max(nxt.get(p, 0), off + 1)
    return nxt, repaired


class Writer:
    """Append-only output files; ``sync`` makes everything written durable."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self._files: dict[str, IO[bytes]] = {}
        self._dirty: set[str] = set()

    def _file(self, name: str) -> IO[bytes]:
        f = self._files.get(name)
        if f is None:
            path = self.out_dir / name
            new = not path.exists()
            f = self._files[name] = open(path, "ab")  # noqa: SIM115 - kept open for the run
            if new:
                fsync_dir(self.out_dir)
        return f

    def append(self, name: str, line: bytes) -> None:
        self._file(name).write(line)
        self._dirty.add(name)

    def sync(self) -> None:
        for name in sorted(self._dirty):
            f = self._files[name]
            f.flush()
            os.fsync(f.fileno())
        self._dirty.clear()

    def close(self) -> None:
        self.sync()
        for f in self._files.values():
            f.close()
