"""Verify the audit chain and its checkpoints, naming the row of every problem.

:func:`verify_audit` streams the ``audit_events`` rows in id order and reports:

- ``altered``: a row whose content no longer matches its own hash;
- ``swapped``: two rows whose contents were exchanged (each row's content
  matches the *other* row's hash) — reported on both rows;
- ``reordered``: a row whose previous-hash link points at a row that sits
  elsewhere (whole rows moved, hashes and all);
- ``deleted``: a previous-hash link that points at no row (rows removed
  before it, or the row before it rewritten with a new hash);
- ``checkpoint_signature`` / ``checkpoint_timestamp``: a checkpoint whose
  signature, certificate or RFC 3161 timestamp does not verify;
- ``checkpoint_coverage``: the row a checkpoint names is gone, has another hash
  now (the chain was rewritten), or the number of rows up to it changed.

Memory stays flat with the chain's length: the walk keeps only the previous
row, the suspicious rows, and the few rows checkpoints name. It only reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ehub.audit import GENESIS, _digest
from ehub.audit_checkpoint import CHECKPOINT_EVENT, TrustRoot, check_checkpoint
from ehub.store.db import Store, utcnow
from ehub.store.models import AuditEvent

_YIELD = 1000
_PAIRING_LIMIT = 500  # content-swap pairing is quadratic in the altered rows
_IN_CHUNK = 500


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the chain, at one row."""

    row_id: int
    kind: str
    message: str


@dataclass(frozen=True)
class AuditReport:
    """Outcome of :func:`verify_audit`."""

    rows: int
    """Rows walked."""
    checkpoints: int
    timestamped: int
    """Checkpoints that carry a (verifying or not) TSA timestamp."""
    last_checkpoint_row: int | None
    uncovered: int
    """Rows after the last checkpoint's covered row (not yet pinned)."""
    problems: tuple[Problem, ...]
    warnings: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ok"] = self.ok
        return out


@dataclass(frozen=True)
class _Content:
    row_id: int
    prev_hash: str
    hash: str
    body: tuple[str, str, int | None, dict[str, Any], str]


@dataclass(frozen=True)
class _Cover:
    checkpoint_row: int
    last_id: int
    last_hash: str
    count: int


def verify_audit(store: Store, *, trust_roots: Sequence[TrustRoot]) -> AuditReport:
    """Walk the whole chain and every checkpoint; see the module docstring."""
    problems: list[Problem] = []
    warnings: list[str] = []
    with store.session() as s:
        covers, timestamped = _check_checkpoints(s, trust_roots, problems, warnings)
        wanted = {c.last_id for c in covers}
        seen: dict[int, tuple[str, int]] = {}  # covered row id -> (hash, rows up to it)
        altered: list[_Content] = []
        broken: list[tuple[int, int | None, str]] = []  # row, previous row, its prev_hash
        prev_id: int | None = None
        prev_hash = GENESIS
        n = 0
        rows = s.execute(
            select(AuditEvent).order_by(AuditEvent.id).execution_options(yield_per=_YIELD)
        ).scalars()
        for row in rows:
            n += 1
            body = (row.event, row.subject, row.version, row.detail, _at(row.at))
            if _digest(row.prev_hash, *body) != row.hash:
                altered.append(_Content(row.id, row.prev_hash, row.hash, body))
            if row.prev_hash != prev_hash:
                broken.append((row.id, prev_id, row.prev_hash))
            if row.id in wanted:
                seen[row.id] = (row.hash, n)
            prev_id, prev_hash = row.id, row.hash
            s.expunge(row)
        problems += _content_problems(altered)
        problems += _link_problems(s, broken)
    problems += _coverage_problems(covers, seen)
    last_covered = max((c.last_id for c in covers), default=0)
    uncovered = n - seen.get(last_covered, ("", 0))[1] if covers else n
    if covers and uncovered:
        warnings.append(
            f"{uncovered} row(s) after row {last_covered} are not yet covered by a checkpoint"
        )
    problems.sort(key=lambda p: (p.row_id, p.kind))
    return AuditReport(
        rows=n,
        checkpoints=len(covers),
        timestamped=timestamped,
        last_checkpoint_row=max((c.checkpoint_row for c in covers), default=None),
        uncovered=uncovered,
        problems=tuple(problems),
        warnings=tuple(warnings),
    )


def _at(at: datetime) -> str:
    # SQLite hands back naive datetimes; the hash was computed over the aware UTC form.
    return (at if at.tzinfo else at.replace(tzinfo=utcnow().tzinfo)).isoformat()


def _check_checkpoints(
    s: Session,
    trust_roots: Sequence[TrustRoot],
    problems: list[Problem],
    warnings: list[str],
) -> tuple[list[_Cover], int]:
    covers: list[_Cover] = []
    timestamped = 0
    stmt = (
        select(AuditEvent.id, AuditEvent.detail)
        .where(AuditEvent.event == CHECKPOINT_EVENT)
        .order_by(AuditEvent.id)
    )
    for row_id, detail in s.execute(stmt).tuples():
        check = check_checkpoint(detail, trust_roots)
        for why in check.problems:
            kind = "checkpoint_timestamp" if "timestamp" in why else "checkpoint_signature"
            problems.append(Problem(row_id, kind, why))
        if check.timestamped:
            timestamped += 1
        else:
            warnings.append(f"checkpoint row {row_id} is not timestamped")
        payload = detail.get("payload") if isinstance(detail, dict) else None
        if not isinstance(payload, dict):
            continue  # already reported as malformed by check_checkpoint
        try:
            cover = _Cover(
                row_id, int(payload["last_id"]), str(payload["last_hash"]), int(payload["count"])
            )
        except (KeyError, TypeError, ValueError):
            continue
        covers.append(cover)
    return covers, timestamped


def _content_problems(altered: list[_Content]) -> list[Problem]:
    """Altered rows; pairs whose contents were exchanged are reported as swapped."""
    out: list[Problem] = []
    pool = altered[:_PAIRING_LIMIT]
    holder: dict[int, int] = {}  # row -> the row now holding its original content
    for a in pool:
        for b in pool:
            if a is not b and _digest(a.prev_hash, *b.body) == a.hash:
                holder[a.row_id] = b.row_id
                break
    for a in altered:
        other = holder.get(a.row_id)
        if other is not None and holder.get(other) == a.row_id:
            out.append(
                Problem(
                    a.row_id,
                    "swapped",
                    f"row {a.row_id}: content swapped with row {other} "
                    "(each matches the other's hash)",
                )
            )
        elif other is not None:
            out.append(
                Problem(
                    a.row_id,
                    "reordered",
                    f"row {a.row_id}: its original content is now in row {other}",
                )
            )
        else:
            out.append(
                Problem(
                    a.row_id,
                    "altered",
                    f"row {a.row_id}: content does not match its hash (altered)",
                )
            )
    return out


def _link_problems(s: Session, broken: list[tuple[int, int | None, str]]) -> list[Problem]:
    """Broken previous-hash links: moved rows when the linked hash exists, else deletions."""
    wanted = sorted({h for _, _, h in broken if h != GENESIS})
    where: dict[str, int] = {}
    for i in range(0, len(wanted), _IN_CHUNK):
        chunk = wanted[i : i + _IN_CHUNK]
        stmt = select(AuditEvent.hash, AuditEvent.id).where(AuditEvent.hash.in_(chunk))
        where.update({str(h): int(rid) for h, rid in s.execute(stmt).tuples()})
    out: list[Problem] = []
    for row_id, prev_id, linked in broken:
        after = f"row {prev_id}" if prev_id is not None else "the start of the chain"
        if linked in where:
            out.append(
                Problem(
                    row_id,
                    "reordered",
                    f"row {row_id}: chained to row {where[linked]} but placed after "
                    f"{after} (rows out of order)",
                )
            )
            continue
        if linked == GENESIS:
            what = "it claims to be the first row"
        elif prev_id is not None and row_id - prev_id > 1:
            what = f"ids {prev_id + 1}..{row_id - 1} are missing"
        elif prev_id is None and row_id > 1:
            what = f"ids 1..{row_id - 1} are missing"
        else:
            what = f"or {after} was rewritten"
        out.append(
            Problem(
                row_id,
                "deleted",
                f"row {row_id}: previous-hash link broken after {after}: row(s) deleted ({what})",
            )
        )
    return out


def _coverage_problems(covers: list[_Cover], seen: dict[int, tuple[str, int]]) -> list[Problem]:
    out: list[Problem] = []
    for c in covers:
        if c.last_id == 0:
            if c.count != 0 or c.last_hash != GENESIS:
                out.append(
                    Problem(
                        c.checkpoint_row,
                        "checkpoint_coverage",
                        "checkpoint of an empty chain names rows",
                    )
                )
            continue
        found = seen.get(c.last_id)
        if found is None:
            out.append(
                Problem(
                    c.checkpoint_row,
                    "checkpoint_coverage",
                    f"checkpoint row {c.checkpoint_row}: the row it covers up to "
                    f"({c.last_id}) is missing",
                )
            )
        elif found[0] != c.last_hash:
            out.append(
                Problem(
                    c.checkpoint_row,
                    "checkpoint_coverage",
                    f"checkpoint row {c.checkpoint_row}: row {c.last_id} no longer "
                    "has the hash the checkpoint signed (chain rewritten)",
                )
            )
        elif found[1] != c.count:
            out.append(
                Problem(
                    c.checkpoint_row,
                    "checkpoint_coverage",
                    f"checkpoint row {c.checkpoint_row}: {found[1]} rows up to row "
                    f"{c.last_id}, the checkpoint signed {c.count} "
                    "(rows deleted or inserted)",
                )
            )
    return out
