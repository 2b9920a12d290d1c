"""Batch processing shared by the platform simulators: envelope, idempotency, receipts,
partial failures and the daily reconciliation report.

A :class:`Kind` is one kind of record a platform takes in batches (license,
case, seal): its batch path, its item limit and its item check. Processing is
the same for every kind:

- the envelope ``{"items": [...]}`` holds 1..max_items items, each with an
  ``idempotency_key`` (string of 1-200 characters): 422 ``MALFORMED`` otherwise,
  413 ``TOO_MANY_ITEMS`` above the limit;
- receipts come back in item order; a repeated key with the same content gets
  the original receipt with ``duplicate: true`` and stores nothing; the same
  key with other content is ``IDEMPOTENCY_MISMATCH``; the same identity under
  another key is ``CONFLICT``; keys are scoped per kind;
- an accepted receipt may carry fields minted by the kind (a seal's
  ``registration_no``), returned again on every duplicate.

Never imports the hub.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from fastapi.responses import JSONResponse

from simulators.platform_checks import (
    CST,
    SCHEMAS_DIR,
    Checked,
    ItemRejected,
    SchemaFile,
    check_case_item,
    decode_json,
)
from simulators.platform_store import PlatformStore, StoredVersion

Items = list[tuple[str, dict[str, Any]]]


@dataclass(frozen=True)
class Kind:
    """One kind of record a platform accepts in batches."""

    name: str
    """``license`` / ``case`` / ``seal``: the reconciliation ``kind`` and the stats key."""
    plural: str
    """``licenses``: the admin list path ``/admin/<plural>``."""
    batch_path: str
    """e.g. ``/api/v1/cases/batch``."""
    max_items: int
    """Items per batch; more is 413 TOO_MANY_ITEMS."""
    check: Callable[[str, dict[str, Any]], Checked]
    """Every content check of one item; raises :class:`ItemRejected`."""
    mint: Callable[[], dict[str, Any]] | None = None
    """Extra receipt fields for a newly accepted item (stored, repeated on duplicates)."""
    on_stored: Callable[[list[Checked]], None] | None = None
    """Called after the transaction with the items newly stored (keeping documents)."""
    schemas: tuple[SchemaFile, ...] = ()
    """The schema files ``check`` validates against (compiled by :func:`warm_up`)."""


def warm_up(kinds: Iterable[Kind]) -> None:
    """Compile the kinds' schemas now (a server at start-up), not in the first request."""
    for kind in kinds:
        for schema in kind.schemas:
            schema.load()


def case_kind(max_items: int, schema_path: Path | None = None) -> Kind:
    """The case-record batch endpoint, the same on both platforms."""
    schema = SchemaFile(schema_path or SCHEMAS_DIR / "case_item.schema.json")
    check = partial(check_case_item, schema=schema)
    return Kind("case", "cases", "/api/v1/cases/batch", max_items, check, schemas=(schema,))


def error(status: int, code: str, message: str, **headers: str) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status, headers=headers)


def accepted(key: str, stored: StoredVersion, *, duplicate: bool) -> dict[str, Any]:
    return {
        "idempotency_key": key,
        "status": "accepted",
        "receipt_id": stored.receipt_id,
        **stored.extra.get("receipt", {}),
        "duplicate": duplicate,
    }


def rejected(key: str, code: str, message: str) -> dict[str, Any]:
    return {
        "idempotency_key": key,
        "status": "rejected",
        "error_code": code,
        "message": message,
        "duplicate": False,
    }


def parse_envelope(raw: bytes, max_items: int) -> Items | JSONResponse:
    try:
        body = decode_json(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return error(422, "MALFORMED", f"body is not JSON: {exc}")
    items = body.get("items") if isinstance(body, dict) else None
    if not isinstance(items, list) or not items:
        return error(422, "MALFORMED", 'body must be {"items": [...]} with at least one item')
    if len(items) > max_items:
        return error(413, "TOO_MANY_ITEMS", f"{len(items)} items; at most {max_items} per batch")
    out: Items = []
    for n, item in enumerate(items):
        key = item.get("idempotency_key") if isinstance(item, dict) else None
        if not isinstance(key, str) or not key.strip() or len(key) > 200:
            return error(422, "MALFORMED", f"items[{n}]: idempotency_key must be a string (1-200)")
        out.append((key, item))
    return out


def _check_all(kind: Kind, items: Items) -> list[Checked | ItemRejected]:
    out: list[Checked | ItemRejected] = []
    for key, item in items:
        try:
            out.append(kind.check(key, item))
        except ItemRejected as rejection:
            out.append(rejection)
    return out


def process(store: PlatformStore, kind: Kind, items: Items) -> list[dict[str, Any]]:
    """Check, deduplicate and store one batch in one transaction; the receipts in item order."""
    checked = _check_all(kind, items)
    receipts: list[dict[str, Any]] = []
    stored: list[Checked] = []
    with store.transaction() as tx:
        # One look-up of the batch's keys and identities (not two queries per item);
        # the versions stored by this batch are added as it goes, so a key or an
        # identity repeated inside the batch is seen as the database would show it.
        fine = [(key, r) for (key, _), r in zip(items, checked, strict=True)
                if not isinstance(r, ItemRejected)]  # fmt: skip
        by_key = tx.by_keys(kind.name, [key for key, _ in fine])
        by_identity = tx.by_identities(kind.name, [r.identity for _, r in fine])
        for (key, _), result in zip(items, checked, strict=True):
            if isinstance(result, ItemRejected):
                receipts.append(rejected(key, result.code, result.message))
                continue
            original = by_key.get(key)
            if original is not None:
                if original.fingerprint == result.fingerprint:
                    receipts.append(accepted(key, original, duplicate=True))
                else:
                    receipts.append(
                        rejected(
                            key,
                            "IDEMPOTENCY_MISMATCH",
                            f"key already accepted {original.identifier} v{original.version}"
                            " with different content",
                        )
                    )
                continue
            clash = by_identity.get(result.identity)
            if clash is not None:
                receipts.append(
                    rejected(
                        key,
                        "CONFLICT",
                        f"{clash.identifier} v{clash.version} already stored under another"
                        f" idempotency key (receipt {clash.receipt_id})",
                    )
                )
                continue
            version = result.version
            if version is None:
                version = tx.next_version(kind.name, result.identifier)
            new = StoredVersion(
                result.identifier,
                version,
                f"RCPT-{uuid.uuid4().hex}",
                key,
                result.fingerprint,
                datetime.now(UTC).isoformat(timespec="milliseconds"),
                {**result.extra, "receipt": kind.mint() if kind.mint else {}},
            )
            tx.insert(
                kind.name,
                new,
                identity=result.identity,
                payload_json=result.payload_json,
                division=result.division,
            )
            by_key[key] = by_identity[result.identity] = new
            stored.append(result)
            receipts.append(accepted(key, new, duplicate=False))
        new_count = sum(r["status"] == "accepted" and not r["duplicate"] for r in receipts)
        counts = {
            "items": len(items),
            "accepted": new_count,
            "duplicates": sum(bool(r["duplicate"]) for r in receipts),
            "rejected": sum(r["status"] == "rejected" for r in receipts),
        }
        for name, n in counts.items():
            tx.bump(name, n)
            tx.bump(f"{kind.name}.{name}", n)
    if kind.on_stored is not None and stored:
        kind.on_stored(stored)
    return receipts


def process_partially(store: PlatformStore, kind: Kind, items: Items) -> list[dict[str, Any]]:
    """Partial batch failure: every other item is not processed and gets a retryable
    error receipt; the rest are processed normally."""
    done = {r["idempotency_key"]: r for r in process(store, kind, items[::2])}
    return [
        done.get(key) or {"idempotency_key": key, "status": "error", "retryable": True,
                          "error_code": "TEMPORARY", "duplicate": False,
                          "message": "injected fault: not processed, "
                          "send again with the same idempotency key"}
        for key, _ in items
    ]  # fmt: skip


def digest(items: list[dict[str, Any]]) -> str:
    """SHA-256 of the sorted ``identifier|version`` lines joined by newlines."""
    lines = sorted(f"{i['identifier']}|{i['version']}" for i in items)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def reconciliation(store: PlatformStore, kind: str, day: str) -> dict[str, Any]:
    """The versions of ``kind`` received on ``day`` (China Standard Time); ValueError
    when ``day`` is not YYYY-MM-DD."""
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", day):
        raise ValueError(f"{day!r} is not YYYY-MM-DD")
    start = datetime.combine(date.fromisoformat(day), time(), tzinfo=CST)
    utc = [(start + timedelta(days=n)).astimezone(UTC).isoformat(timespec="milliseconds")
           for n in (0, 1)]  # fmt: skip
    items = store.received_between(kind, utc[0], utc[1])
    return {"day": day, "timezone": "+08:00", "kind": kind, "count": len(items),
            "digest": digest(items), "items": items}  # fmt: skip
