"""Personal data in logs and in messages that leave the hub.

The embedded stack with three departments whose records carry people (market
regulation: legal representatives; acceptance: applicants and their mobile numbers;
health: physicians with citizen ID numbers) runs every pipeline stage in this process
— extract → normalize → seal → deliver (provincial, national) → publish — with every
logger at DEBUG into ``caplog``. The personal data is harvested from what the hub
ingested (the raw payloads), by field and by pattern, independently of the hub's
masking code; then the captured log records, the log files of the stack's services
under the hub home, the quarantine reasons, the platforms' rejection reasons and the
error bodies of the hub's APIs are searched for any of it in clear.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from ehub import devstack, identifiers
from ehub.api_clients import create_client
from ehub.config import Settings
from ehub.store.db import Store
from ehub.store.models import DeliveryRow, QuarantineRow, RawRecord
from ehub.tasks import run_stage
from ehub.verify_api import create_app
from signing import xmlsig  # noqa: F401 - its logger pin is part of what is checked

SOURCES = (
    "market_regulation.business_licenses",
    "acceptance.case_records",
    "health.physician_certificates",
)
#: Source fields holding a person's name: always, or when the record's applicant is one.
NAME_FIELDS = ("FDDBR", "XM", "LXR", "FZR")
PERSON_NAME_FIELDS = ("SQRMC",)
PHONE = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")
CITIZEN_ID = re.compile(r"(?<![0-9A-Za-z])\d{17}[0-9Xx](?![0-9A-Za-z])")


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def harvest(payload: dict[str, Any]) -> set[str]:
    """The personal data of one raw record: names by field, ID and phone numbers by
    pattern (an 18-character number counts when its check character verifies)."""
    found: set[str] = set()
    person = str(payload.get("SQRLX", "")) == "1"
    for f in NAME_FIELDS + (PERSON_NAME_FIELDS if person else ()):
        v = payload.get(f)
        if isinstance(v, str) and 2 <= len(v.strip()) <= 6:
            found.add(v.strip())
    for s in _strings(payload):
        found.update(m for m in PHONE.findall(s))
        found.update(m for m in CITIZEN_ID.findall(s) if identifiers.is_valid_citizen_id(m))
    return found


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Settings]:
    home = tmp_path / "home"
    try:
        devstack.up(
            home,
            seed_count=60,
            defect_rate=0.1,
            seed=17,
            departments=("market_regulation", "acceptance", "health"),
        )
        yield Settings.from_env(
            home=home, out_dir=home / "out", batch_size=25, source_batch_size=25
        )
    finally:
        devstack.down(home)


#: Libraries whose records carry request or statement contents; the hub pins them to
#: WARNING (ehub/tasks.py, ehub/store/db.py, signing/xmlsig.py). The test checks the
#: pins, and keeps them.
PINNED = ("httpx", "sqlalchemy.engine", "signxml")


def _all_loggers_at_debug(caplog: pytest.LogCaptureFixture) -> list[tuple[logging.Logger, int]]:
    """Every known logger to DEBUG but the pinned ones, the non-propagating ones into
    caplog too."""
    for name in PINNED:
        assert logging.getLogger(name).getEffectiveLevel() >= logging.WARNING, name
    caplog.set_level(logging.DEBUG)
    changed = []
    for name in list(logging.root.manager.loggerDict):
        if name.startswith(PINNED):
            continue
        lg = logging.getLogger(name)
        changed.append((lg, lg.level))
        lg.setLevel(logging.DEBUG)
        if not lg.propagate:
            lg.addHandler(caplog.handler)
    return changed


def _post_defective_licenses(settings: Settings, store: Store, people: list[str]) -> list[str]:
    """Error bodies of the sealing API for posts whose defects sit in personal fields."""
    from signing.pki import DEV_DEPARTMENT_USCC
    from simulators.issuing_system import SOURCE_ID, license_post, post_license

    _info, token = create_client(store, "sec-log-scan", DEV_DEPARTMENT_USCC, [SOURCE_ID])
    names = [p for p in people if not p[0].isdigit()][:3]
    ids = [p for p in people if CITIZEN_ID.fullmatch(p)][:3]
    bodies = []
    with TestClient(create_app(settings)) as http:
        for n, (name, id_number) in enumerate(zip(names, ids, strict=False)):
            base = license_post(900 + n, issuer_uscc=DEV_DEPARTMENT_USCC, seed=5)
            for change in (
                {"legalRepresentative": (name * 4001)[:4001]},  # too long
                {"legalRepresentative": f"{name}\x07"},  # control character
                {"holderCode": id_number},  # a citizen ID where a USCC belongs
                {"legalRepresentative": f"{name}锟斤拷"},
            ):  # garbled
                r = post_license(http, token, base | change)
                if r.status_code >= 400:  # a body that is not the sealed PDF
                    bodies.append(r.text)
    assert len(bodies) == 4 * len(names), "the defective posts were accepted"
    return bodies


def test_no_personal_data_in_logs_or_outgoing_messages(
    stack: Settings, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = stack
    changed = _all_loggers_at_debug(caplog)
    try:
        for sid in SOURCES:
            run_stage("extract", settings, sid)
            run_stage("normalize", settings, sid)
        for stage in ("seal", "deliver", "deliver_national", "publish"):
            run_stage(stage, settings)
        store = Store(settings.database_url)
        try:
            with store.session() as s:
                payloads = list(s.execute(select(RawRecord.payload)).scalars())
            people = sorted(set().union(*(harvest(p) for p in payloads)))
            bodies = _post_defective_licenses(settings, store, people)
            with store.session() as s:
                reasons = [
                    f"{en} {zh}"
                    for en, zh in s.execute(
                        select(QuarantineRow.message_en, QuarantineRow.message_zh)
                    )
                ]
                errors = [str(e) for e in s.execute(select(DeliveryRow.last_error)).scalars() if e]
        finally:
            store.dispose()
    finally:
        for lg, level in changed:
            lg.setLevel(level)
            if caplog.handler in lg.handlers:
                lg.removeHandler(caplog.handler)
    logged = []
    for rec in caplog.records:
        logged.append(rec.getMessage())
        if rec.exc_info:
            logged.append(logging.Formatter().formatException(rec.exc_info))
    files = {
        p.name: p.read_text("utf-8", "replace")
        for p in (settings.home / "dev" / "logs").glob("*.log")
    }
    where = {
        "log records": "\n".join(logged),
        **{f"log file {n}": t for n, t in files.items()},
        "quarantine reasons": "\n".join(reasons),
        "platform errors": "\n".join(errors),
        "API error bodies": "\n".join(bodies),
    }
    leaks = sorted({(w, p) for w, text in where.items() for p in people if p in text})
    ids = sum(1 for p in people if CITIZEN_ID.fullmatch(p))
    phones = sum(1 for p in people if PHONE.fullmatch(p))
    with capsys.disabled():
        print(
            f"\nlog scan: records checked {len(payloads)} ({len(people)} personal values: "
            f"{ids} ID numbers, {phones} phone numbers, {len(people) - ids - phones} names; "
            f"{len(caplog.records)} log records, {len(files)} log files, {len(reasons)} "
            f"quarantine reasons, {len(bodies)} API bodies), leaks {len(leaks)}"
        )
    assert ids and phones and len(people) - ids - phones, "no personal data generated"
    assert len(caplog.records) > 50, "the stages logged nothing: the scan would prove nothing"
    by_where: dict[str, list[str]] = {}
    for w, p in leaks:
        by_where.setdefault(w, []).append(p)
    detail = {
        w: (
            len(ps),
            [next(line[:200] for line in where[w].splitlines() if p in line) for p in ps[:3]],
        )
        for w, ps in by_where.items()
    }
    assert leaks == [], detail
