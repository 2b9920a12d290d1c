"""The housing department generator and its SQLite dataset: determinism, defects, orgs."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections import Counter
from pathlib import Path

import pytest

from simulators import defect_kit, housing_data, housing_store
from simulators.checks import has_mojibake, uscc_is_valid
from tests.simulators.dept_checks import KNOWN_DIVISIONS, classify_permits, slash_date, strings


def _digest(db: Path) -> str:
    conn = sqlite3.connect(db)
    try:
        h = hashlib.sha256()
        for tbl in ("permits", "orgs"):
            for row in conn.execute(f"SELECT * FROM {tbl} ORDER BY 1"):
                h.update(repr(row).encode())
        return h.hexdigest()
    finally:
        conn.close()


def test_same_seed_same_items_other_seed_other_items() -> None:
    a = list(housing_data.iter_items(300, seed=11, defect_rate=0.1))
    b = list(housing_data.iter_items(300, seed=11, defect_rate=0.1))
    c = list(housing_data.iter_items(300, seed=12, defect_rate=0.1))
    assert a == b
    assert a != c
    assert [i["id"] for i in a] == list(range(1, 301))


def test_dataset_files_are_identical_for_a_seed(tmp_path: Path) -> None:
    r1 = housing_store.generate(tmp_path / "a.db", 400, seed=5, defect_rate=0.2)
    r2 = housing_store.generate(tmp_path / "b.db", 400, seed=5, defect_rate=0.2)
    assert r1 == r2
    assert _digest(tmp_path / "a.db") == _digest(tmp_path / "b.db")
    assert r1 == housing_data.report(400, seed=5, defect_rate=0.2)


@pytest.mark.parametrize(("count", "rate", "seed"), [(3000, 0.1, 1), (700, 0.3, 2), (100, 0.05, 3)])
def test_every_defective_item_has_exactly_its_one_defect(
    count: int, rate: float, seed: int
) -> None:
    report = housing_data.report(count, seed=seed, defect_rate=rate)
    items = list(housing_data.iter_items(count, seed=seed, defect_rate=rate))
    found = classify_permits(items)
    want = report.reason_of()
    for item_id, reasons in found.items():
        expected = {want[item_id]} if item_id in want else set()
        assert reasons == expected, (item_id, reasons, expected)
    assert report.count == count
    assert report.defective == round(count * rate)
    assert sum(report.expected.values()) == sum(len(v) for v in report.defective_keys.values())
    assert dict(Counter(want.values())) == {k: v for k, v in report.expected.items() if v}
    if count >= 3000:
        assert all(report.expected[k] > 0 for k in housing_data.DEFECT_KINDS)


def test_zero_and_full_defect_rates() -> None:
    assert housing_data.report(200, seed=1, defect_rate=0.0).defective == 0
    full = housing_data.report(200, seed=1, defect_rate=1.0)
    # Every item defective: nothing clean is left to duplicate, so no relational kinds.
    assert full.defective == 200
    assert full.expected["E_DUPLICATE"] == full.expected["E_VERSION_CONFLICT"] == 0
    found = classify_permits(housing_data.iter_items(200, seed=1, defect_rate=1.0))
    assert all(len(r) == 1 for r in found.values())
    with pytest.raises(ValueError, match="defect_rate"):
        housing_data.report(10, defect_rate=1.5)


def test_clean_items_are_clean_and_realistic() -> None:
    items = list(housing_data.iter_items(2000, seed=9, defect_rate=0.0))
    assert all(reasons == set() for reasons in classify_permits(items).values())
    assert len({i["permitNo"] for i in items}) == len(items)
    orgs = {o["orgId"]: o for o in housing_data.orgs()}
    for item in items:
        assert not any(has_mojibake(s) for s in strings(item))
        assert item["orgId"] in orgs
        assert item["permitNo"][:6] == item["areaCode"]
        issued = slash_date(item["issueDate"])
        assert issued is not None and item["permitNo"][6:14] == f"{issued:%Y%m%d}"
        assert len(item["permitNo"]) == 18 and item["permitNo"].isdigit()
        float(item["contractPrice"])
        assert orgs[item["orgId"]]["areaCode"] in (item["areaCode"], item["areaCode"][:4] + "00")
    statuses = Counter(i["status"] for i in items)
    assert set(statuses) == set(housing_data.STATUS_CODES)
    stamps = [(i["updatedAt"], i["id"]) for i in items]
    assert stamps == sorted(stamps)
    assert len({i["updatedAt"] for i in items}) < len(items)  # ties exist


def test_orgs_have_valid_codes_and_divisions() -> None:
    orgs = housing_data.orgs()
    assert len({o["orgId"] for o in orgs}) == len(orgs)
    for org in orgs:
        assert set(org) == {"orgId", "name", "creditCode", "areaCode"}
        assert uscc_is_valid(org["creditCode"]) and org["creditCode"].startswith("11")
        assert org["areaCode"] in KNOWN_DIVISIONS
        assert org["name"].endswith("住房和城乡建设局")


def test_unknown_divisions_are_really_unknown() -> None:
    assert not set(defect_kit.UNKNOWN_DIVISIONS) & KNOWN_DIVISIONS
    assert all(len(c) == 6 and c.isdigit() for c in defect_kit.UNKNOWN_DIVISIONS)


def test_duplicates_and_conflicts_point_at_earlier_clean_originals() -> None:
    kinds, originals = housing_data.plan(5000, 0.1, seed=4)
    assert set(originals) == {i for i, k in kinds.items() if k in housing_data.RELATIONAL}
    assert len(set(originals.values())) == len(originals)
    for item_id, original in originals.items():
        assert original < item_id and original not in kinds
        copy = housing_data.make_item(4, item_id, kinds[item_id], original)
        source = housing_data.clean_item(4, original)
        same = {k for k in copy if copy[k] == source[k]}
        if kinds[item_id] == "E_DUPLICATE":
            assert same == set(copy) - {"id", "updatedAt"}
        else:
            assert set(copy) - same == {"id", "updatedAt", "projectAddress", "validTo"}


def test_ensure_reuses_a_matching_dataset_and_touch_moves_items(tmp_path: Path) -> None:
    db = tmp_path / "hz.db"
    first, generated = housing_store.ensure(db, 120, seed=2, defect_rate=0.1)
    assert generated
    again, generated = housing_store.ensure(db, 120, seed=2, defect_rate=0.1)
    assert not generated and again == first
    _, generated = housing_store.ensure(db, 121, seed=2, defect_rate=0.1)
    assert generated
    stored = housing_store.read_meta(db, "report")
    assert defect_kit.GeneratorReport.from_dict(stored).count == 121

    before = housing_store.read_meta(db, "params")
    assert housing_store.touch(db, [5, 3, 999], seed=1) == 2
    conn = sqlite3.connect(db)
    rows = conn.execute(
        "SELECT id, updated_at, doc FROM permits ORDER BY updated_at, id"
    ).fetchall()
    conn.close()
    assert [r[0] for r in rows[-2:]] == [3, 5]
    for _, updated, doc in rows[-2:]:
        assert json.loads(doc)["updatedAt"] == updated
        assert json.loads(doc)["projectAddress"].endswith("号地块")
    assert housing_store.read_meta(db, "params") == before


def test_store_refuses_a_file_that_is_not_a_dataset(tmp_path: Path) -> None:
    (tmp_path / "x.db").write_bytes(b"not sqlite")
    with pytest.raises(FileNotFoundError, match="not a housing dataset"):
        housing_store.PermitStore(tmp_path / "x.db")
