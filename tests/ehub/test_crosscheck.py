"""Licenses against case records, both ways: every planted inconsistency is found."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from ehub.cli import main
from ehub.crosscheck import cross_check
from ehub.store.db import Store, utcnow
from ehub.store.models import CaseRow, LicenseRow
from ehub.store.models import Source as SourceRow


def _case(number: str, state: str, result: str | None, ids: list[str], version: int = 1) -> CaseRow:
    doc: dict[str, Any] = {"BJBH": number, "BJZT": state, "JGZZBS": ids}
    if result:
        doc["BJJG"] = result
    return CaseRow(case_number=number, version=version, division="370602", content_hash="h",
                   document=doc, source_id="t.cases", source_key=number, raw_id=None,
                   created_at=utcnow())  # fmt: skip


def _license(ident: str, related: str | None, version: int = 1) -> LicenseRow:
    doc = {"ZZBS": ident, **({"GLBJBH": related} if related else {})}
    return LicenseRow(identifier=ident, version=version, type_code="T", issuer_code="I",
                      holder_division="370602", county="370602", status="valid",
                      content_hash="h", document=doc, source_id="t.licenses", source_key=ident,
                      raw_id=None, state="sealed", state_reason=None, created_at=utcnow(),
                      state_at=None)  # fmt: skip


def test_every_planted_inconsistency_is_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    store = Store(url)
    store.migrate()
    with store.session() as s:
        for sid, kind in (("t.cases", "case"), ("t.licenses", "license")):
            s.add(SourceRow(id=sid, department="t", kind="sql", record_kind=kind,
                            created_at=utcnow()))  # fmt: skip
        s.flush()
        s.add_all([
            # consistent: granted case ↔ license naming it; a granted case whose JGZZBS names a license
            _case("BJ-OK-1", "completed", "granted", []), _license("L-OK-1", "BJ-OK-1"),
            _case("BJ-OK-2", "completed", "granted", ["L-OK-2"]), _license("L-OK-2", None),
            _case("BJ-DENIED", "completed", "denied", []),  # no license expected
            # planted: granted, no license at all
            _case("BJ-NOLIC", "completed", "granted", ["L-NEVER"]),
            # planted: the newest version granted (older one was only accepted)
            _case("BJ-NEWER", "accepted", None, []), _case("BJ-NEWER", "completed", "granted", [], 2),
            # planted: license names an unknown case
            _license("L-ORPHAN", "BJ-UNKNOWN"),
            # planted: license names a case still in progress, and one denied
            _case("BJ-OPEN", "accepted", None, []), _license("L-EARLY", "BJ-OPEN"),
            _license("L-DENIED", "BJ-DENIED"),
        ])  # fmt: skip
    try:
        r = cross_check(store)
        assert r.granted_without_license == ["BJ-NEWER", "BJ-NOLIC"]
        assert r.license_case_unknown == [("L-ORPHAN", "BJ-UNKNOWN")]
        assert r.license_case_unfinished == [
            ("L-DENIED", "BJ-DENIED", "completed/denied"),
            ("L-EARLY", "BJ-OPEN", "accepted/-"),
        ]
        assert not r.consistent and r.cases_granted == 4
        monkeypatch.setenv("EHUB_DATABASE_URL", url)
        out = CliRunner().invoke(main, ["crosscheck"])
        assert out.exit_code == 1 and "BJ-NOLIC" in out.output and "L-ORPHAN" in out.output
    finally:
        store.dispose()
