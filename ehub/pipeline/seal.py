"""Seal stage: normalized license versions → sealed PDF (PAdES) + outbox rows.

Per batch: render each license, seal it with the department's seal, write the
file atomically (temp + rename), then in one transaction record the signature,
mark the license sealed, and write its delivery outbox rows and return-feed
outbox rows. A crash between the file and the commit only means the file is
written again on the re-run; the store never says "sealed" without a file.
"""

from __future__ import annotations

import hashlib
import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding, pkcs12
from sqlalchemy import select, update

from ehub.audit import Event, append
from ehub.config import Settings
from ehub.pipeline import StageResult
from ehub.pipeline.faults import crash_point
from ehub.store.db import Store, insert_ignore, utcnow
from ehub.store.models import DeliveryRow, FeedMessageRow, LicenseRow, SealRow, SignatureRow
from signing.pades import PadesSealer
from signing.pki import DEV_DEPARTMENT_USCC, DevPKI, ensure_dev_pki
from signing.render import LicenseView, render_license_pdf

log = logging.getLogger(__name__)

DESTINATIONS = ("provincial",)
DEV_SEAL_CODE = "370000-SCJG-DZZZ-0001"
DEV_SEAL_DEPARTMENT = "山东省市场监督管理局"
DEV_SEAL_NAME = "山东省市场监督管理局电子证照专用章"


def idempotency_key(destination: str, identifier: str, version: int) -> str:
    """Stable key of one license version at one destination (same on every retry)."""
    return hashlib.sha256(f"{destination}|{identifier}|{version}".encode()).hexdigest()[:48]


def message_id(topic: str, identifier: str, version: int) -> str:
    return hashlib.sha256(f"return|{topic}|{identifier}|{version}".encode()).hexdigest()[:48]


def document_path(settings: Settings, identifier: str, version: int) -> Path:
    return settings.out_dir / "licenses" / f"{identifier}_v{version}.pdf"


def ensure_dev_seal(settings: Settings, store: Store) -> tuple[int, DevPKI]:
    """The development seal: PKI generated at first run, registered once in the store."""
    pki = ensure_dev_pki(settings.home / "pki")
    with store.session() as s:
        seal_id = s.scalar(select(SealRow.id).where(SealRow.code == DEV_SEAL_CODE))
        if seal_id is not None:
            return seal_id, pki
    _key, cert, _chain = pkcs12.load_key_and_certificates(
        pki.seal_p12_path.read_bytes(), pki.passphrase.encode()
    )
    assert cert is not None
    with store.session() as s:
        insert_ignore(
            s,
            SealRow.__table__,
            [
                {
                    "code": DEV_SEAL_CODE,
                    "department": DEV_SEAL_DEPARTMENT,
                    "department_uscc": DEV_DEPARTMENT_USCC,
                    "name": DEV_SEAL_NAME,
                    "seal_type": "证照专用章",
                    "cert_pem": cert.public_bytes(Encoding.PEM).decode(),
                    "key_ref": str(pki.seal_p12_path),
                    "status": "active",
                    "valid_from": cert.not_valid_before_utc,
                    "valid_until": cert.not_valid_after_utc,
                    "created_at": utcnow(),
                }
            ],
            ["code"],
        )
        seal_id = s.scalar(select(SealRow.id).where(SealRow.code == DEV_SEAL_CODE))
    assert seal_id is not None
    return seal_id, pki


def license_view(doc: dict[str, Any]) -> LicenseView:
    until = doc.get("ZZYXQJZRQ") or "长期"
    labels = {
        "KZ_FDDBR": "法定代表人",
        "KZ_QYLX": "类型",
        "KZ_ZCZB": "注册资本",
        "KZ_ZS": "住所",
        "KZ_JYFW": "经营范围",
    }
    kz = doc.get("KZ") or {}
    return LicenseView(
        title=doc["ZZMC"],
        identifier=doc["ZZBS"],
        number=doc["ZZBH"],
        holder_name=doc["CZZT"],
        holder_code=doc["CZZTDM"],
        issuer_name=doc["ZZBFJG"],
        issue_date=doc["ZZBFRQ"],
        validity=f"{doc['ZZYXQQSRQ']} 至 {until}",
        surface=tuple((labels.get(k, k), v) for k, v in sorted(kz.items())),
        seal_label=DEV_SEAL_NAME,
    )


def run(settings: Settings, store: Store) -> StageResult:
    seal_id, pki = ensure_dev_seal(settings, store)
    sealer = PadesSealer(pki.seal_p12_path, pki.passphrase)
    (settings.out_dir / "licenses").mkdir(parents=True, exist_ok=True)
    batches = sealed = 0
    while True:
        with store.session() as s:
            todo = list(
                s.execute(
                    select(
                        LicenseRow.id,
                        LicenseRow.identifier,
                        LicenseRow.version,
                        LicenseRow.county,
                        LicenseRow.document,
                    )
                    .where(LicenseRow.state == "normalized")
                    .order_by(LicenseRow.id)
                    .limit(settings.batch_size)
                )
            )
        if not todo:
            break
        batches += 1
        sigs, deliveries, feeds, events = [], [], [], []
        for lid, ident, ver, county, doc in todo:
            pdf = render_license_pdf(license_view(doc))
            signed_at = datetime.now(UTC)
            sealed_pdf = sealer.seal(
                pdf, reason="电子证照签章 / e-license seal", location="山东", signing_time=signed_at
            )
            path = document_path(settings, ident, ver)
            _write_atomic(path, sealed_pdf)
            sigs.append(
                {
                    "license_id": lid,
                    "seal_id": seal_id,
                    "format": "pades",
                    "level": "B-B",
                    "path": str(path),
                    "sha256": hashlib.sha256(sealed_pdf).hexdigest(),
                    "signed_at": signed_at,
                }
            )
            deliveries += [
                {
                    "license_id": lid,
                    "destination": d,
                    "idempotency_key": idempotency_key(d, ident, ver),
                    "state": "pending",
                    "attempts": 0,
                    "created_at": utcnow(),
                }
                for d in DESTINATIONS
            ]
            topic = settings.return_topic_prefix + county
            feeds.append(
                {
                    "license_id": lid,
                    "topic": topic,
                    "message_key": ident,
                    "message_id": message_id(topic, ident, ver),
                    "state": "pending",
                    "created_at": utcnow(),
                }
            )
            events.append(
                Event(
                    "sealed", ident, ver, {"format": "pades", "level": "B-B", "seal": DEV_SEAL_CODE}
                )
            )
        crash_point(settings.fault, "seal", batches, "before")
        with store.session() as s:
            insert_ignore(s, SignatureRow.__table__, sigs, ["license_id", "format"])
            insert_ignore(s, DeliveryRow.__table__, deliveries, ["license_id", "destination"])
            insert_ignore(s, FeedMessageRow.__table__, feeds, ["license_id", "topic"])
            s.execute(
                update(LicenseRow)
                .where(LicenseRow.id.in_([t[0] for t in todo]))
                .values(state="sealed")
            )
            append(s, events)
        sealed += len(todo)
        crash_point(settings.fault, "seal", batches)
    log.info("seal: %d batches, %d licenses sealed", batches, sealed)
    return StageResult("seal", batches, {"sealed": sealed})


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
