"""The verification endpoint behind a license's QR code: ``GET /verify/{identifier}``.

Anyone holding a license (a citizen, a counter clerk, another department) scans
its QR code and learns, for the newest version the hub holds:

* the license's own status — valid, or revoked / cancelled / expired (a revoked
  license's document still verifies as intact, and the verdict says revoked);
* whether the sealed document the hub issued is intact and its seal trusted
  (the stored PDF is validated with pyHanko against the configured roots).

Holder data of natural persons is masked (STANDARDS.md: personal data never
leaves unmasked). JSON by default; a browser (``Accept: text/html``) gets a page.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from ehub.config import Settings
from ehub.errors import StoreError
from ehub.masking import mask_license_document
from ehub.office_api import create_router as create_office_router
from ehub.office_portal import create_router as create_portal_router
from ehub.office_portal import portal_secret
from ehub.seal_api import create_router
from ehub.store.db import Store
from ehub.store.models import LicenseRow, SignatureRow
from signing.verify import TrustRoot, verify_pdf

log = logging.getLogger(__name__)

STATUS_ZH = {
    "valid": "有效",
    "revoked": "已吊销",
    "cancelled": "已注销",
    "expired": "已过期",
    "invalid": "证照文件无效",
    "not_sealed": "尚未签章",
}


@dataclass(frozen=True, slots=True)
class DocumentCheck:
    """The sealed PDF of the license version, as validated now."""

    sealed: bool
    valid: bool = False
    intact: bool = False
    trusted: bool = False
    signer: str = ""
    signed_at: str = ""
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class VerificationReport:
    identifier: str
    version: int
    verdict: str
    """valid | revoked | cancelled | expired | invalid | not_sealed."""
    verdict_zh: str
    license: dict[str, Any]
    document: DocumentCheck


def verify_license(
    store: Store,
    identifier: str,
    trust_roots: Sequence[TrustRoot],
    *,
    today: Callable[[], date] = date.today,
) -> VerificationReport | None:
    """The report of the newest version of ``identifier`` (None: unknown identifier)."""
    with store.session() as s:
        row = s.scalar(
            select(LicenseRow)
            .where(LicenseRow.identifier == identifier)
            .order_by(LicenseRow.version.desc())
            .limit(1)
        )
        if row is None:
            return None
        sig = s.scalar(
            select(SignatureRow)
            .where(SignatureRow.license_id == row.id, SignatureRow.format == "pades")
            .limit(1)
        )
        doc, version, status = dict(row.document), row.version, row.status
        path = Path(sig.path) if sig is not None else None
    document = _check_document(path, trust_roots)
    until = doc.get("ZZYXQJZRQ")
    if status != "valid":
        verdict = status
    elif until and str(until) < today().isoformat():
        verdict = "expired"
    elif not document.sealed:
        verdict = "not_sealed"
    elif not document.valid:
        verdict = "invalid"
    else:
        verdict = "valid"
    shown = mask_license_document(doc)
    license_ = {
        "type": shown.get("ZZMC"),
        "number": shown.get("ZZBH"),
        "holder": shown.get("CZZT"),
        "holder_code": shown.get("CZZTDM"),
        "issuer": shown.get("ZZBFJG"),
        "issue_date": shown.get("ZZBFRQ"),
        "valid_from": shown.get("ZZYXQQSRQ"),
        "valid_until": until or "长期",
        "status": status,
    }
    return VerificationReport(
        identifier, version, verdict, STATUS_ZH.get(verdict, verdict), license_, document
    )


def _check_document(path: Path | None, roots: Sequence[TrustRoot]) -> DocumentCheck:
    if path is None:
        return DocumentCheck(sealed=False)
    try:
        data = path.read_bytes()
    except OSError as exc:
        return DocumentCheck(sealed=True, reasons=(f"the sealed file is unreadable: {exc}",))
    v = verify_pdf(data, roots)
    return DocumentCheck(
        sealed=True,
        valid=v.valid,
        intact=v.intact,
        trusted=v.trusted,
        signer=v.signer_subject,
        signed_at=v.signing_time.isoformat() if v.signing_time else "",
        reasons=tuple(v.reasons),
    )


def create_app(settings: Settings, trust_roots: Sequence[TrustRoot] | None = None) -> FastAPI:
    """The hub's HTTP API: the public verification endpoint and the authenticated
    on-demand sealing API (:mod:`ehub.seal_api`); trust roots default to the dev
    PKI's root certificate."""
    store = Store(settings.database_url)
    roots: Sequence[TrustRoot] = (
        trust_roots if trust_roots is not None else [settings.home / "pki" / "root.pem"]
    )
    app = FastAPI(title="ehub license verification", docs_url=None, redoc_url=None)
    app.include_router(create_router(settings, store))  # on-demand sealing (authenticated)
    app.include_router(create_office_router(store))  # offices' pull API (authenticated)
    app.include_router(create_portal_router(store, portal_secret(settings)))  # offices' portal

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/verify/{identifier}")
    def verify(identifier: str, request: Request) -> Response:
        try:
            report = verify_license(store, identifier, roots)
        except (StoreError, SQLAlchemyError) as exc:
            log.warning("verification of %s: the hub store is unavailable: %s", identifier, exc)
            return JSONResponse(
                {"identifier": identifier, "verdict": "unavailable",
                 "verdict_zh": "核验服务暂不可用", "error": "the hub store is unavailable"},
                status_code=503,
            )  # fmt: skip
        wants_html = "text/html" in request.headers.get("accept", "")
        if report is None:
            body = {"identifier": identifier, "verdict": "unknown", "verdict_zh": "查无此证照"}
            if wants_html:
                return HTMLResponse(_page_unknown(identifier), status_code=404)
            return JSONResponse(body, status_code=404)
        if wants_html:
            return HTMLResponse(_page(report))
        return JSONResponse(asdict(report))

    return app


def _page_unknown(identifier: str) -> str:
    return _html("查无此证照", f"<p>证照标识 {html.escape(identifier)} 不存在。</p>")


def _page(r: VerificationReport) -> str:
    lic, doc = r.license, r.document
    rows = [
        ("证照标识", r.identifier),
        ("证照名称", lic["type"]),
        ("证照编号", lic["number"]),
        ("持证主体", lic["holder"]),
        ("发证机关", lic["issuer"]),
        ("有效期", f"{lic['valid_from']} 至 {lic['valid_until']}"),
        ("证照状态", STATUS_ZH.get(lic["status"], lic["status"])),
        ("签章", "完整、可信" if doc.valid else "；".join(doc.reasons) or "尚未签章"),
        ("签章人", doc.signer),
        ("签章时间", doc.signed_at),
    ]
    table = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v or ''))}</td></tr>" for k, v in rows
    )
    css = "valid" if r.verdict == "valid" else "bad"
    body = f'<p class="{css}" id="verdict">{html.escape(r.verdict_zh)}</p><table>{table}</table>'
    return _html("电子证照核验", body)


def _html(title: str, body: str) -> str:
    return (
        '<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width"><title>{title}</title>'
        "<style>body{font-family:sans-serif;max-width:40em;margin:2em auto}"
        "th{text-align:left;padding-right:1em}.valid{color:#060}.bad{color:#a00}"
        f"#verdict{{font-size:1.6em}}</style></head><body><h1>{title}</h1>{body}</body></html>"
    )
