"""Sealed files: written whole or not at all, and on disk before the store says sealed
(one flush of a seal stage batch's files before its commit)."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ehub.pipeline import faults, seal, seal_files
from ehub.pipeline.seal_files import FileWriter
from tests.ehub.pipeline_support import MarketEnv, market_env


def _fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = os.fsync

    def counting(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(seal_files.os, "fsync", counting)
    return calls


def test_a_file_alone_is_flushed_before_its_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fsyncs = _fsyncs(monkeypatch)
    writer = FileWriter()
    writer.write(tmp_path / "a.pdf", b"%PDF-a")
    assert (tmp_path / "a.pdf").read_bytes() == b"%PDF-a" and len(fsyncs) == 1
    assert writer.flush() == 0 and not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("syncfs", [True, False])
def test_deferred_files_are_flushed_together(
    syncfs: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fsyncs = _fsyncs(monkeypatch)
    synced: list[int] = []
    if syncfs:
        assert seal_files._SYNCFS is not None  # Linux with glibc: the machine this runs on
        real = seal_files._SYNCFS

        def counting(fd: int) -> int:
            synced.append(fd)
            return real(fd)  # type: ignore[operator,no-any-return]

        monkeypatch.setattr(seal_files, "_SYNCFS", counting)
    else:
        monkeypatch.setattr(seal_files, "_SYNCFS", None)
    writer = FileWriter(deferred=True)
    for n in range(5):
        writer.write(tmp_path / f"{n}.pdf", b"%PDF-" + bytes([n]))
    assert fsyncs == [] and synced == []
    assert writer.flush() == 5
    assert (len(synced), len(fsyncs)) == ((1, 0) if syncfs else (0, 5))
    assert writer.flush() == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{n}.pdf" for n in range(5)]


def test_a_full_disk_leaves_no_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(faults, "_writes", Counter())  # this test's writes counted alone
    writer = FileWriter(deferred=True, fault="enospc:seal:2")
    writer.write(tmp_path / "1.pdf", b"%PDF-1")
    with pytest.raises(OSError):
        writer.write(tmp_path / "2.pdf", b"%PDF-2")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1.pdf"]
    assert writer.flush() == 1


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MarketEnv]:
    e = market_env(tmp_path, monkeypatch, count=12, seed=3, batch_size=5)
    yield e
    e.store.dispose()


def test_the_seal_stage_flushes_a_batchs_files_before_recording_it(
    env: MarketEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    log: list[str] = []
    real_write, real_flush, real_record = FileWriter.write, FileWriter.flush, seal.record

    def write(self: FileWriter, path: Path, data: bytes) -> None:
        assert self.deferred
        real_write(self, path, data)
        log.append("write")

    def flush(self: FileWriter) -> int:
        n = real_flush(self)
        log.append(f"flush {n}")
        return n

    def record(s: Any, outcomes: Any) -> None:
        log.append("record")
        real_record(s, outcomes)

    monkeypatch.setattr(FileWriter, "write", write)
    monkeypatch.setattr(FileWriter, "flush", flush)
    monkeypatch.setattr(seal, "record", record)
    result = seal.run(env.settings, env.store, workers=1)
    assert result.counts["sealed"] > 5
    batches = " ".join(log).split("record")[:-1]
    assert len(batches) == result.batches
    for batch in batches:  # each: its files written, then all flushed, then recorded
        words = batch.split()
        writes = words.count("write")
        assert writes > 0 and batch.strip().endswith(f"flush {writes}")
