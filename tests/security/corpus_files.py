"""The file cases of the hostile-input corpus: whole CSV and XLSX files for the
file-drop connector (and, in :mod:`tests.security.corpus_xml`, XML files).

External entities, entity expansion, deep nesting, oversize documents and fields,
broken encodings and byte-order marks, control characters, malformed structure, zip
bombs, hostile file names. Each case says whether the file must be refused as a whole
(the run fails naming source and file, the file stays in place) or read (and how many
of its records are kept and quarantined). Generated; the module does no I/O.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from tests.security.corpus import (
    CANARY,
    COLUMNS,
    FORMULAS,
    csv_bytes,
    good_records,
    xlsx_bytes,
)


@dataclass(frozen=True)
class FileCase:
    """A whole file dropped beside good ones."""

    name: str
    category: str
    format: Literal["xml", "csv", "xlsx"]
    filename: str
    content: bytes
    expect: Literal["reject", "read"]
    quarantined: int = 0
    """``read``: how many of its records the normalize stage must quarantine."""
    kept: int = 0
    """``read``: how many of its records must normalize."""
    max_file_bytes: int | None = None
    """A lower file-size cap for the oversize cases (the spec's default is 512 MiB)."""
    reason: str = ""
    """``reject``: a word the refusal must contain (besides source and file name)."""


def _patch_xlsx(base: bytes, member: str, edit: Any) -> bytes:
    """``base`` with ``member`` replaced by ``edit(old_bytes)``."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(base)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename == member:
                data = edit(data)
            dst.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
    return out.getvalue()


def _csv_cases(canary: str) -> Iterator[FileCase]:
    recs = good_records("c", 3)
    seq = itertools.count()

    def fresh() -> str:
        return csv_bytes(good_records(f"c{next(seq)}_", 3)).decode()

    text = csv_bytes(recs).decode()

    def rej(name: str, cat: str, data: bytes, reason: str = "") -> FileCase:
        return FileCase(name, cat, "csv", f"m_{cat}.csv", data, "reject", reason=reason)

    gbk_rows = [dict(recs[0], QYMC="济南鑫源有限公司"), *recs[1:]]
    gtext = csv_bytes(gbk_rows).decode()
    yield rej("CSV declared UTF-8, bytes GBK", "encoding", gtext.encode("gbk"), "decode")
    for label, raw in (
        ("overlong slash", b"\xc0\xaf"),
        ("encoded surrogate", b"\xed\xa0\x80"),
        ("truncated sequence", b"\xe4\xb8"),
        ("lone continuation", b"\x80"),
        ("0xFF", b"\xff"),
    ):
        yield rej(
            f"CSV invalid UTF-8: {label}",
            "encoding",
            gtext.encode().replace("鑫".encode(), raw),
            "decode",
        )
    yield rej("CSV truncated multibyte at end", "encoding", gtext.encode()[:-1] + b"\xe4", "decode")
    half = len(gtext) // 2
    yield rej(
        "CSV UTF-8 then GBK",
        "encoding",
        gtext[:half].encode() + gtext[half:].encode("gbk"),
        "decode",
    )
    yield rej(
        "CSV UTF-16 with BOM on a UTF-8 source",
        "bom",
        codecs.BOM_UTF16_LE + text.encode("utf-16-le"),
    )
    yield FileCase(
        "CSV UTF-8 BOM",
        "bom",
        "csv",
        "m_bom.csv",
        codecs.BOM_UTF8 + fresh().encode(),
        "read",
        kept=3,
    )
    yield FileCase(
        "CSV two UTF-8 BOMs",
        "bom",
        "csv",
        "m_bom2.csv",
        codecs.BOM_UTF8 * 2 + fresh().encode(),
        "read",
        kept=3,
    )
    lines = text.splitlines(keepends=True)
    yield rej(
        "CSV row with an extra field",
        "malformed",
        "".join([*lines[:2], lines[2].rstrip("\r\n") + ",extra\r\n", *lines[3:]]).encode(),
    )
    yield rej(
        "CSV row with a field missing",
        "malformed",
        "".join([*lines[:2], lines[2].rsplit(",", 1)[0] + "\r\n", *lines[3:]]).encode(),
    )
    yield rej("CSV unterminated quote", "malformed", "".join([*lines[:2], '"' + lines[2]]).encode())
    yield rej("CSV empty column name", "malformed", text.replace("ZS,", ",", 1).encode())
    yield rej("CSV repeated column name", "malformed", text.replace("ZS,", "QYMC,", 1).encode())
    yield rej(
        "CSV field above the csv module's limit",
        "oversize",
        csv_bytes([dict(recs[0], JYFW="长" * 200_000), *recs[1:]]),
    )
    yield FileCase("CSV header only", "malformed", "csv", "m_header.csv", lines[0].encode(), "read")
    yield FileCase("CSV empty file", "malformed", "csv", "m_empty.csv", b"", "read")
    yield FileCase(
        "CSV file above max_file_bytes",
        "oversize",
        "csv",
        "m_big.csv",
        csv_bytes(good_records("cb", 400)),
        "reject",
        max_file_bytes=64 * 1024,
        reason="max_file_bytes",
    )
    # A column the spec does not know, named like a formula: every record is quarantined
    # on it, and the rejects report must show the name inert.
    for f in FORMULAS[:4]:
        header = [*COLUMNS, f]
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(header)
        for r in good_records(f"c{next(seq)}_", 3):
            w.writerow([r.get(c, "") for c in COLUMNS] + ["x"])
        yield FileCase(
            f"CSV formula column name {f[:12]!r}",
            "formula",
            "csv",
            f"m_fcol{FORMULAS.index(f)}.csv",
            buf.getvalue().encode(),
            "read",
            quarantined=3,
        )
    # control characters in a column name: quarantined on that (unknown) column
    for c in ("\x00", "\x1b"):
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow([*COLUMNS, f"X{c}Y"])
        for r in good_records(f"c{next(seq)}_", 2):
            w.writerow([r.get(k, "") for k in COLUMNS] + ["v"])
        yield FileCase(
            f"CSV control {c!r} in a column name",
            "control",
            "csv",
            f"m_ctl{ord(c)}.csv",
            buf.getvalue().encode(),
            "read",
            quarantined=2,
        )
    # hostile file names: read and moved into processed/, never anywhere else
    for i, name in enumerate(
        (
            "..%2f..%2fescape.csv",
            "....csv",
            "-rf.csv",
            " leading space.csv",
            "new\nline.csv",
            "名字.csv",
            "x" * 240 + ".csv",
            "$(id).csv",
            "`id`.csv",
            "a;rm -rf ~.csv",
            "..\\..\\escape.csv",
            "%00.csv",
            ".hidden.csv",
        )
    ):
        rows = good_records(f"n{i}_", 2)
        yield FileCase(
            f"file name {name[:30]!r}", "path", "csv", name, csv_bytes(rows), "read", kept=2
        )


def _xlsx_cases(canary: str) -> Iterator[FileCase]:
    recs = good_records("s", 3)
    base = xlsx_bytes(recs)

    def rej(name: str, cat: str, data: bytes, reason: str = "", cap: int | None = None) -> FileCase:
        return FileCase(
            name, cat, "xlsx", f"m_{cat}.xlsx", data, "reject", reason=reason, max_file_bytes=cap
        )

    yield FileCase(
        "XLSX good",
        "baseline",
        "xlsx",
        "m_ok.xlsx",
        xlsx_bytes(good_records("s1_", 3)),
        "read",
        kept=3,
    )
    # zip bombs: a sheet that inflates far beyond the file cap (or to a ratio no sheet has)
    for mb in (8, 32):
        bomb = _patch_xlsx(
            base,
            "xl/worksheets/sheet1.xml",
            lambda d, mb=mb: d.replace(b"</sheetData>", b"</sheetData>" + b" " * (mb << 20)),
        )
        yield rej(
            f"zip bomb: sheet inflating to {mb} MiB", "zipbomb", bomb, "inflates", cap=1 << 20
        )
    rows_bomb = _patch_xlsx(
        base,
        "xl/worksheets/sheet1.xml",
        lambda d: d.replace(
            b"</sheetData>",
            b"".join(b'<row r="%d"/>' % i for i in range(5, 400_000)) + b"</sheetData>",
        ),
    )
    yield rej("zip bomb: 400,000 empty rows", "zipbomb", rows_bomb, "inflates", cap=1 << 20)
    # hostile XML inside the workbook
    lol = (
        '<!DOCTYPE x [<!ENTITY l0 "lol">'
        + "".join(f'<!ENTITY l{i} "{("&l" + str(i - 1) + ";") * 10}">' for i in range(1, 9))
        + "]>"
    )
    xxe = f'<!DOCTYPE x [<!ENTITY e SYSTEM "file://{canary}">]>'.encode()
    for member in (
        "xl/worksheets/sheet1.xml",
        "xl/workbook.xml",
        "[Content_Types].xml",
        "xl/styles.xml",
    ):
        yield rej(
            f"XLSX billion laughs in {member}",
            "expansion",
            _patch_xlsx(base, member, lambda d: lol.encode() + d.replace(b"<t>", b"<t>&l8;", 1)),
            "DOCTYPE",
        )
        yield rej(
            f"XLSX external entity in {member}",
            "xxe",
            _patch_xlsx(base, member, lambda d: xxe + d.replace(b"<t>", b"<t>&e;", 1)),
            "DOCTYPE",
        )
        yield rej(
            f"XLSX DOCTYPE after a declaration in {member}",
            "xxe",
            _patch_xlsx(base, member, lambda d: b'<?xml version="1.0"?>\n' + xxe + d),
            "DOCTYPE",
        )
    yield rej("XLSX not a zip", "malformed", b"PK\x03\x04" + b"\x00" * 100)
    yield rej("XLSX truncated", "malformed", base[: len(base) // 2])
    yield rej("XLSX random bytes", "malformed", bytes(range(256)) * 20)
    no_wb = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(base)) as src, zipfile.ZipFile(no_wb, "w") as dst:
        for info in src.infolist():
            if info.filename != "xl/workbook.xml":
                dst.writestr(info, src.read(info.filename))
    yield rej("XLSX without workbook.xml", "malformed", no_wb.getvalue())
    traversal = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(xlsx_bytes(good_records("s2_", 3)))) as src,
        zipfile.ZipFile(traversal, "w") as dst,
    ):
        for info in src.infolist():
            dst.writestr(info, src.read(info.filename))
        dst.writestr("../../../../tmp/ehub-zip-slip.txt", "slip")
    yield FileCase(
        "XLSX member with a traversal path",
        "path",
        "xlsx",
        "m_slip.xlsx",
        traversal.getvalue(),
        "read",
        kept=3,
    )
    yield rej(
        "XLSX value right of the header",
        "malformed",
        xlsx_bytes([dict(recs[0], EXTRA="x")], header=COLUMNS, extra=("EXTRA",)),
        "right of the last header",
    )
    # cells that are formulas: read as their cached value (none), never evaluated
    from openpyxl import load_workbook

    wb = load_workbook(io.BytesIO(xlsx_bytes(good_records("s3_", 3))))
    ws = wb.active
    assert ws is not None
    for n, f in enumerate(FORMULAS[:3], start=2):  # real formula cells, no cached value
        ws.cell(n, COLUMNS.index("JYFW") + 1).value = f
    buf = io.BytesIO()
    wb.save(buf)
    yield FileCase(
        "XLSX formula cells", "formula", "xlsx", "m_formula.xlsx", buf.getvalue(), "read", kept=3
    )


def file_cases(canary: str = f"/nonexistent/{CANARY}") -> list[FileCase]:
    """Every file case; ``canary`` is a file outside the drop folders that external
    references point at."""
    from tests.security.corpus_xml import xml_cases

    cases = [*xml_cases(canary), *_csv_cases(canary), *_xlsx_cases(canary)]
    names = [c.name for c in cases]
    assert len(names) == len(set(names)), "file case names must be unique"
    return cases
