"""File-drop source: GBK XML, CSV, XLSX; batches, resumption, move on commit only;
hostile, malformed and XSD-invalid files fail the run and stay in place."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from connectors.errors import SourceRejected, SourceUnavailable
from connectors.files import FileDropSource, FileDropSpec
from connectors.source import SourceBatch

NAMES = [
    "张三建材有限公司",
    "李四餐饮店",
    "王五药房",
    "赵六物流",
    "孙七书店",
    "周八超市",
    "吴九诊所",
]


def _xml(n: int = 7, *, decl: str | None = "GBK", first: int = 1) -> str:
    recs = "".join(
        f'  <Record seq="{i}">\n    <ZSBH>ZS{i:04d}</ZSBH>\n    <CZZT>{NAMES[(i - 1) % 7]}</CZZT>\n'
        f"    <DZ><SHENG>山东省</SHENG><SHI>济南市</SHI></DZ>\n  </Record>\n"
        for i in range(first, first + n)
    )
    head = f'<?xml version="1.0" encoding="{decl}"?>\n' if decl else ""
    return (
        f"{head}<Root>\n<Header><Count>{n}</Count></Header>\n<Records>\n{recs}</Records>\n</Root>\n"
    )


def _spec(folder: Path, **kw: Any) -> FileDropSpec:
    base: dict[str, Any] = {
        "name": "natres.land_certs",
        "folder": folder,
        "encoding": "gbk",
        "key_field": "ZSBH",
        "batch_size": 3,
    }
    base.update(kw)
    return FileDropSpec(**base)


def _drop(folder: Path, name: str, text: str, encoding: str = "gbk") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(text.encode(encoding))
    return path


def _keys(batches: list[SourceBatch]) -> list[str]:
    return [r.key for b in batches for r in b.records]


def _commit_all(src: FileDropSource, cursor: str | None = None) -> list[SourceBatch]:
    out = []
    for b in src.read(cursor):
        out.append(b)
        src.commit(b)
    return out


def test_gbk_xml_records_batches_and_move_on_commit(tmp_path: Path) -> None:
    path = _drop(tmp_path, "a.xml", _xml(7))
    src = FileDropSource(_spec(tmp_path))
    batches = list(src.read(None))
    assert [len(b.records) for b in batches] == [3, 3, 1]
    first = batches[0].records[0]
    assert first.key == "ZS0001" and first.version == "a.xml:1"
    assert first.payload == {
        "@seq": "1",
        "ZSBH": "ZS0001",
        "CZZT": "张三建材有限公司",
        "DZ.SHENG": "山东省",
        "DZ.SHI": "济南市",
    }
    assert [json.loads(b.cursor)["row"] for b in batches] == [3, 6, 7]
    assert "move" not in batches[0].context and "move" in batches[-1].context
    # nothing moved before the commit of the batch that finishes the file
    src.commit(batches[0])
    src.commit(batches[1])
    assert path.exists()
    src.commit(batches[2])
    assert not path.exists()
    assert (tmp_path / "processed" / "a.xml").read_bytes() == _xml(7).encode("gbk")
    assert list(FileDropSource(_spec(tmp_path)).read(batches[-1].cursor)) == []


def test_xml_without_declaration_uses_the_spec_encoding(tmp_path: Path) -> None:
    _drop(tmp_path, "a.xml", _xml(2, decl=None))
    recs = [r for b in FileDropSource(_spec(tmp_path)).read(None) for r in b.records]
    assert [r.payload["CZZT"] for r in recs] == NAMES[:2]


def test_xml_declaration_wins_over_the_spec_encoding(tmp_path: Path) -> None:
    _drop(tmp_path, "a.xml", _xml(2, decl="UTF-8"), encoding="utf-8")
    recs = [r for b in FileDropSource(_spec(tmp_path)).read(None) for r in b.records]
    assert [r.payload["CZZT"] for r in recs] == NAMES[:2]


def test_undecodable_bytes_are_rejected_with_line_and_file_stays(tmp_path: Path) -> None:
    data = _xml(3).encode("gbk").replace("王五".encode("gbk"), b"\x81\x20\xff")
    path = tmp_path / "bad.xml"
    path.write_bytes(data)
    with pytest.raises(SourceRejected) as exc:
        list(FileDropSource(_spec(tmp_path)).read(None))
    msg = str(exc.value)
    assert (
        "natres.land_certs" in msg
        and "bad.xml line 17, column 11" in msg
        and "0x81 do not decode as GBK" in msg
    )
    assert path.exists()


def test_crash_mid_file_resumes_at_the_next_record(tmp_path: Path) -> None:
    path = _drop(tmp_path, "a.xml", _xml(7))
    run = FileDropSource(_spec(tmp_path)).read(None)
    stored = next(run).cursor  # batch 1 stored by the hub
    next(run)  # batch 2 read, then the run dies before storing it
    assert path.exists()
    src = FileDropSource(_spec(tmp_path))
    rest = _commit_all(src, stored)
    assert _keys(rest) == [f"ZS{i:04d}" for i in range(4, 8)]
    assert not path.exists()


def test_changed_file_starts_over(tmp_path: Path) -> None:
    _drop(tmp_path, "a.xml", _xml(7))
    stored = next(FileDropSource(_spec(tmp_path)).read(None)).cursor
    _drop(tmp_path, "a.xml", _xml(4, first=101))  # same name, new content
    assert _keys(list(FileDropSource(_spec(tmp_path)).read(stored)))[0] == "ZS0101"


def test_crash_between_store_and_move_only_moves(tmp_path: Path) -> None:
    path = _drop(tmp_path, "a.xml", _xml(2))
    last = list(FileDropSource(_spec(tmp_path)).read(None))[-1]  # stored, commit lost
    assert path.exists()
    assert list(FileDropSource(_spec(tmp_path)).read(last.cursor)) == []
    assert not path.exists() and (tmp_path / "processed" / "a.xml").exists()


def test_files_in_name_order_and_batches_never_span_files(tmp_path: Path) -> None:
    _drop(tmp_path, "b.xml", _xml(2, first=20))
    _drop(tmp_path, "a.xml", _xml(4, first=10))
    _drop(tmp_path, "notes.txt", "ignored")
    batches = _commit_all(FileDropSource(_spec(tmp_path)))
    assert [[r.key for r in b.records] for b in batches] == [
        ["ZS0010", "ZS0011", "ZS0012"],
        ["ZS0013"],
        ["ZS0020", "ZS0021"],
    ]
    assert sorted(p.name for p in (tmp_path / "processed").iterdir()) == ["a.xml", "b.xml"]
    # the same name dropped again is processed again and kept beside the first copy
    _drop(tmp_path, "a.xml", _xml(1, first=30))
    assert _keys(_commit_all(FileDropSource(_spec(tmp_path)), batches[-1].cursor)) == ["ZS0030"]
    assert len(list((tmp_path / "processed").iterdir())) == 3


def test_record_path_namespaces_and_fallback_key(tmp_path: Path) -> None:
    doc = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<r:Root xmlns:r="urn:dept">'
        "<r:Records><r:Record><r:A>1</r:A><r:T>x</r:T><r:T>y</r:T></r:Record></r:Records>"
        "<r:Other><r:Record><r:A>2</r:A></r:Record></r:Other></r:Root>"
    )
    _drop(tmp_path, "n.xml", doc, "utf-8")
    spec = _spec(tmp_path, record_tag="/Root/Records/Record", key_field="NOPE")
    recs = [r for b in FileDropSource(spec).read(None) for r in b.records]
    assert [(r.key, r.payload) for r in recs] == [("n.xml:1", {"A": "1", "T": ["x", "y"]})]
    spec = _spec(tmp_path, record_tag="//Other/Record", key_field="A", version_field="A")
    recs = [r for b in FileDropSource(spec).read(None) for r in b.records]
    assert [(r.key, r.version) for r in recs] == [("2", "2")]


XXE = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE Root [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<Root><Record><ZSBH>&xxe;</ZSBH></Record></Root>
"""
LAUGHS = (
    '<?xml version="1.0"?>\n<!-- hello -->\n<!DOCTYPE lolz [\n <!ENTITY lol "lol">\n'
    + "".join(
        f' <!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10 if i > 1 else "&lol;" * 10}">\n'
        for i in range(1, 10)
    )
    + "]>\n<Root><Record><ZSBH>&lol9;</ZSBH></Record></Root>\n"
)
MALFORMED = _xml(7, decl="UTF-8").replace("<ZSBH>ZS0006</ZSBH>", "<ZSBH>ZS0006</ZSBX>")


@pytest.mark.parametrize(
    ("text", "expect"),
    [
        (XXE, r"xxe\.xml line 2: has a <!DOCTYPE declaration.*without a DOCTYPE"),
        (LAUGHS, r"xxe\.xml line 3: has a <!DOCTYPE"),
        (MALFORMED, r"xxe\.xml line \d+, column \d+: .*ZSBH.*not well-formed"),
    ],
    ids=["external-entity", "billion-laughs", "malformed"],
)
def test_hostile_or_malformed_xml_fails_and_leaves_the_file(
    tmp_path: Path, text: str, expect: str
) -> None:
    path = _drop(tmp_path, "xxe.xml", text, "utf-8")
    good = _drop(tmp_path, "z.xml", _xml(1))
    src = FileDropSource(_spec(tmp_path))
    yielded: list[SourceBatch] = []
    with pytest.raises(SourceRejected, match=expect) as exc:
        for b in src.read(None):  # pragma: no branch
            yielded.append(b)
    assert yielded == []  # checked whole before any record: the watermark cannot move
    assert "root:" not in str(exc.value)
    assert path.exists() and good.exists()
    assert not (tmp_path / "processed").exists()


def test_doctype_hidden_in_utf16_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "u.xml"
    path.write_bytes(XXE.replace("UTF-8", "UTF-16").encode("utf-16"))
    with pytest.raises(SourceRejected, match="DOCTYPE"):
        list(FileDropSource(_spec(tmp_path)).read(None))


XSD = """<?xml version="1.0" encoding="UTF-8"?>
<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema">
  <xs:element name="Root"><xs:complexType><xs:sequence>
    <xs:element name="Header"><xs:complexType><xs:sequence>
      <xs:element name="Count" type="xs:integer"/></xs:sequence></xs:complexType></xs:element>
    <xs:element name="Records"><xs:complexType><xs:sequence>
      <xs:element name="Record" maxOccurs="unbounded"><xs:complexType><xs:sequence>
        <xs:element name="ZSBH" type="xs:string"/>
        <xs:element name="CZZT" type="xs:string"/>
        <xs:element name="DZ"><xs:complexType><xs:sequence>
          <xs:element name="SHENG" type="xs:string"/><xs:element name="SHI" type="xs:string"/>
        </xs:sequence></xs:complexType></xs:element>
      </xs:sequence><xs:attribute name="seq" type="xs:integer"/></xs:complexType></xs:element>
    </xs:sequence></xs:complexType></xs:element>
  </xs:sequence></xs:complexType></xs:element>
</xs:schema>
"""


def test_xsd_valid_file_is_read_and_invalid_file_rejected_with_lines(tmp_path: Path) -> None:
    xsd = tmp_path / "schema" / "dept.xsd"
    xsd.parent.mkdir()
    xsd.write_text(XSD, encoding="utf-8")
    drop = tmp_path / "drop"
    _drop(drop, "a.xml", _xml(4))
    assert len(_keys(_commit_all(FileDropSource(_spec(drop, xsd=str(xsd)))))) == 4
    bad = _xml(7).replace("<CZZT>王五药房</CZZT>", "<NAME>王五药房</NAME>")
    bad = bad.replace('seq="6"', 'seq="six"')
    path = _drop(drop, "b.xml", bad)
    with pytest.raises(SourceRejected) as exc:
        list(FileDropSource(_spec(drop, xsd=str(xsd))).read(None))
    msg = str(exc.value)
    assert "b.xml" in msg and "does not satisfy the XSD" in msg
    assert "line 17: Element 'NAME'" in msg
    assert "line 30: Element 'Record', attribute 'seq'" in msg
    assert path.exists()


@pytest.mark.parametrize(
    ("cut", "expect"),
    [
        (
            lambda t: t[: t.index("<CZZT>王五")] + "<CZZT>王五",
            r"line 17, column \d+: Premature end",
        ),
        (lambda t: t.replace("李四餐饮店", "李四 & 餐饮店"), r"line 12, column \d+: .*EntityRef"),
        (lambda t: t.replace('seq="4"', 'seq="4>'), r"line 2\d, column \d+: "),
    ],
    ids=["truncated", "bare-ampersand", "open-quote"],
)
def test_malformed_file_is_rejected_also_when_an_xsd_is_configured(
    tmp_path: Path, cut: Any, expect: str
) -> None:
    # lxml 6.1 lets these pass silently when one parse both validates and refuses
    # entities: the connector checks well-formedness in a pass of its own
    xsd = tmp_path / "dept.xsd"
    xsd.write_text(XSD, encoding="utf-8")
    path = _drop(tmp_path / "d", "a.xml", cut(_xml(7)))
    with pytest.raises(SourceRejected, match=expect):
        list(FileDropSource(_spec(tmp_path / "d", xsd=str(xsd))).read(None))
    assert path.exists()


def test_xsd_with_remote_include_is_refused(tmp_path: Path) -> None:
    xsd = tmp_path / "r.xsd"
    xsd.write_text(
        '<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema">'
        '<xs:include schemaLocation="http://evil.test/x.xsd"/></xs:schema>'
    )
    _drop(tmp_path / "d", "a.xml", _xml(1))
    with pytest.raises(SourceRejected, match=r"remote schema http://evil\.test/x\.xsd"):
        list(FileDropSource(_spec(tmp_path / "d", xsd=str(xsd))).read(None))


def test_size_caps(tmp_path: Path) -> None:
    path = _drop(tmp_path, "a.xml", _xml(3))
    with pytest.raises(SourceRejected, match="above max_file_bytes 100"):
        list(FileDropSource(_spec(tmp_path, max_file_bytes=100)).read(None))
    with pytest.raises(SourceRejected, match=r"a\.xml line \d+: record above max_record_bytes"):
        list(FileDropSource(_spec(tmp_path, max_record_bytes=40)).read(None))
    assert path.exists()


def test_csv_gbk_and_utf8_bom(tmp_path: Path) -> None:
    rows = "ZSBH,CZZT,FZRQ\n" + "".join(f"ZS{i},{NAMES[i]},2024-01-0{i + 1}\n" for i in range(5))
    _drop(tmp_path / "g", "a.csv", rows, "gbk")
    _drop(tmp_path / "u", "a.csv", rows, "utf-8-sig")
    for folder, enc in ((tmp_path / "g", "gbk"), (tmp_path / "u", "utf-8")):
        spec = _spec(folder, format="csv", pattern="*.csv", encoding=enc)
        batches = _commit_all(FileDropSource(spec))
        assert [len(b.records) for b in batches] == [3, 2]
        first = batches[0].records[0]
        assert first.payload == {"ZSBH": "ZS0", "CZZT": NAMES[0], "FZRQ": "2024-01-01"}
        assert first.key == "ZS0"
        assert (folder / "processed" / "a.csv").exists()


def test_csv_resume_and_structural_errors(tmp_path: Path) -> None:
    rows = "ZSBH;CZZT\n" + "".join(f'ZS{i};"{NAMES[i]}\n第二行"\n' for i in range(7))
    _drop(tmp_path, "a.csv", rows)
    spec = _spec(tmp_path, format="csv", pattern="*.csv", delimiter=";")
    stored = next(FileDropSource(spec).read(None)).cursor
    rest = _commit_all(FileDropSource(spec), stored)
    assert _keys(rest) == ["ZS3", "ZS4", "ZS5", "ZS6"]
    assert rest[0].records[0].payload["CZZT"] == f"{NAMES[3]}\n第二行"
    path = _drop(tmp_path, "b.csv", "ZSBH;CZZT\nZS1;a\nZS2;b;c\n")
    with pytest.raises(SourceRejected, match=r"b\.csv line 3: 3 fields where the header has 2"):
        list(FileDropSource(spec).read(None))
    assert path.exists()
    path.write_bytes("ZSBH;CZZT\nZS1;张三\n".encode() + b"ZS2;\xff\xfe\x80\n")
    with pytest.raises(
        SourceRejected, match=r"b\.csv line 3, column 5: bytes 0xff do not decode as gbk"
    ):
        list(FileDropSource(spec).read(None))


def test_csv_with_only_a_header_is_moved_on_commit(tmp_path: Path) -> None:
    path = _drop(tmp_path, "e.csv", "ZSBH,CZZT\n")
    src = FileDropSource(_spec(tmp_path, format="csv", pattern="*.csv"))
    [batch] = list(src.read(None))
    assert batch.records == [] and path.exists()
    src.commit(batch)
    assert not path.exists()


def test_xlsx_named_sheet_types_and_resume(tmp_path: Path) -> None:
    wb = openpyxl.Workbook()
    wb.active.title = "说明"
    wb.active.append(["not the data"])
    ws = wb.create_sheet("证照")
    ws.append(["ZSBH", "CZZT", "FZRQ", "JE"])
    for i in range(5):
        ws.append([f"ZS{i}", NAMES[i], date(2024, 1, i + 1), i * 1.5])
    ws.append([None, None, None, None])
    ws.append(["ZS9", NAMES[6], datetime(2024, 2, 1, 8, 30), 7])
    wb.save(tmp_path / "a.xlsx")
    spec = _spec(tmp_path, format="xlsx", pattern="*.xlsx", sheet="证照")
    batches = list(FileDropSource(spec).read(None))
    assert _keys(batches) == ["ZS0", "ZS1", "ZS2", "ZS3", "ZS4", "ZS9"]
    assert batches[0].records[1].payload == {
        "ZSBH": "ZS1",
        "CZZT": NAMES[1],
        "FZRQ": "2024-01-02T00:00:00",
        "JE": 1.5,
    }
    assert batches[-1].records[-1].payload["FZRQ"] == "2024-02-01T08:30:00"
    rest = _commit_all(FileDropSource(spec), batches[0].cursor)
    assert _keys(rest) == ["ZS3", "ZS4", "ZS9"]
    assert (tmp_path / "processed" / "a.xlsx").exists()


def test_bad_xlsx_and_missing_sheet(tmp_path: Path) -> None:
    path = _drop(tmp_path, "a.xlsx", "this is not a zip file")
    spec = _spec(tmp_path, format="xlsx", pattern="*.xlsx")
    with pytest.raises(SourceRejected, match=r"a\.xlsx: is not a readable XLSX workbook"):
        list(FileDropSource(spec).read(None))
    path.unlink()
    wb = openpyxl.Workbook()
    wb.active.append(["ZSBH"])
    wb.save(path)
    with pytest.raises(SourceRejected, match="has no sheet '证照'"):
        list(
            FileDropSource(_spec(tmp_path, format="xlsx", pattern="*.xlsx", sheet="证照")).read(
                None
            )
        )


def test_configuration_and_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(SourceRejected, match="unknown encoding 'gbk2'"):
        FileDropSource(_spec(tmp_path, encoding="gbk2"))
    with pytest.raises(SourceUnavailable, match=r"drop folder .*missing does not exist"):
        list(FileDropSource(_spec(tmp_path / "missing")).read(None))
    with pytest.raises(SourceRejected, match="not a file cursor"):
        list(FileDropSource(_spec(tmp_path)).read("a.xml|3"))
