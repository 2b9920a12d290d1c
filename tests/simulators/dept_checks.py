"""Independent classification of generated department records, the way the hub must do it.

Built on :mod:`simulators.checks` only; each function returns the set of reason
codes a record (or, for the relational rules, a stream) deserves.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import date
from pathlib import Path
from typing import Any

from simulators import housing_data, transport_data
from simulators.checks import (
    FIELD_LIMIT,
    has_mojibake,
    is_blank,
    license_identifier_problem,
    parse_legacy_date,
    repeat_defects,
    uscc_is_valid,
)

DIVISIONS_FILE = Path(__file__).resolve().parents[2] / "schemas" / "codelists" / "divisions_37.json"
KNOWN_DIVISIONS = frozenset(
    c["code"] for c in json.loads(DIVISIONS_FILE.read_text("utf-8"))["codes"]
)


def slash_date(text: Any) -> date | None:
    """``YYYY/MM/DD`` → date; None when malformed or impossible."""
    if not isinstance(text, str) or text.count("/") != 2:
        return None
    return parse_legacy_date(text.replace("/", "-"))


def strings(obj: Any) -> Iterable[str]:
    """Every string inside a JSON value."""
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from strings(v)


def _dates(found: set[str], issued: date | None, start: date | None, end: date | None) -> None:
    if issued is None or start is None or end is None:
        found.add("E_DATE_INVALID")
    elif end < start or issued > start:
        found.add("E_VALIDITY_WINDOW")


def permit_defects(item: dict[str, Any]) -> set[str]:
    """Single-record defects of a housing permit item."""
    found: set[str] = set()
    builder = item["builder"]
    name = builder["name"]
    if is_blank(item["permitNo"]) or is_blank(name):
        found.add("E_REQUIRED_MISSING")
    elif len(name.strip()) > FIELD_LIMIT:
        found.add("E_FIELD_TOO_LONG")
    if any(has_mojibake(s) for s in strings(item)):
        found.add("E_ENCODING")
    if not uscc_is_valid(builder["creditCode"]):
        found.add("E_USCC_CHECK")
    _dates(
        found,
        slash_date(item["issueDate"]),
        slash_date(item["validFrom"]),
        slash_date(item["validTo"]),
    )
    if item["status"] not in housing_data.STATUS_CODES:
        found.add("E_CODE_UNKNOWN")
    if item["areaCode"] not in KNOWN_DIVISIONS:
        found.add("E_DIVISION_UNKNOWN")
    for text in (item["projectName"], item["projectAddress"]):
        if len(text) > FIELD_LIMIT:
            found.add("E_FIELD_TOO_LONG")
    return found


def classify_permits(items: Iterable[dict[str, Any]]) -> dict[int, set[str]]:
    """id → every reason code of each item, relational rules included."""
    out: dict[int, set[str]] = {}
    candidates: list[tuple[int, tuple[str, str], str]] = []
    for item in items:
        found = permit_defects(item)
        out[item["id"]] = found
        if not found:
            content = {k: v for k, v in item.items() if k not in ("id", "updatedAt")}
            natural = (item["orgId"], item["permitNo"])
            candidates.append((item["id"], natural, json.dumps(content, sort_keys=True)))
    for key, reason in repeat_defects(candidates).items():
        out[key].add(reason)
    return out


def license_defects(lic: dict[str, Any]) -> set[str]:
    """Single-record defects of a transport event's license."""
    found: set[str] = set()
    problem = license_identifier_problem(lic["zzbs"])
    if problem is not None:
        assert "check character" in problem, problem
        found.add("E_LICENSE_ID_CHECK")
    for code in (lic["tyshxydm"], lic["fzjgdm"]):
        if not uscc_is_valid(code):
            found.add("E_USCC_CHECK")
    for name in ("yhmc", "xkzh", "fzjg", "fzrq"):
        if is_blank(lic[name]):
            found.add("E_REQUIRED_MISSING")
    if any(has_mojibake(s) for s in strings(lic)):
        found.add("E_ENCODING")
    _dates(
        found,
        parse_legacy_date(lic["fzrq"]),
        parse_legacy_date(lic["yxqq"]),
        parse_legacy_date(lic["yxqz"]),
    )
    if lic["zt"] not in transport_data.STATUS_CODES:
        found.add("E_CODE_UNKNOWN")
    if lic["xzqh"] not in KNOWN_DIVISIONS:
        found.add("E_DIVISION_UNKNOWN")
    if not isinstance(lic["bbh"], int) or lic["bbh"] < 1:
        found.add("E_VALUE_INVALID")
    return found


def classify_events(events: Iterable[dict[str, Any]]) -> dict[str, set[str]]:
    """eventId → every reason code, with the version and status-transition rules.

    Only clean events are stored; an event is compared with what is stored for
    its zzbs: same bbh with other content (or a lower bbh) is a conflict, same
    bbh and content a duplicate, a higher bbh setting zt 10 after 20/30 an
    illegal transition.
    """
    out: dict[str, set[str]] = {}
    stored: dict[str, dict[int, str]] = {}
    latest_status: dict[str, tuple[int, str]] = {}
    number_owner: dict[tuple[str, str], str] = {}  # (issuer, license number) → zzbs
    for event in events:
        lic = event["license"]
        found = license_defects(lic)
        if not found:
            zzbs, bbh = lic["zzbs"], lic["bbh"]
            content = json.dumps({k: v for k, v in lic.items() if k != "bbh"}, sort_keys=True)
            versions = stored.setdefault(zzbs, {})
            top, status = latest_status.get(zzbs, (0, ""))
            owner = number_owner.setdefault((lic["fzjgdm"], lic["xkzh"]), zzbs)
            if owner != zzbs:  # one license number under two identifiers
                found.add("E_VERSION_CONFLICT")
            elif bbh in versions:
                found.add("E_DUPLICATE" if versions[bbh] == content else "E_VERSION_CONFLICT")
            elif bbh < top:
                found.add("E_VERSION_CONFLICT")
            elif status in ("20", "30") and lic["zt"] == "10":
                found.add("E_STATUS_TRANSITION")
            else:
                versions[bbh] = content
                latest_status[zzbs] = (bbh, lic["zt"])
        out[event["eventId"]] = found
    return out
