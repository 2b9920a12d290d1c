"""The hostile-input corpus (tests/security/corpus.py) through the real intake paths.

Field cases go, each beside a good record, through CSV, XLSX and XML files in a drop
folder, a department SQL database and a department REST API, then the extract and
normalize stages, on SQLite and PostgreSQL. File cases are dropped between two good
files. For every case: the record is quarantined with a reason naming source, record
and field, or kept as inert text; a refused file fails its source's run with a message
naming the source and the file and stays where it was; no exception other than the
source's own error escapes; no file appears outside the drop folder; every good record
is kept; the rejects report and the office export show formulas neutralised.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from connectors.files import FileDropSource
from ehub import office_feed
from ehub.config import Settings
from ehub.errors import SourceRejected
from ehub.offices import add_office
from ehub.pipeline import extract, normalize
from ehub.pipeline.extract import no_nul
from ehub.reports import ReportScope, write_rejects_report
from ehub.sources.build import build_source
from ehub.store.db import Store
from ehub.store.models import LicenseRow, RawRecord
from tests.security.corpus import CANARY, FieldCase, field_cases, good_record
from tests.security.corpus_files import FileCase, file_cases
from tests.security.corpus_support import (
    TALLY,
    Settled,
    drop,
    file_spec,
    formula_cells_csv,
    formula_cells_xlsx,
    ingest,
    rest_source,
    settled,
    sql_source,
    strings,
    tree,
)

EXT = {"csv": "csv", "xlsx": "xlsx", "xml": "xml"}


def _hub(tmp_path: Path, url: str) -> tuple[Settings, Store]:
    settings = Settings.from_env(home=tmp_path / "home", database_url=url, batch_size=11)
    store = Store(url)
    store.migrate()
    return settings, store


def _check_field_case(case: FieldCase, key: str, got: Settled, source: str) -> list[str]:
    """What is wrong with how the store settled ``case`` (empty: nothing)."""
    state = got.states.get(key)
    if state is None:
        return [f"{case.name}: record {key} lost (no raw record)"]
    if case.expect == "quarantine":
        rows = got.quarantine.get(key, [])
        if state != "quarantined" or not rows:
            return [f"{case.name}: expected quarantine, raw state {state}"]
        if not any(f == case.target and en and zh for _, f, en, zh in rows):
            return [f"{case.name}: quarantined, but not on {case.target}: {rows}"]
        return []
    if state != "normalized" or key not in got.documents:
        return [f"{case.name}: expected to be kept, raw state {state}: {got.quarantine.get(key)}"]
    if case.verbatim and str(case.value).strip() not in set(strings(got.documents[key])):
        return [f"{case.name}: value not kept verbatim"]
    return []


def _exports(store: Store, source: str, out: Path) -> tuple[list[str], int]:
    """Formula cells left active in the rejects report and the office export; rows exported."""
    with store.session() as s:  # as the seal stage leaves them (documents unchanged)
        s.execute(update(LicenseRow).where(LicenseRow.source_id == source).values(state="sealed"))
    office, _ = add_office(
        store,
        "370102-sec",
        "历下区行政审批服务局",
        "370102",
        kinds=("license",),
        fields={"license": {"*"}},
        masking={"CZZT": "none", "KZ_FDDBR": "none"},
    )
    active: list[str] = []
    rows = 0
    for fmt in ("csv", "xlsx"):
        result = office_feed.export(store, office, out, fmt, labels=office_feed.field_labels())
        rows = result.rows
        check = formula_cells_csv if fmt == "csv" else formula_cells_xlsx
        active += check(result.path)
    for path in write_rejects_report(store, ReportScope(source=source), out):
        active += (formula_cells_csv if path.suffix == ".csv" else formula_cells_xlsx)(path)
    return active, rows


@pytest.mark.parametrize("path", ["csv", "xlsx", "xml", "sql", "rest"])
def test_field_cases_through_every_intake_path(
    path: str,
    store_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings, store = _hub(tmp_path, store_url)
    cases = [c for c in field_cases() if path in c.paths]
    records: list[dict[str, Any]] = []
    keys: list[str] = []
    for i, case in enumerate(cases):
        records.append(good_record(f"g{i}"))
        rec = case.record(f"h{i}")
        records.append(rec)
        keys.append(no_nul(str(rec["ID"]).strip())[:200])
    folder = tmp_path / "drop"
    if path in EXT:
        spec, src = file_spec(path, monkeypatch, folder), None
        drop(folder, path, f"corpus.{EXT[path]}", records)
    elif path == "sql":
        spec, src = sql_source(tmp_path, records, monkeypatch)
    else:
        spec, src = rest_source(records)
    before = tree(tmp_path, skip=[folder, settings.home])
    ingest(settings, store, spec, src)
    got = settled(store, spec.id)
    problems = [
        p
        for case, key in zip(cases, keys, strict=True)
        for p in _check_field_case(case, key, got, spec.id)
    ]
    lost_good = [f"g{i}" for i in range(len(cases)) if got.states.get(f"g{i}") != "normalized"]
    new = tree(tmp_path, skip=[folder, settings.home]) - before
    new = {p for p in new if not p.name.startswith(("hub.db", "dept.db"))}
    active, exported = _exports(store, spec.id, tmp_path / "out")
    store.dispose()
    quarantined = sum(1 for c in cases if c.expect == "quarantine")
    TALLY.update(
        tried=len(cases),
        refused=quarantined,
        kept=len(cases) - quarantined,
        lost=len(lost_good),
        leaks=len(new) + len(active),
    )
    with capsys.disabled():
        print(
            f"\ncorpus fields via {path}: cases tried {len(cases)}, quarantined/rejected "
            f"{quarantined}, kept as inert text {len(cases) - quarantined}, "
            f"lost {len(lost_good)}, leaks {len(new) + len(active)}"
        )
    assert problems == [], "\n".join(problems)
    assert lost_good == []
    assert exported == len(got.documents)  # every kept record exported, none lost there
    assert new == set(), "files written outside the drop folder"
    assert active == [], "formulas left active in an export"


# ---------------------------------------------------------------- files


def _run(settings: Settings, store: Store, spec: Any, case: FileCase) -> str | None:
    """Extract (the case's own size cap) then normalize; the refusal message, if any."""
    src = build_source(spec, settings)
    if case.max_file_bytes is not None:
        assert isinstance(src, FileDropSource)
        src = FileDropSource(replace(src.spec, max_file_bytes=case.max_file_bytes))
    try:
        extract.run(settings, store, spec, source=src)
    except SourceRejected as exc:
        return str(exc)
    finally:
        normalize.run(settings, store, spec)
    return None


def _check_file_case(
    settings: Settings, store: Store, spec: Any, case: FileCase, folder: Path, goods: list[str]
) -> list[str]:
    fmt = case.format
    refused = _run(settings, store, spec, case)
    problems = []
    if case.expect == "reject":
        if refused is None:
            return [f"{case.name}: read, expected a refusal"]
        if spec.id not in refused or case.filename not in refused:
            problems.append(f"{case.name}: refusal names neither source nor file: {refused}")
        if case.reason and case.reason.lower() not in refused.lower():
            problems.append(f"{case.name}: refusal does not say {case.reason!r}: {refused}")
        if not (folder / case.filename).exists():
            problems.append(f"{case.name}: refused file moved or deleted")
        if (folder / f"z_good.{fmt}").exists() is False:
            problems.append(f"{case.name}: the file after the refused one was consumed")
        (folder / case.filename).unlink()  # the department takes it back: the rest goes on
        if _run(settings, store, spec, case) is not None:
            problems.append(f"{case.name}: the run still fails without the refused file")
    else:
        if refused is not None:
            return [f"{case.name}: refused, expected to be read: {refused}"]
        if (folder / case.filename).exists():
            problems.append(f"{case.name}: file not moved to processed/")
        got = settled(store, spec.id)
        mine = [k for k, v in got.versions.items() if v.startswith(f"{case.filename}:"[:100])]
        if case.kept or case.quarantined or mine:
            states = [got.states[k] for k in mine if k not in goods]
            if states.count("quarantined") != case.quarantined or (
                states.count("normalized") != case.kept
            ):
                problems.append(
                    f"{case.name}: expected {case.kept} kept and {case.quarantined} "
                    f"quarantined, got {sorted(states)}: "
                    f"{[got.quarantine.get(k) for k in mine][:3]}"
                )
    got = settled(store, spec.id)
    lost = [k for k in goods if got.states.get(k) != "normalized"]
    if lost:
        problems.append(f"{case.name}: good records lost: {lost}")
    return problems


@pytest.mark.parametrize("fmt", ["xml", "csv", "xlsx"])
def test_file_cases_through_the_drop_folder(
    fmt: str,
    store_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings, store = _hub(tmp_path, store_url)
    outside = tmp_path / "outside"
    outside.mkdir()
    canary = outside / "canary.txt"
    canary.write_text(CANARY, encoding="utf-8")
    cases = [c for c in file_cases(str(canary)) if c.format == fmt]
    problems: list[str] = []
    escaped: list[str] = []
    new: set[Path] = set()
    refused = 0
    for i, case in enumerate(cases):
        folder = tmp_path / "drop" / f"{i:03d}"
        spec = file_spec(fmt, monkeypatch, folder, f"corpus_{fmt}_{i:03d}")
        a = [good_record(f"a{i}_{n}") for n in range(2)]
        z = [good_record(f"z{i}_{n}") for n in range(2)]
        drop(folder, fmt, f"a_good.{fmt}", a)
        (folder / case.filename).write_bytes(case.content)
        drop(folder, fmt, f"z_good.{fmt}", z)
        before = tree(tmp_path, skip=[tmp_path / "drop", settings.home])
        try:
            problems += _check_file_case(
                settings, store, spec, case, folder, [r["ID"] for r in a + z]
            )
        except Exception as exc:
            escaped.append(f"{case.name}: {type(exc).__name__}: {str(exc)[:300]}")
        after = tree(tmp_path, skip=[tmp_path / "drop", settings.home])
        new |= {p for p in after - before if not p.name.startswith("hub.db")}
        refused += case.expect == "reject" or case.quarantined > 0
    slip = Path("/tmp/ehub-zip-slip.txt")
    with store.session() as s:
        payloads = [str(p) for p in s.execute(select(RawRecord.payload)).scalars()]
    store.dispose()
    leaks = len(new) + int(slip.exists()) + sum(CANARY in p for p in payloads)
    lost = sum("lost" in p for p in problems)
    TALLY.update(
        tried=len(cases), refused=refused, kept=len(cases) - refused, lost=lost, leaks=leaks
    )
    with capsys.disabled():
        print(
            f"\ncorpus {fmt} files: cases tried {len(cases)}, quarantined/rejected {refused}, "
            f"read whole {len(cases) - refused}, lost {lost}, leaks {leaks}"
        )
    assert escaped == []
    assert problems == [], "\n".join(problems)
    assert leaks == 0, (new, slip.exists())


# ---------------------------------------------------------------- links and spec paths


def test_links_and_spec_paths_cannot_reach_outside_the_drop_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, store = _hub(tmp_path, f"sqlite:///{tmp_path / 'hub.db'}")
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.csv"
    drop(outside, "csv", "secret.csv", [good_record("secret")])
    secret_bytes = secret.read_bytes()
    # a file in the drop folder that links to a file outside: refused, target untouched
    folder = tmp_path / "drop1"
    spec = file_spec("csv", monkeypatch, folder, "links_file")
    drop(folder, "csv", "a.csv", [good_record("l1")])
    (folder / "b.csv").symlink_to(secret)
    with pytest.raises(SourceRejected, match=r"b\.csv.*symbolic link"):
        extract.run(settings, store, spec)
    assert secret.read_bytes() == secret_bytes and (folder / "b.csv").is_symlink()
    assert "secret" not in settled(store, spec.id).states
    # a processed folder that links outside: refused before anything is moved there
    folder = tmp_path / "drop2"
    spec = file_spec("csv", monkeypatch, folder, "links_processed")
    drop(folder, "csv", "a.csv", [good_record("l2")])
    (folder / "processed").symlink_to(outside, target_is_directory=True)
    with pytest.raises(SourceRejected, match=r"processed folder .* symbolic link"):
        extract.run(settings, store, spec)
    assert sorted(p.name for p in outside.iterdir()) == ["secret.csv"]
    assert (folder / "a.csv").exists()
    # the spec cannot aim the connector outside its folder
    from ehub.errors import SpecError
    from ehub.sources.spec import spec_from_dict
    from tests.security.corpus import spec_dict

    for files in (
        {"pattern": "../*.csv", "format": "csv"},
        {"pattern": "*.csv", "format": "csv", "processed_dir": "../outside"},
        {"pattern": "*.csv", "format": "csv", "processed_dir": "a/../../b"},
    ):
        with pytest.raises((SpecError, ValueError), match=r"pattern|processed_dir"):
            spec_from_dict(spec_dict("bad_paths", "files", "c", files=files))
    store.dispose()
