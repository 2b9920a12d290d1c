"""The health commission's GBK XML deliveries: layout, XSD, defects, hostile files."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from simulators import wjw_data as wv
from simulators.checks import (
    FIELD_LIMIT,
    citizen_id_is_valid,
    has_mojibake,
    is_blank,
    normalized,
    parse_cn_date,
    repeat_defects,
    uscc_is_valid,
)
from simulators.file_drop import (
    DEFECT_KINDS,
    XSD_PATH,
    file_sizes,
    iter_records,
    plan,
    write_batch,
    write_hostile,
)
from tests.simulators.memory import peak_rss_mib

CODELISTS = Path(__file__).resolve().parents[2] / "schemas" / "codelists"
KNOWN = {c["code"] for c in json.loads((CODELISTS / "divisions_37.json").read_text())["codes"]}
SAFE = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
SCHEMA = etree.XMLSchema(etree.parse(str(XSD_PATH)))
NAMES = [n for n, _ in wv.ELEMENTS]
STATUSES = {s for s, _ in wv.STATUSES}
REQUIRED = ("ZSBM", "XM", "SFZH", "FZJG", "FZJGDM", "FZRQ")


def read_folder(folder: Path) -> list[dict[str, str]]:
    """Every record of every file, in name (= delivery) order; element → raw text."""
    out = []
    for path in sorted(folder.glob("WJW_*.xml")):
        root = etree.parse(str(path), SAFE).getroot()
        out += [{c.tag: c.text or "" for c in rec} for rec in root.iter("Record")]
    return out


def value(rec: dict[str, str], name: str) -> str:
    """What the hub sees after its mapping: trimmed, and half-width where documented."""
    raw = rec[name]
    if name in wv.FULLWIDTH_FIELDS:
        return normalized(raw)
    return raw.strip() if name in wv.PADDED_FIELDS else raw


def defects_of(rec: dict[str, str]) -> set[str]:
    found: set[str] = set()
    v = {n: value(rec, n) for n in NAMES}
    if any(is_blank(v[n]) for n in REQUIRED):
        found.add("E_REQUIRED_MISSING")
    if len(v["XM"]) > FIELD_LIMIT:
        found.add("E_FIELD_TOO_LONG")
    if has_mojibake(v["XM"]) or has_mojibake(v["ZYDD"]):
        found.add("E_ENCODING")
    if v["SFZH"] and not citizen_id_is_valid(v["SFZH"]):
        found.add("E_CITIZEN_ID_CHECK")
    if v["FZJGDM"] and not uscc_is_valid(v["FZJGDM"]):
        found.add("E_USCC_CHECK")
    dates = {n: parse_cn_date(v[n]) for n in ("FZRQ", "YXQQ", "YXQZ")}
    if any(v[n] and d is None for n, d in dates.items()):
        found.add("E_DATE_INVALID")
    start, end = dates["YXQQ"], dates["YXQZ"]
    if start and end and end < start:
        found.add("E_VALIDITY_WINDOW")
    if v["QHDM"] not in KNOWN:
        found.add("E_DIVISION_UNKNOWN")
    if v["ZT"] not in STATUSES:
        found.add("E_CODE_UNKNOWN")
    return found


def classify(records: list[dict[str, str]]) -> dict[str, set[str]]:
    found = {r["JLBH"]: defects_of(r) for r in records}
    content = [
        (
            r["JLBH"],
            (value(r, "ZSBM"), value(r, "FZJGDM")),
            tuple(value(r, n) for n in NAMES if n != "JLBH"),
        )
        for r in records
        if not found[r["JLBH"]]
    ]
    for key, reason in repeat_defects(content).items():
        found[key].add(reason)
    return found


def test_files_are_deterministic_gbk_and_valid(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    report = write_batch(a, count=2500, seed=4, defect_rate=0.2, records_per_file=1000)
    assert write_batch(b, count=2500, seed=4, defect_rate=0.2, records_per_file=1000) == report
    names = sorted(p.name for p in a.iterdir())
    assert names == [f"WJW_20240101_000{i}.xml" for i in (1, 2, 3)]
    for name in names:
        data = (a / name).read_bytes()
        assert data == (b / name).read_bytes()
        assert data.startswith(b'<?xml version="1.0" encoding="GBK"?>\n<Certificates ')
        data.decode("gbk")  # strict: every byte sequence is GBK
        with pytest.raises(UnicodeDecodeError):
            data.decode("utf-8")
        doc = etree.parse(str(a / name), SAFE)
        assert doc.docinfo.encoding == "GBK"
        assert SCHEMA.validate(doc), SCHEMA.error_log
        root = doc.getroot()
        assert root.get("PCH") == name[:-4] and int(root.get("JLS", "")) == len(root)
    assert [len(etree.parse(str(a / n), SAFE).getroot()) for n in names] == [1000, 1000, 500]


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda rec: rec.remove(rec.find("ZT")), "missing element"),
        (lambda rec: rec.append(etree.Element("BZ")), "unexpected element"),
        (lambda rec: rec.insert(0, rec.find("ZSBM")), "wrong order"),
        (lambda rec: setattr(rec.find("JLBH"), "text", "X1"), "bad key"),
        (lambda rec: setattr(rec.find("FZRQ"), "text", "2019-03-05"), "date shape"),
        (lambda rec: setattr(rec.find("QHDM"), "text", "37010"), "division shape"),
    ],
)
def test_xsd_rejects_structural_faults(tmp_path: Path, change: Any, why: str) -> None:
    write_batch(tmp_path, count=3, seed=1, defect_rate=0.0)
    doc = etree.parse(str(tmp_path / "WJW_20240101_0001.xml"), SAFE)
    assert SCHEMA.validate(doc)
    change(doc.getroot()[1])
    assert not SCHEMA.validate(doc), why


def test_report_matches_records_and_each_defect_is_alone(tmp_path: Path) -> None:
    report = write_batch(tmp_path, count=4000, seed=3, defect_rate=0.1, files=7)
    records = read_folder(tmp_path)
    assert len(records) == report.count == 4000
    assert records == list(iter_records(4000, seed=3, defect_rate=0.1))
    assert report.expected == dict.fromkeys(DEFECT_KINDS, 50)
    wanted = report.reason_of()
    found = classify(records)
    for rec in records:
        expected = wanted.get(rec["JLBH"])
        assert found[rec["JLBH"]] == ({expected} if expected else set()), (rec, expected)
    by_pos = {int(r["JLBH"][3:]): r for r in records}
    for repeat, original in plan(4000, 0.1, 3).originals.items():
        assert original < repeat
        assert {k for k in NAMES if by_pos[repeat][k] != by_pos[original][k]} == {"JLBH"}


def test_clean_records_need_only_the_documented_normalization(tmp_path: Path) -> None:
    write_batch(tmp_path, count=3000, seed=12, defect_rate=0.0)
    records = read_folder(tmp_path)
    assert not any(classify(records).values())
    widths: set[str] = set()
    pads: set[str] = set()
    for rec in records:
        for name in NAMES:
            raw = rec[name]
            if raw != raw.strip():
                pads.add(name)
            if any(0xFF01 <= ord(ch) <= 0xFF5E for ch in raw):
                widths.add(name)
        assert parse_cn_date(value(rec, "FZRQ")) == parse_cn_date(value(rec, "YXQQ"))
        assert value(rec, "FZJGDM")[2:8] in {value(rec, "QHDM"), value(rec, "QHDM")[:4] + "00"}
        assert rec["FZJG"].strip().endswith(("卫生健康局", "卫生健康委员会"))
        assert rec["ZYLB"] in {c for c, _, _ in wv.CATEGORIES}
    assert widths == set(wv.FULLWIDTH_FIELDS)  # all of them occur, and only them
    assert pads == set(wv.PADDED_FIELDS)
    keys = [(value(r, "ZSBM"), value(r, "FZJGDM")) for r in records]
    assert len(set(keys)) == len(keys)


def test_file_splitting_and_later_deliveries(tmp_path: Path) -> None:
    assert file_sizes(10, 3, None) == [4, 3, 3]
    assert file_sizes(10, None, 4) == [4, 4, 2]
    assert file_sizes(0, None, None) == []
    with pytest.raises(ValueError, match="not both"):
        file_sizes(10, 2, 5)
    with pytest.raises(ValueError, match="files"):
        file_sizes(10, 0, None)
    first = write_batch(tmp_path, count=30, seed=1, files=2)
    second = write_batch(
        tmp_path, count=20, seed=1, files=1, start=31, delivery_date=date(2024, 1, 2)
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "WJW_20240101_0001.xml",
        "WJW_20240101_0002.xml",
        "WJW_20240102_0001.xml",
    ]
    keys = [r["JLBH"] for r in read_folder(tmp_path)]
    assert keys == [f"WJW{n:010d}" for n in range(1, 51)]
    assert first.count + second.count == 50


def test_hostile_files(tmp_path: Path) -> None:
    paths = write_hostile(tmp_path)
    assert list(paths) == ["xxe", "billion_laughs", "truncated", "bad_encoding"]
    assert [p.name for p in paths.values()] == [f"WJW_20240102_000{i}.xml" for i in range(1, 5)]

    xxe = paths["xxe"].read_bytes()
    assert b'<!ENTITY xxe SYSTEM "file:///etc/passwd">' in xxe and b"<XM>&xxe;</XM>" in xxe
    unsafe = etree.XMLParser(resolve_entities=True, load_dtd=True, no_network=False)
    leaked = etree.parse(str(paths["xxe"]), unsafe).getroot().findtext("Record/XM") or ""
    assert "root:" in leaked, "a naive parser really reads the external file"
    safe_xm = etree.parse(str(paths["xxe"]), SAFE).getroot().findtext("Record/XM") or ""
    assert "root:" not in safe_xm

    laughs = paths["billion_laughs"].read_bytes()
    assert laughs.count(b"<!ENTITY lol") == 10 and b"<XM>&lol9;</XM>" in laughs
    with pytest.raises(etree.XMLSyntaxError, match="amplification"):
        etree.parse(str(paths["billion_laughs"]))

    with pytest.raises(etree.XMLSyntaxError, match="Premature end"):
        etree.parse(str(paths["truncated"]), SAFE)

    bad = paths["bad_encoding"].read_bytes()
    assert b'encoding="GBK"' in bad and "张国华".encode() in bad
    bad.decode("utf-8")
    with pytest.raises(UnicodeDecodeError):
        bad.decode("gbk")
    with pytest.raises(etree.XMLSyntaxError, match="encoding"):
        etree.parse(str(paths["bad_encoding"]), SAFE)


def test_hundred_thousand_records_stream_in_flat_memory(tmp_path: Path) -> None:
    def run(count: int) -> float:
        return peak_rss_mib(
            "from simulators.file_drop import write_batch\n"
            f"r = write_batch({str(tmp_path / str(count))!r}, count={count}, seed=2,"
            " records_per_file=20000)\n"
            f"assert r.count == {count} and r.defective == {count // 20}"
        )

    small, big = run(10_000), run(100_000)
    assert big < small + 20, f"10k records: {small:.0f} MiB, 100k records: {big:.0f} MiB"
    assert len(list((tmp_path / "100000").glob("*.xml"))) == 5
    assert not list(tmp_path.rglob("*.part"))


def test_report_round_trips_as_json(tmp_path: Path) -> None:
    report = write_batch(tmp_path, count=200, seed=5, defect_rate=0.2)
    data: dict[str, Any] = json.loads(json.dumps(report.to_dict(include_keys=True)))
    assert data["expected"] == report.expected and data["count"] == 200
    assert sum(len(v) for v in data["defective_keys"].values()) == 40
