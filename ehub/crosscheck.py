"""Licenses against case records (证照与办件比对), both ways, on the newest versions.

- **granted without license** — a case finished with a granting result (BJJG
  ``granted``) whose result licenses (JGZZBS) the hub does not hold, and that no
  license names as its related case (GLBJBH);
- **license with unknown case** — a license names a related case the hub has no
  record of;
- **license with unfinished case** — the related case is not finished
  (BJZT neither ``completed`` nor ``decided``) or did not grant.

Read in one pass per table, newest version per key (a daily job; its memory
grows with the number of cases, about 100 bytes each).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import select

from ehub.store.db import Store
from ehub.store.models import CaseRow, LicenseRow

FINISHED = frozenset({"completed", "decided"})


@dataclass(frozen=True)
class CrossCheck:
    cases_granted: int
    licenses_with_case: int
    granted_without_license: list[str] = field(default_factory=list)
    """Case numbers."""
    license_case_unknown: list[tuple[str, str]] = field(default_factory=list)
    """(license identifier, related case number)."""
    license_case_unfinished: list[tuple[str, str, str]] = field(default_factory=list)
    """(license identifier, case number, the case's state / result)."""

    @property
    def consistent(self) -> bool:
        return not (
            self.granted_without_license
            or self.license_case_unknown
            or self.license_case_unfinished
        )

    def counts(self) -> dict[str, int]:
        return {
            "granted_without_license": len(self.granted_without_license),
            "license_case_unknown": len(self.license_case_unknown),
            "license_case_unfinished": len(self.license_case_unfinished),
        }

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "consistent": self.consistent}


def cross_check(store: Store) -> CrossCheck:
    cases: dict[str, tuple[int, str, str, tuple[str, ...]]] = {}
    licenses: dict[str, tuple[int, str]] = {}
    with store.session() as s:
        for number, version, doc in s.execute(
            select(CaseRow.case_number, CaseRow.version, CaseRow.document)
        ):
            if number not in cases or version > cases[number][0]:
                ids = doc.get("JGZZBS") or ()
                ids = (ids,) if isinstance(ids, str) else tuple(ids)
                cases[number] = (version, doc.get("BJZT") or "", doc.get("BJJG") or "", ids)
        for ident, version, related in s.execute(
            select(LicenseRow.identifier, LicenseRow.version, LicenseRow.document["GLBJBH"].as_string())
        ):  # fmt: skip
            if ident not in licenses or version > licenses[ident][0]:
                licenses[ident] = (version, related or "")
    related_cases = {rel for _v, rel in licenses.values() if rel}
    granted = {n: c for n, c in cases.items() if c[2] == "granted"}
    without = sorted(
        n for n, (_v, _st, _res, ids) in granted.items()
        if n not in related_cases and not any(i in licenses for i in ids)
    )  # fmt: skip
    unknown: list[tuple[str, str]] = []
    unfinished: list[tuple[str, str, str]] = []
    for ident, (_v, rel) in sorted(licenses.items()):
        if not rel:
            continue
        case = cases.get(rel)
        if case is None:
            unknown.append((ident, rel))
        elif case[1] not in FINISHED or case[2] != "granted":
            unfinished.append((ident, rel, f"{case[1]}/{case[2] or '-'}"))
    return CrossCheck(len(granted), len(related_cases), without, unknown, unfinished)
