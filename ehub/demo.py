"""``ehub demo``: the whole journey once, through Airflow, on the embedded stack.

Starts the dev stack (broker, provincial platform, five simulated department
systems — SQL, REST, GBK XML files, Kafka events, case records — each seeded
with known defects), runs every source's ingest DAG (generated from its YAML
spec) and the sealing, delivery and return-feed DAGs with ``dag.test()``,
prints a summary, writes ``out/demo/summary.json``, the sealed PDFs under
``out/demo/licenses/`` and each department's rejects report under
``out/demo/rejects/``, and stops the stack — also when something fails.

The demo fails unless every source's quarantine matches, reason by reason, the
defects its simulator injected, and every sealed PDF verifies.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from connectors.tls import httpx_kwargs
from ehub import devstack
from ehub.config import Settings
from ehub.errors import HubError
from ehub.orchestration import journey, run_dags
from ehub.store.db import Store
from ehub.summary import journey_counts


def run_demo(
    home: Path, out_dir: Path, *, count: int = 200, console: Console | None = None
) -> dict[str, Any]:
    console = console or Console()
    started = time.monotonic()
    # A demo starts from an empty store and platform; the dev PKI is kept.
    devstack.down(home)
    for sub in ("hub.db", "hub.db-wal", "hub.db-shm", "sim"):
        p = home / sub
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink(missing_ok=True)
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    console.print(f"[bold]ehub demo[/] — home {home}, output {out_dir}")
    state = devstack.up(home, seed_count=count, out_dir=out_dir)
    try:
        console.print(
            "dev stack up: " + ", ".join(f"{s['name']} :{s['port']}" for s in state["services"])
        )
        settings = Settings.from_env(home=home, out_dir=out_dir)
        on_demand = _issue_on_demand(settings, home)
        console.print(
            f"issuing system → on-demand sealing API: {on_demand['posted']} licenses, "
            f"answers {on_demand['statuses']}, p95 {on_demand['p95_ms']} ms"
        )
        seeded_returns = _seed_other_departments(settings)
        console.print(
            f"provincial platform: {seeded_returns} versions from other departments to hand back"
        )
        for res in run_dags(settings, journey()):
            console.print(f"  DAG {res.dag_id}: {res.state}")
        store = Store(settings.database_url)
        try:
            counts = journey_counts(store)
            on_demand["delivered"] = _delivered(store, on_demand.pop("identifiers"))
            reports = _rejects_reports(store, out_dir / "rejects")
        finally:
            store.dispose()
        platform = {
            name: httpx.get(
                f"{url}/admin/stats",
                timeout=10,
                **httpx_kwargs(settings.platform_tls()),  # mutual TLS, like the hub's client
            ).json()
            for name, url in (("provincial", settings.provincial_url),
                              ("national", settings.national_url))
        }  # fmt: skip
        endpoint = _ask_verification_endpoint(settings)
    finally:
        devstack.down(home)
    from signing.pki_sm2 import maker_cert_path

    verified = verify_documents(
        out_dir / "licenses", home / "pki" / "root.pem", maker_cert_path(home / "pki")
    )
    mismatches = {
        sid: {"expected": seed["expected"], "quarantined": counts["sources"].get(sid, {})}
        for sid, seed in state.get("seeded", {}).items()
        if counts["sources"].get(sid, {}).get("by_reason", {}) != seed["expected"]
    }
    summary = {
        **counts,
        "quarantine_matches_injected_defects": not mismatches,
        "rejects_reports": [str(p) for p in reports],
        "documents_verified": verified,
        "verification_endpoint": endpoint,
        "on_demand_sealing": on_demand,
        "other_departments_seeded": seeded_returns,
        "platform": platform,
        "seeded": state.get("seeded", {}),
        "duration_s": round(time.monotonic() - started, 2),
        "documents": str(out_dir / "licenses"),
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2))
    _print(console, summary, out_dir)
    if mismatches:
        raise HubError(f"quarantine differs from the injected defects: {mismatches}")
    if verified["invalid"] or not verified["valid"]:
        raise HubError(f"{verified['invalid']} sealed PDFs failed verification; see {out_dir}")
    if verified["ofd_invalid"]:
        raise HubError(f"{verified['ofd_invalid']} sealed OFDs failed verification; see {out_dir}")
    if (
        on_demand["statuses"] != {"201": on_demand["posted"]}
        or on_demand["pdfs_invalid"]
        or on_demand["delivered"] != on_demand["posted"]
    ):
        raise HubError(f"on-demand sealing: not every posted license was sealed, valid and "
                       f"delivered: {on_demand}")  # fmt: skip
    if counts["returned_from_province"] != seeded_returns:
        raise HubError(f"the return interface handed back {seeded_returns} other departments' "
                       f"versions; the hub kept {counts['returned_from_province']}")  # fmt: skip
    left = {k: v for k, v in counts["deliveries_by_state"].items() if k in ("pending", "dead")}
    if left:
        raise HubError(f"deliveries left in the outbox after the delivery DAGs: {left}")
    if endpoint["verdict"] != "valid":
        raise HubError(
            f"the verification endpoint does not report a sealed license valid: {endpoint}"
        )
    return summary


ON_DEMAND_COUNT = 20
OTHER_DEPARTMENTS_COUNT = 40


def _seed_other_departments(settings: Settings) -> int:
    """Versions other departments gave the provincial platform: its return interface
    hands them back with the hub's own, for the return__provincial DAG to route."""
    from simulators.other_departments import generate

    resp = httpx.post(
        f"{settings.provincial_url}/admin/return/records",
        json={"items": generate(OTHER_DEPARTMENTS_COUNT)},
        timeout=30,
        **httpx_kwargs(settings.platform_tls()),
    )
    resp.raise_for_status()
    return int(resp.json()["stored"])


def _issue_on_demand(settings: Settings, home: Path) -> dict[str, Any]:
    """The market regulation bureau's issuing system posts licenses to the hub's API
    (stack's API server) and gets each sealed PDF back; the DAGs then carry them."""
    from ehub.on_demand import issue_licenses

    store = Store(settings.database_url)
    try:
        store.migrate()
        return issue_licenses(
            store,
            settings.verify_url.rsplit("/verify", 1)[0],
            ON_DEMAND_COUNT,
            trust_root=home / "pki" / "root.pem",
        )
    finally:
        store.dispose()


def _delivered(store: Store, identifiers: list[str]) -> int:
    """How many of the posted licenses the delivery DAG delivered to the provincial platform."""
    from sqlalchemy import func, select

    from ehub.store.models import DeliveryRow, LicenseRow

    with store.session() as s:
        return int(
            s.scalar(
                select(func.count(func.distinct(LicenseRow.identifier)))
                .join(DeliveryRow, DeliveryRow.license_id == LicenseRow.id)
                .where(
                    LicenseRow.identifier.in_(identifiers),
                    DeliveryRow.state == "delivered",
                    DeliveryRow.destination == "provincial",
                )
            )
            or 0
        )


def _ask_verification_endpoint(settings: Settings) -> dict[str, str]:
    """What the QR code of the first sealed license leads to, asked over HTTP."""
    from sqlalchemy import select

    from ehub.store.models import LicenseRow

    store = Store(settings.database_url)
    try:
        with store.session() as s:
            ident = s.scalar(
                select(LicenseRow.identifier).where(LicenseRow.state == "sealed").limit(1)
            )
    finally:
        store.dispose()
    url = f"{settings.verify_url}/{ident}"
    report = httpx.get(url, timeout=30).json()
    return {
        "url": url,
        "verdict": report.get("verdict", ""),
        "verdict_zh": report.get("verdict_zh", ""),
    }


def _rejects_reports(store: Store, folder: Path) -> list[Path]:
    """One rejects report per source (CSV + XLSX, Chinese headers) to send back."""
    from ehub.reports import write_rejects_report
    from ehub.sources.loader import load_all

    paths: list[Path] = []
    for spec in load_all():
        paths += write_rejects_report(store, spec.id, folder)
    return paths


def verify_documents(folder: Path, root: Path, sm2_maker: Path | None = None) -> dict[str, int]:
    """Check every sealed PDF with pyHanko's validator against the dev trust root, and
    every OFD (license types sealed as OFD with an SM2 seal) against the dev SM2 seal maker."""
    from signing.ofd_verify import verify_ofd
    from signing.pki_sm2 import load_certificate
    from signing.verify import verify_pdf

    valid = invalid = 0
    for pdf in sorted(folder.glob("*.pdf")):
        if verify_pdf(pdf.read_bytes(), [root]).valid:
            valid += 1
        else:
            invalid += 1
    ofds = sorted(folder.glob("*.ofd"))
    makers = [load_certificate(sm2_maker)] if ofds and sm2_maker is not None else []
    ofd_valid = sum(verify_ofd(p.read_bytes(), makers).valid for p in ofds)
    return {"valid": valid, "invalid": invalid, "ofd_valid": ofd_valid,
            "ofd_invalid": len(ofds) - ofd_valid}  # fmt: skip


def _print(console: Console, s: dict[str, Any], out_dir: Path) -> None:
    src = Table(title="ehub demo — department sources onboarded from YAML (接入)")
    for c in ("source", "extracted", "normalized", "quarantined", "by reason"):
        src.add_column(c, justify="left" if c in ("source", "by reason") else "right")
    for sid, e in s["sources"].items():
        reasons = ", ".join(f"{k} {v}" for k, v in e.get("by_reason", {}).items())
        src.add_row(
            sid, str(e.get("extracted", 0)), str(e.get("normalized", 0)),
            str(e.get("quarantined", 0)), reasons,
        )  # fmt: skip
    console.print(src)
    t = Table(title="ehub demo — 电子证照汇聚 journey")
    t.add_column("stage")
    t.add_column("count", justify="right")
    t.add_row("extracted 抽取", str(s["extracted"]))
    t.add_row("normalized 标准化", str(s["normalized"]))
    t.add_row("quarantined 隔离", str(s["quarantined"]))
    for code, n in s["quarantined_by_reason"].items():
        t.add_row(f"  {code}", str(n))
    t.add_row(
        "  matches the simulators' injected defects", str(s["quarantine_matches_injected_defects"])
    )
    t.add_row("case record versions 办件", str(s["case_versions"]))
    t.add_row("sealed 签章 (PAdES)", str(s["sealed"]))
    for level, n in s["sealed_by_level"].items():
        t.add_row(f"  at {level}", str(n))
    t.add_row("sealed 签章 (OFD, SM2 seal)", str(s["sealed_ofd"]))
    t.add_row("held 暂缓 (no usable seal, TSA down…)", str(s["held"]))
    for dest, kinds in s["delivered"].items():
        for kind, n in kinds.items():
            t.add_row(f"delivered 汇聚 → {dest} ({kind})", str(n))
    rejected = s["deliveries_by_state"].get("rejected", 0)
    t.add_row("rejected by a platform 平台退回", str(rejected))
    t.add_row("returned 属地返还 (messages)", str(s["returned"]))
    t.add_row("from the province's return interface", str(s["returned_from_province"]))
    v = s["documents_verified"]
    t.add_row("sealed PDFs verified (pyHanko)", f"{v['valid']} valid, {v['invalid']} invalid")
    t.add_row("sealed OFDs verified (GB/T 38540)",
              f"{v['ofd_valid']} valid, {v['ofd_invalid']} invalid")  # fmt: skip
    o = s["on_demand_sealing"]
    t.add_row(
        "on-demand sealing API 即时签章",
        f"{o['statuses'].get('201', 0)}/{o['posted']} sealed at once (p95 {o['p95_ms']} ms), "
        f"{o['delivered']} delivered",
    )
    e = s["verification_endpoint"]
    t.add_row("QR code → verification endpoint 核验", f"{e['verdict']} {e['verdict_zh']}")
    t.add_row("duration (s)", f"{s['duration_s']:.1f}")
    console.print(t)
    console.print(f"summary: {out_dir / 'summary.json'}")
    console.print(f"rejects reports for the departments: {out_dir / 'rejects'}")
