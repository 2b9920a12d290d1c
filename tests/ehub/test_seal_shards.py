"""The seal stage across processes (ehub.pipeline.seal_shards): every license sealed
exactly once, each license's versions sealed and queued in order, a failed or killed
shard's licenses sealed by the next run and none twice."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from ehub.pipeline import seal, seal_shards
from ehub.pipeline.faults import EXIT_CODE
from ehub.store.models import AuditEvent, DeliveryRow, FeedMessageRow, LicenseRow, SignatureRow
from simulators.market_regulation import mutate
from tests.ehub.pipeline_support import MarketEnv, ingest_market, market_env

COUNT = 48


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MarketEnv]:
    e = market_env(tmp_path, monkeypatch, count=COUNT, seed=11, batch_size=5)
    # A second version of some licenses, normalized before any is sealed: a shard must
    # seal and queue each license's versions in order.
    assert mutate(e.source_url, ids=range(2, COUNT, 3), seed=3) > 10
    ingest_market(e.settings, e.store, e.source_url, monkeypatch)
    yield e
    e.store.dispose()


def _to_seal(e: MarketEnv) -> int:
    with e.store.session() as s:
        return int(
            s.scalar(select(func.count()).where(LicenseRow.state.in_(seal_shards.TO_SEAL))) or 0
        )


def _recording_pids(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    real = seal.SealContext.seal

    def sealing(self: seal.SealContext, registry: Any, lic: seal.Pending) -> seal.Outcome:
        with path.open("a") as f:
            f.write(f"{os.getpid()}\n")
        return real(self, registry, lic)

    monkeypatch.setattr(seal.SealContext, "seal", sealing)


def _check_sealed_once_in_order(e: MarketEnv) -> None:
    with e.store.session() as s:
        versions = s.execute(select(LicenseRow.id, LicenseRow.identifier, LicenseRow.state)).all()
        assert {st for _i, _n, st in versions} == {"sealed"}
        sigs = Counter(s.execute(select(SignatureRow.license_id, SignatureRow.format)).all())
        assert set(sigs.values()) == {1}
        assert {f for _l, f in sigs} == {"pades", "xmldsig"}
        assert len(sigs) == 2 * len(versions)
        sealed = Counter(
            s.execute(
                select(AuditEvent.subject, AuditEvent.version).where(AuditEvent.event == "sealed")
            ).all()
        )
        assert len(sealed) == len(versions) and set(sealed.values()) == {1}
        # Each license's versions queued in version order: to a platform and to an office.
        for model, col in ((DeliveryRow, DeliveryRow.license_id),
                           (FeedMessageRow, FeedMessageRow.license_id)):  # fmt: skip
            rows = s.execute(
                select(LicenseRow.identifier, LicenseRow.version, model.id)
                .join(LicenseRow, LicenseRow.id == col)
                .order_by(model.id)
            ).all()
            last: dict[str, int] = {}
            for ident, version, _id in rows:
                assert version >= last.get(ident, 0), (model.__name__, ident)
                last[ident] = version
            assert max(v for _i, v, _id in rows) == 2


def test_licenses_are_dealt_by_identifier_each_shard_in_id_order(env: MarketEnv) -> None:
    shards, last = seal_shards.plan_shards(env.store, 3)
    with env.store.session() as s:
        idents = dict(s.execute(select(LicenseRow.id, LicenseRow.identifier)).all())
    assert sorted(i for ids in shards for i in ids) == sorted(idents) and last == max(idents)
    for n, ids in enumerate(shards):
        assert list(ids) == sorted(ids)
        assert {seal_shards.shard_of(idents[i], 3) for i in ids} <= {n}
    assert sum(1 for ids in shards if ids) == 3


def test_a_sharded_run_seals_every_license_once_in_other_processes(
    env: MarketEnv, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    todo = _to_seal(env)
    pids = tmp_path / "pids"
    _recording_pids(monkeypatch, pids)
    result = seal.run(env.settings, env.store, workers=2, min_parallel=10)
    assert result.counts == {"sealed": todo, "held": 0}
    sealers = Counter(pids.read_text().split())
    assert len(sealers) == 2 and str(os.getpid()) not in sealers
    assert sum(sealers.values()) == todo
    _check_sealed_once_in_order(env)
    assert seal.run(env.settings, env.store, workers=2, min_parallel=10).counts == {
        "sealed": 0,
        "held": 0,
    }


def test_a_small_run_seals_alone(
    env: MarketEnv, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pids = tmp_path / "pids"
    _recording_pids(monkeypatch, pids)
    todo = _to_seal(env)
    assert seal.run(env.settings, env.store, workers=2, min_parallel=todo + 1).counts == {
        "sealed": todo,
        "held": 0,
    }
    assert set(pids.read_text().split()) == {str(os.getpid())}


def test_a_failed_shard_fails_the_run_and_the_next_run_seals_the_rest(
    env: MarketEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = seal.SealContext.seal
    parent = os.getpid()
    with env.store.session() as s:
        doomed = s.scalar(select(func.max(LicenseRow.id)))

    def failing(self: seal.SealContext, registry: Any, lic: seal.Pending) -> seal.Outcome:
        if lic.id == doomed and os.getpid() != parent:
            raise RuntimeError(f"renderer crashed on license {lic.id}")
        return real(self, registry, lic)

    monkeypatch.setattr(seal.SealContext, "seal", failing)
    todo = _to_seal(env)
    with pytest.raises(RuntimeError, match=f"renderer crashed on license {doomed}"):
        seal.run(env.settings, env.store, workers=2, min_parallel=10)
    left = _to_seal(env)
    assert 0 < left < todo  # the other shard, and the failed one's batches before, are in
    monkeypatch.undo()
    assert seal.run(env.settings, env.store, workers=2, min_parallel=10).counts["sealed"] == left
    _check_sealed_once_in_order(env)


_KILLED_RUN = """
import sys
from ehub.config import Settings
from ehub.pipeline import seal
from ehub.store.db import Store
home, out, db, mr = sys.argv[1:5]
settings = Settings.from_env(home=home, out_dir=out, database_url=db, market_regulation_url=mr,
                             batch_size=5, fault="seal:2")
seal.run(settings, Store(db), workers=2, min_parallel=10)
"""


def test_a_killed_shard_kills_the_stage_and_the_rerun_seals_the_rest_once(
    env: MarketEnv,
) -> None:
    st = env.settings
    todo = _to_seal(env)
    proc = subprocess.run(
        [sys.executable, "-c", _KILLED_RUN, str(st.home), str(st.out_dir), st.database_url,
         env.source_url],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == EXIT_CODE, proc.stderr[-2000:]
    left = _to_seal(env)
    assert 0 < left < todo  # each shard committed its first two batches, then died
    assert seal.run(st, env.store, workers=2, min_parallel=10).counts["sealed"] == left
    _check_sealed_once_in_order(env)


@pytest.mark.parametrize(("raw", "workers"), [("", 0), ("0", 0), ("3", 3)])
def test_seal_workers_setting(
    raw: str, workers: int, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from ehub.config import Settings

    monkeypatch.setenv("EHUB_SEAL_WORKERS", raw)
    settings = Settings.from_env(home=tmp_path)
    assert settings.seal_workers == workers
    assert seal_shards.default_workers(settings) == (workers or min(os.cpu_count() or 1, 4))


@pytest.mark.parametrize("raw", ["two", "-1"])
def test_a_bad_seal_workers_setting_is_named(
    raw: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from ehub.config import Settings
    from ehub.errors import ConfigError

    monkeypatch.setenv("EHUB_SEAL_WORKERS", raw)
    with pytest.raises(ConfigError, match="EHUB_SEAL_WORKERS must be"):
        Settings.from_env(home=tmp_path)
