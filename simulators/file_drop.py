"""Simulated 省卫生健康委员会 delivering physician practice certificates as GBK XML files.

:func:`write_batch` writes ``WJW_<yyyyMMdd>_<nnnn>.xml`` files into a drop
folder — name order is delivery order — each written to ``<name>.part`` first
and renamed when complete, so a poller never sees half a file. Records are
built one at a time from ``(seed, position)`` and written straight to disk:
memory stays flat whatever the count. :func:`write_hostile` writes the files a
hardened reader must refuse. The department's XSD is ``XSD_PATH``
(``simulators/data/wjw_certificates.xsd``); it checks structure and value
shapes, never check characters or code lists, so files with defective records
still validate.

File layout (``<?xml version="1.0" encoding="GBK"?>``)::

    <Certificates PCH="WJW_20240101_0001" JLS="<records>" FSDW="山东省卫生健康委员会">
      <Record><JLBH>…</JLBH><ZSBM>…</ZSBM> … <ZT>…</ZT></Record> …
    </Certificates>

``<Record>`` children, all present in every record, in this order (see
:data:`simulators.wjw_data.ELEMENTS`): JLBH 记录编号 (``WJW`` + 10 digits; the
hub's source key — not ZSBM, because a duplicate repeats the license number
under another key), ZSBM 证书编码 (license number, 17 digits), XM 姓名, SFZH
身份证号 (holder code, type 111), ZYDD 执业地点, ZYLB 执业类别, ZYFW 执业范围,
FZJG 发证机关, FZJGDM 发证机关代码 (USCC), FZRQ 发证日期, YXQQ / YXQZ 有效期起 /
至 (``YYYY年M月D日``, no zero padding), QHDM 区划, ZT 状态 (有效 / 注销 / 吊销).
Required: ZSBM, XM, SFZH, FZJG, FZJGDM, FZRQ. The issuer is the county's
卫生健康局 or (one in five) the city's 卫生健康委员会.

Normalization the hub's mapping must apply (clean records need it, nothing more):

- trim ZSBM, XM, SFZH, ZYDD, FZJG, FZJGDM, QHDM: they may carry leading or
  trailing ASCII spaces or U+3000 (:data:`simulators.wjw_data.PADDED_FIELDS`);
- full-width → half-width on ZSBM, SFZH, FZJGDM, QHDM, FZRQ, YXQQ, YXQZ: their
  digits and Latin letters may be written ``０-９ Ａ-Ｚ``
  (:data:`simulators.wjw_data.FULLWIDTH_FIELDS`). No other element has either.

Defects (one per defective record):

| reason | where |
|---|---|
| E_CITIZEN_ID_CHECK | SFZH with a wrong check character |
| E_DATE_INVALID | FZRQ, YXQQ or YXQZ an impossible date (2023年2月30日, 13月, 0日) |
| E_REQUIRED_MISSING | XM, SFZH, ZSBM or FZRQ empty or blank (element present) |
| E_DIVISION_UNKNOWN | QHDM a well-formed code absent from GB/T 2260 |
| E_ENCODING | XM or ZYDD as "锟斤拷" mojibake (GBK-encodable, unlike U+FFFD or Latin-1) |
| E_FIELD_TOO_LONG | XM of 201..400 characters |
| E_DUPLICATE | a later record, another JLBH, same ZSBM + FZJGDM, every other element equal |
| E_CODE_UNKNOWN | ZT not 有效 / 注销 / 吊销 |

Never imports the hub: it is a stand-in for an external system.
"""

from __future__ import annotations

import functools
import math
import os
import random
from collections.abc import Iterator, Mapping
from datetime import date, timedelta
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from simulators import market_data as vocab
from simulators import wjw_data as wv
from simulators.checks import make_citizen_id, make_uscc
from simulators.defect_kit import GeneratorReport, make_report
from simulators.defect_plan import (
    RELATIONAL_KINDS,
    DefectPlan,
    base31,
    gbk_mojibake,
    impossible_month_day,
    oversize,
    plan_defects,
)

XSD_PATH = Path(__file__).resolve().parent / "data" / "wjw_certificates.xsd"
ENCODING = "GBK"
DEFECT_KINDS: tuple[str, ...] = (
    "E_CITIZEN_ID_CHECK",
    "E_DATE_INVALID",
    "E_REQUIRED_MISSING",
    "E_DIVISION_UNKNOWN",
    "E_ENCODING",
    "E_FIELD_TOO_LONG",
    "E_DUPLICATE",
    "E_CODE_UNKNOWN",
)
DEFAULT_RECORDS_PER_FILE = 1000
MAX_FILES = 9999

_BIRTH_FIRST, _BIRTH_LAST = date(1955, 1, 1), date(1995, 12, 31)
_ISSUED_FIRST, _ISSUED_LAST = date(2005, 1, 1), date(2023, 12, 31)
_FULLWIDTH = {cp: cp + 0xFEE0 for cp in range(ord("0"), ord("9") + 1)} | {
    cp: cp + 0xFEE0 for cp in range(ord("A"), ord("Z") + 1)
}
_PADS = (" ", "\u3000", "  ", "\u3000\u3000")


def _cn_date(d: date) -> str:
    return f"{d.year}年{d.month}月{d.day}日"


def _add_years(d: date, years: int) -> date:
    try:
        return d.replace(year=d.year + years)
    except ValueError:  # 29 February
        return d.replace(year=d.year + years, day=28)


def _day(rng: random.Random, first: date, last: date) -> date:
    return first + timedelta(days=rng.randrange((last - first).days + 1))


def _place(county: vocab.County) -> str:
    return county.name if county.name.endswith("市") else county.city_name + county.name


@functools.cache
def health_agency(division: str) -> tuple[str, str]:
    """Name and USCC (class ``11``) of the health bureau of a county or city."""
    if division.endswith("00"):
        name = f"{vocab.CITY_NAMES[division]}卫生健康委员会"
    else:
        name = _place(next(c for c in vocab.COUNTIES if c.code == division)) + "卫生健康局"
    return name, make_uscc("11", division, "MD" + base31(int(division) * 7919))


def _record(seed: int, pos: int, defect: str | None) -> dict[str, str]:
    """Record at global position ``pos``, values as written (padding, full-width)."""
    rng = random.Random((seed << 32) ^ (pos * 2_654_435_761) ^ 0x3A7)
    county = rng.choice(vocab.COUNTIES)
    category, code3, scopes = rng.choices(wv.CATEGORIES, weights=wv.CATEGORY_WEIGHTS)[0]
    birth = _day(rng, _BIRTH_FIRST, _BIRTH_LAST)
    issued = _day(rng, max(_ISSUED_FIRST, _add_years(birth, 24)), _ISSUED_LAST)
    until = _add_years(issued, rng.choice((5, 10))) - timedelta(days=1)
    issuer, issuer_code = health_agency(county.city_code if rng.random() < 0.2 else county.code)
    ending = rng.choice(wv.INSTITUTIONS[category])
    street = rng.choice(vocab.STREETS) if ending == "社区卫生服务中心" else ""
    given = "".join(rng.choice(vocab.GIVEN_CHARS) for _ in range(rng.choice((1, 2, 2))))
    serial = (pos * 7919 + seed * 104_729 + 27_182_818) % 10**8  # a bijection of pos
    rec = {
        "JLBH": f"{wv.FILE_PREFIX}{pos:010d}",
        "ZSBM": f"{code3}{county.code}{serial:08d}",
        "XM": rng.choice(vocab.SURNAMES) + given,
        "SFZH": make_citizen_id(rng.choice(vocab.COUNTIES).code, birth, rng.randrange(1000)),
        "ZYDD": f"{_place(county)}{street}{ending}",
        "ZYLB": category,
        "ZYFW": rng.choice(scopes),
        "FZJG": issuer,
        "FZJGDM": issuer_code,
        "FZRQ": _cn_date(issued),
        "YXQQ": _cn_date(issued),
        "YXQZ": _cn_date(until),
        "QHDM": county.code,
        "ZT": rng.choices([s for s, _ in wv.STATUSES], weights=[w for _, w in wv.STATUSES])[0],
    }
    if defect is not None:
        _inject(rec, defect, rng)
    if rng.random() < 0.15:
        for name in wv.FULLWIDTH_FIELDS:
            if rng.random() < 0.6:
                rec[name] = rec[name].translate(_FULLWIDTH)
    for name in wv.PADDED_FIELDS:
        if rng.random() < 0.05:
            rec[name] = rng.choice(_PADS) + rec[name] + rng.choice(("", *_PADS))
    return rec


def _inject(rec: dict[str, str], defect: str, rng: random.Random) -> None:
    """Apply exactly one defect; every other element stays valid."""
    if defect == "E_CITIZEN_ID_CHECK":
        good = rec["SFZH"][17]
        rec["SFZH"] = rec["SFZH"][:17] + rng.choice("0123456789X".replace(good, ""))
    elif defect == "E_DATE_INVALID":
        name = rng.choice(("FZRQ", "YXQQ", "YXQZ"))
        month, day = impossible_month_day(rng)
        rec[name] = f"{rec[name][:4]}年{month}月{day}日"
    elif defect == "E_REQUIRED_MISSING":
        rec[rng.choice(("XM", "SFZH", "ZSBM", "FZRQ"))] = rng.choice(("", " ", "\u3000\u3000"))
    elif defect == "E_DIVISION_UNKNOWN":
        rec["QHDM"] = rng.choice(vocab.UNKNOWN_DIVISIONS)
    elif defect == "E_ENCODING":
        name = rng.choice(("XM", "ZYDD"))
        rec[name] = gbk_mojibake(rec[name])
    elif defect == "E_FIELD_TOO_LONG":
        rec["XM"] = oversize(rec["XM"], rng, wv.OVERSIZE_FILLERS)
    elif defect == "E_CODE_UNKNOWN":
        rec["ZT"] = rng.choice(wv.UNKNOWN_STATUSES)
    else:
        raise ValueError(f"unknown defect kind {defect!r}; expected one of {DEFECT_KINDS}")


def _planned(seed: int, start: int, local: int, the_plan: DefectPlan) -> dict[str, str]:
    defect = the_plan.kinds.get(local)
    pos = start - 1 + local
    if defect not in RELATIONAL_KINDS:
        return _record(seed, pos, defect)
    rec = _record(seed, start - 1 + the_plan.originals[local], None)
    rec["JLBH"] = f"{wv.FILE_PREFIX}{pos:010d}"
    return rec


def plan(count: int, defect_rate: float, seed: int) -> DefectPlan:
    """Record position (1..count, delivery order) → defect kind, and repeats' originals."""
    return plan_defects(count, defect_rate, seed, DEFECT_KINDS)


def iter_records(
    count: int, *, defect_rate: float = 0.05, seed: int = 0, start: int = 1
) -> Iterator[dict[str, str]]:
    """The records :func:`write_batch` writes, in delivery order, element → text."""
    the_plan = plan(count, defect_rate, seed)
    for n in range(1, count + 1):
        yield _planned(seed, start, n, the_plan)


def file_sizes(count: int, files: int | None, records_per_file: int | None) -> list[int]:
    """Records per file: ``files`` nearly equal files, or files of ``records_per_file``."""
    if files is not None and records_per_file is not None:
        raise ValueError("give files or records_per_file, not both")
    if files is not None:
        if not 1 <= files <= MAX_FILES:
            raise ValueError(f"files must be within 1..{MAX_FILES}, got {files}")
        base, extra = divmod(count, files)
        return [base + (1 if i < extra else 0) for i in range(files)]
    per = DEFAULT_RECORDS_PER_FILE if records_per_file is None else records_per_file
    if per < 1:
        raise ValueError(f"records_per_file must be >= 1, got {per}")
    n = math.ceil(count / per)
    if n > MAX_FILES:
        raise ValueError(f"{n} files of {per} records exceed {MAX_FILES} files per delivery")
    return [min(per, count - i * per) for i in range(n)]


def _record_xml(rec: Mapping[str, str]) -> str:
    body = "".join(f"<{n}>{escape(rec[n])}</{n}>" for n, _ in wv.ELEMENTS)
    return f"  <Record>{body}</Record>\n"


def _header(batch: str, records: int) -> str:
    return (
        f'<?xml version="1.0" encoding="{ENCODING}"?>\n'
        f"<Certificates PCH={quoteattr(batch)} JLS={quoteattr(str(records))}"
        f" FSDW={quoteattr(wv.SENDER)}>\n"
    )


def file_name(delivery_date: date, number: int) -> str:
    """``WJW_<yyyyMMdd>_<nnnn>.xml``."""
    return f"{wv.FILE_PREFIX}_{delivery_date:%Y%m%d}_{number:04d}.xml"


def write_batch(
    folder: Path | str,
    *,
    count: int,
    seed: int = 0,
    defect_rate: float = 0.05,
    files: int | None = None,
    records_per_file: int | None = None,
    delivery_date: date = date(2024, 1, 1),
    start: int = 1,
) -> GeneratorReport:
    """Write ``count`` records into GBK XML files in ``folder`` (created if needed).

    ``files`` splits them into that many files, else ``records_per_file``
    (default 1000) per file. Records get positions ``start..start+count-1``
    (a later delivery passes ``start`` past the earlier ones and another
    ``delivery_date``). Deterministic for the arguments; same-named files are
    replaced. The report's keys are JLBH values, in delivery order.
    """
    if start < 1:
        raise ValueError(f"start must be >= 1, got {start}")
    sizes = file_sizes(count, files, records_per_file)
    the_plan = plan(count, defect_rate, seed)
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    local = 0
    for number, size in enumerate(sizes, 1):
        name = file_name(delivery_date, number)
        part = out / f"{name}.part"
        with part.open("wb") as fh:
            fh.write(_header(name.removesuffix(".xml"), size).encode(ENCODING))
            for _ in range(size):
                local += 1
                fh.write(_record_xml(_planned(seed, start, local, the_plan)).encode(ENCODING))
            fh.write(b"</Certificates>\n")
        os.replace(part, out / name)
    keyed = ((kind, f"{wv.FILE_PREFIX}{start - 1 + n:010d}") for n, kind in the_plan.kinds.items())
    return make_report(count, DEFECT_KINDS, keyed)


def write_hostile(folder: Path | str, *, delivery_date: date = date(2024, 1, 2)) -> dict[str, Path]:
    """Write four files a hardened reader must refuse; kind → path.

    ``xxe`` (external entity ``file:///etc/passwd`` in XM), ``billion_laughs``
    (nested entity expansion), ``truncated`` (cut inside a record) and
    ``bad_encoding`` (declared GBK, but UTF-8 bytes that are not valid GBK).
    Named like deliveries (``WJW_<date>_0001..0004.xml``) so a poller picks them up.
    """
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    rec = _record(0, 1, None)
    decl = f'<?xml version="1.0" encoding="{ENCODING}"?>\n'
    xxe = dict(rec, XM="&xxe;")
    body_xxe = "".join(
        f"<{n}>{xxe[n] if n == 'XM' else escape(xxe[n])}</{n}>" for n, _ in wv.ELEMENTS
    )
    lols = "".join(
        f'  <!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10}">\n' for i in range(1, 10)
    )
    laughs = dict(rec, XM="&lol9;")
    body_laughs = "".join(
        f"<{n}>{laughs[n] if n == 'XM' else escape(laughs[n])}</{n}>" for n, _ in wv.ELEMENTS
    )
    whole = _header("hostile", 1) + _record_xml(rec) + "</Certificates>\n"
    texts: dict[str, bytes] = {
        "xxe": (
            decl
            + '<!DOCTYPE Certificates [\n  <!ENTITY xxe SYSTEM "file:///etc/passwd">\n]>\n'
            + _header("hostile", 1).split("\n", 1)[1]
            + f"  <Record>{body_xxe}</Record>\n</Certificates>\n"
        ).encode(ENCODING),
        "billion_laughs": (
            decl
            + '<!DOCTYPE Certificates [\n  <!ENTITY lol0 "lol">\n'
            + lols
            + "]>\n"
            + _header("hostile", 1).split("\n", 1)[1]
            + f"  <Record>{body_laughs}</Record>\n</Certificates>\n"
        ).encode(ENCODING),
        "truncated": whole.encode(ENCODING)[: whole.encode(ENCODING).index(b"</ZYDD>")],
        # An odd number of 3-byte UTF-8 characters right before "<" leaves a GBK
        # lead byte followed by 0x3C, which no GBK trail byte range contains.
        "bad_encoding": whole.replace(rec["XM"], "张国华", 1).encode("utf-8"),
    }
    paths: dict[str, Path] = {}
    for number, (kind, data) in enumerate(texts.items(), 1):
        path = out / file_name(delivery_date, number)
        path.write_bytes(data)
        paths[kind] = path
    return paths


__all__ = [
    "DEFECT_KINDS",
    "ENCODING",
    "XSD_PATH",
    "file_name",
    "file_sizes",
    "health_agency",
    "iter_records",
    "plan",
    "write_batch",
    "write_hostile",
]
