"""Feeding the corpus through the hub's real intake paths, and the checks every case gets.

Intake paths: the file-drop connector (CSV, XLSX, XML files in a folder, the source
built from its spec and a connection like Airflow's), the SQL connector (a SQLite
department database), the REST connector (a department API answering through
``httpx.MockTransport``), then the extract and normalize stages writing the hub store.
"""

from __future__ import annotations

import csv
import json
import os
import sqlite3
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from openpyxl import load_workbook
from sqlalchemy import select

from connectors.rest import RestSource, RestSourceSpec
from connectors.source import Source
from ehub.config import Settings
from ehub.pipeline import extract, normalize
from ehub.sources.build import build_source
from ehub.sources.connections import env_name
from ehub.sources.spec import SourceSpec, spec_from_dict
from ehub.store.db import Store
from ehub.store.models import LicenseRow, QuarantineRow, RawRecord
from tests.security.corpus import COLUMNS, csv_bytes, rest_json, spec_dict, xlsx_bytes, xml_text

#: Counts over every corpus test of the session (printed at its end by conftest.py).
TALLY: Counter[str] = Counter()
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
CURSOR = "GXSJ"


def file_spec(
    fmt: str, monkeypatch: pytest.MonkeyPatch, folder: Path, source: str = ""
) -> SourceSpec:
    conn = f"ehub_src_security_{fmt}"
    pattern = {"xml": "*.xml", "csv": "*.csv", "xlsx": "*.xlsx"}[fmt]
    spec = spec_from_dict(
        spec_dict(
            source or f"corpus_{fmt}",
            "files",
            conn,
            files={"pattern": pattern, "format": fmt},
            batch_size=7,
        )
    )
    monkeypatch.setenv(
        env_name(conn), json.dumps({"conn_type": "fs", "extra": {"path": str(folder)}})
    )
    return spec


def drop(folder: Path, fmt: str, name: str, records: list[dict[str, Any]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        data = csv_bytes(records)
    elif fmt == "xlsx":
        data = xlsx_bytes(records)
    else:
        data = xml_text(records).encode()
    path = folder / name
    path.write_bytes(data)
    return path


def sql_source(
    tmp: Path, records: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> tuple[SourceSpec, Source]:
    db = tmp / "dept.db"
    con = sqlite3.connect(db)
    cols = [*COLUMNS, CURSOR]
    con.execute(f"CREATE TABLE T_CORPUS ({', '.join(f'{c} TEXT' for c in cols)})")
    con.executemany(
        f"INSERT INTO T_CORPUS VALUES ({', '.join('?' for _ in cols)})",
        [
            [r.get(c) for c in COLUMNS] + [f"2024-01-01 08:{i // 60:02d}:{i % 60:02d}"]
            for i, r in enumerate(records)
        ],
    )
    con.commit()
    con.close()
    conn = "ehub_src_security_sql"
    spec = spec_from_dict(
        spec_dict(
            "corpus_sql",
            "sql",
            conn,
            sql={"table": "T_CORPUS"},
            cursor={"field": CURSOR},
            batch_size=7,
        )
    )
    monkeypatch.setenv(
        env_name(conn), json.dumps({"conn_type": "generic", "extra": {"url": f"sqlite:///{db}"}})
    )
    return spec, build_source(spec)


def rest_source(records: list[dict[str, Any]]) -> tuple[SourceSpec, Source]:
    """A department API serving ``records`` in pages of 7 (JSON keeps typed values)."""
    rows = [
        dict(r, **{CURSOR: f"2024-01-01T08:{i // 60:02d}:{i % 60:02d}"})
        for i, r in enumerate(records)
    ]

    def answer(request: httpx.Request) -> httpx.Response:
        if request.headers.get("Authorization") != "Bearer corpus":
            return httpx.Response(401)
        since = request.url.params.get("updated_since", "")  # inclusive, sorted by it
        page, size = int(request.url.params["page"]), int(request.url.params["page_size"])
        todo = [r for r in rows if r[CURSOR] >= since]
        body = rest_json(todo[(page - 1) * size : page * size])
        return httpx.Response(200, content=body, headers={"content-type": "application/json"})

    spec = spec_from_dict(
        spec_dict(
            "corpus_rest",
            "rest",
            "ehub_src_security_rest",
            rest={"path": "/items", "page_size": 7},
            cursor={"field": CURSOR},
            batch_size=7,
        )
    )
    src = RestSource(
        RestSourceSpec(
            name=spec.id,
            base_url="https://dept.invalid",
            path="/items",
            token="corpus",
            records_path="data.items",
            page_size=7,
            key_field="ID",
            version_field=CURSOR,
            batch_size=7,
        ),
        transport=httpx.MockTransport(answer),
    )
    return spec, src


def ingest(settings: Settings, store: Store, spec: SourceSpec, src: Source | None = None) -> None:
    extract.run(settings, store, spec, source=src)
    normalize.run(settings, store, spec)


@dataclass(frozen=True)
class Settled:
    """What the store made of one source's raw records."""

    states: dict[str, str]
    """source key → raw state (the last raw record of the key)."""
    quarantine: dict[str, list[tuple[str, str, str, str]]]
    """source key → (reason code, field, message_en, message_zh) rows."""
    documents: dict[str, dict[str, Any]]
    """source key → canonical document of its license version."""
    versions: dict[str, str]
    """source key → source version of its raw record (file:row for files)."""


def settled(store: Store, source_id: str) -> Settled:
    with store.session() as s:
        raws = s.execute(
            select(RawRecord.source_key, RawRecord.state, RawRecord.source_version)
            .where(RawRecord.source_id == source_id)
            .order_by(RawRecord.id)
        ).all()
        q: dict[str, list[tuple[str, str, str, str]]] = {}
        for key, code, fld, en, zh in s.execute(
            select(
                QuarantineRow.source_key,
                QuarantineRow.reason_code,
                QuarantineRow.field,
                QuarantineRow.message_en,
                QuarantineRow.message_zh,
            ).where(QuarantineRow.source_id == source_id)
        ):
            q.setdefault(key, []).append((code, fld, en, zh))
        docs: dict[str, dict[str, Any]] = dict(
            s.execute(
                select(LicenseRow.source_key, LicenseRow.document).where(
                    LicenseRow.source_id == source_id
                )
            )
            .tuples()
            .all()
        )
    return Settled({k: st for k, st, _ in raws}, q, docs, {k: v for k, _, v in raws})


def strings(value: Any) -> Iterable[str]:
    """Every string inside a JSON document."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)


def formula_cells_csv(path: Path) -> list[str]:
    """Cells of a CSV file a spreadsheet would evaluate (not neutralised)."""
    with path.open(encoding="utf-8-sig", newline="") as fh:
        return [c for row in csv.reader(fh) for c in row if c.startswith(FORMULA_START)]


def formula_cells_xlsx(path: Path) -> list[str]:
    wb = load_workbook(path)
    out = []
    for ws in wb.worksheets:
        for row in ws.iter_rows():
            for c in row:
                if c.data_type == "f" or (
                    isinstance(c.value, str)
                    and c.data_type != "s"
                    and c.value.startswith(FORMULA_START)
                ):
                    out.append(str(c.value))
    return out


def tree(root: Path, *, skip: Iterable[Path] = ()) -> set[Path]:
    """Every file under ``root`` except those under ``skip`` (symlinks not followed)."""
    skipped = [p.resolve() for p in skip]
    out: set[Path] = set()
    for dirpath, _dirs, files in os.walk(root):
        d = Path(dirpath).resolve()
        if any(d == s or s in d.parents for s in skipped):
            continue
        out.update(Path(dirpath) / f for f in files)
    return out
