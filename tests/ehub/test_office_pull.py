"""The offices' pull API and exports over generated records: each office pages through
exactly its jurisdiction's records with only its fields, masked; another office's
records are refused (403, audited); exports hold the same rows with Chinese headers."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from openpyxl import load_workbook
from sqlalchemy import select

from ehub.cli import main
from ehub.config import Settings
from ehub.offices import Office, add_office, revoke
from ehub.routing import view_for
from ehub.store.db import Store, utcnow
from ehub.store.models import AuditEvent, CaseRow, LicenseRow
from ehub.store.models import Source as SourceRow
from ehub.verify_api import create_app
from tests.ehub.test_routing import OFFICES, expected, generate


@pytest.fixture
def env(tmp_path: Path) -> Iterator[tuple[Settings, Store, dict[str, str], list[Any]]]:
    settings = Settings.from_env(home=tmp_path, database_url=f"sqlite:///{tmp_path / 'hub.db'}")
    store = Store(settings.database_url)
    store.migrate()
    records = generate()
    with store.session() as s:
        for sid, kind in (("t.cases", "case"), ("t.licenses", "license")):
            s.add(SourceRow(id=sid, department="t", kind="sql", record_kind=kind,
                            created_at=utcnow()))  # fmt: skip
        s.flush()
        for n, (kind, doc) in enumerate(records):
            if kind == "license":
                s.add(LicenseRow(identifier=doc["ZZBS"], version=1, type_code=doc["ZZLXDM"],
                                 issuer_code=doc["ZZBFJGDM"], holder_division=doc["CZZTQHDM"],
                                 county=doc["CZZTQHDM"][:6], status="valid", content_hash="h",
                                 document=doc, source_id="t.licenses", source_key=str(n),
                                 raw_id=None, state="sealed" if n != 1 else "normalized",
                                 created_at=utcnow()))  # fmt: skip
            else:
                s.add(CaseRow(case_number=doc["BJBH"], version=1, division=doc["XZQHDM"],
                              content_hash="h", document=doc, source_id="t.cases",
                              source_key=str(n), raw_id=None, created_at=utcnow()))  # fmt: skip
    tokens = {}
    for o in OFFICES:
        _, tokens[o.code] = add_office(
            store, o.code, o.name, o.division, kinds=o.kinds, fields=o.fields,
            license_types=o.license_types, include_children=o.include_children,
            masking=o.masking,
        )  # fmt: skip
        if not o.active:
            revoke(store, o.code)
    try:
        yield settings, store, tokens, records
    finally:
        store.dispose()


def _pull(api: TestClient, office: Office, token: str, kind: str) -> list[dict[str, Any]]:
    items, after = [], 0
    for _ in range(100):
        r = api.get(f"/v1/offices/{office.code}/records",
                    params={"kind": kind, "after": after, "limit": 7},
                    headers={"Authorization": f"Bearer {token}"})  # fmt: skip
        assert r.status_code == 200, r.text
        body = r.json()
        items += body["items"]
        after = body["next"]
        if not body["more"]:
            return items
    raise AssertionError("paging did not end")


def test_each_office_pulls_exactly_its_records(env: Any) -> None:
    settings, _store, tokens, records = env
    sealed = [(k, d) for n, (k, d) in enumerate(records) if n != 1]  # one not sealed yet
    with TestClient(create_app(settings)) as api:
        for office in (o for o in OFFICES if o.active):
            for kind in sorted(office.kinds):
                got = _pull(api, office, tokens[office.code], kind)
                want = [d for k, d in sealed if k == kind and expected(office, k, d)]
                ident = "ZZBS" if kind == "license" else "BJBH"
                assert [i["identifier"] for i in got] == [d[ident] for d in want], office.code
                assert [i["record"] for i in got] == [view_for(office, kind, d) for d in want]
                assert len({i["cursor"] for i in got}) == len(got)  # no duplicates across pages
        assert sum(len(_pull(api, OFFICES[0], tokens[OFFICES[0].code], k)) for k in
                   ("license", "case")) > 0  # fmt: skip


def test_another_offices_records_are_refused_and_the_attempt_is_audited(env: Any) -> None:
    settings, store, tokens, _ = env
    county, township = OFFICES[1], OFFICES[2]
    with TestClient(create_app(settings)) as api:
        r = api.get(f"/v1/offices/{county.code}/records",
                    headers={"Authorization": f"Bearer {tokens[township.code]}"})  # fmt: skip
        assert r.status_code == 403 and township.code in r.json()["detail"]
        assert api.get(f"/v1/offices/{county.code}/records").status_code == 401
        bad = api.get(f"/v1/offices/{county.code}/records",
                      headers={"Authorization": "Bearer ehof_not-a-token"})  # fmt: skip
        assert bad.status_code == 401
        revoked = OFFICES[4]
        r = api.get(f"/v1/offices/{revoked.code}/records",
                    headers={"Authorization": f"Bearer {tokens[revoked.code]}"})  # fmt: skip
        assert r.status_code == 401
    with store.session() as s:
        denied = s.execute(
            select(AuditEvent.subject, AuditEvent.detail).where(
                AuditEvent.event == "office_access_denied"
            )
        ).all()
    assert [(sub, d["asked_for"]) for sub, d in denied] == [(township.code, county.code)]


@pytest.mark.parametrize("fmt", ["csv", "xlsx", "jsonl"])
def test_export_holds_the_office_records_with_chinese_headers(
    env: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    settings, _store, _, records = env
    city = OFFICES[0]
    monkeypatch.setenv("EHUB_DATABASE_URL", settings.database_url)
    out = CliRunner().invoke(main, ["office", "export", "--office", city.code, "--format", fmt,
                                    "--out", str(tmp_path / "x")])  # fmt: skip
    assert out.exit_code == 0, out.output
    path = tmp_path / "x" / f"{city.code}-case-license.{fmt}"
    want = sum(1 for n, (k, d) in enumerate(records) if n != 1 and expected(city, k, d))
    if fmt == "jsonl":
        rows = [json.loads(line) for line in path.read_text("utf-8").splitlines()]
        assert len(rows) == want and {r["kind"] for r in rows} == {"license", "case"}
        return
    if fmt == "csv":
        table = list(csv.reader(path.read_text("utf-8-sig").splitlines()))
    else:
        sheet = load_workbook(path, read_only=True).active
        assert sheet is not None
        table = [
            [c if c is not None else "" for c in row] for row in sheet.iter_rows(values_only=True)
        ]
    header, body = table[0], table[1:]
    assert len(body) == want
    assert {"类别", "标识", "证照标识", "持证主体", "办件编号"} <= set(header)
    # personal data is masked in the export: no generated 18-digit citizen ID in clear
    ids = [d.get("CZZTDM") or d.get("SQRZJHM") for k, d in records]
    citizen = {i for i in ids if i and i[:2] == "37" and len(i) == 18}
    assert citizen and not citizen & {str(c) for row in body for c in row}
