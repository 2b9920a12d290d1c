"""``ehub verify FILE``: check the seal of a license PDF, XML or OFD, offline.

The file kind is detected from its content (``%PDF-`` header, a ZIP package
with ``OFD.xml``, or an XML root element), never from its name. Exit codes: 0
valid, 1 invalid (tampered, untrusted, expired, revoked, changed after sealing,
unsigned), 2 the file or a trust root/CRL cannot be read, or the file is
neither PDF, OFD nor XML.

OFD documents carry GB/T 38540 SM2 seals (:mod:`signing.ofd_verify`); they
are checked against the seal makers given with ``--ofd-trust``, by default the
dev SM2 seal maker ``$EHUB_HOME/pki/sm2/maker.pem`` (created by
:func:`signing.pki_sm2.ensure_dev_sm2_seal_maker`, never here).

Default trust root: the dev PKI root ``$EHUB_HOME/pki/root.pem`` (where
``ehub pki init`` / the seal stage create it; it is never created here), and
then also the dev PKI's CRLs ``$EHUB_HOME/pki/crl/*.crl`` unless ``--crl``
is given.

The license's own status comes from the hub store when there is one here
(``--no-register`` to skip): a revoked or cancelled license verifies "intact but
revoked" (invalid, exit 1).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ehub.config import default_home
from signing.certstatus import load_crls
from signing.errors import VerificationError
from signing.ofd_package import is_ofd
from signing.ofd_verify import OfdVerification, verify_ofd
from signing.pki import ROOT_CERT
from signing.pki_sm2 import load_certificate, maker_cert_path
from signing.verify import LicenseStatusLookup, PdfVerification, verify_pdf
from signing.xmlsig import XmlVerification, verify_license_xml

EXIT_VALID, EXIT_INVALID, EXIT_UNREADABLE = 0, 1, 2


def register_lookup() -> LicenseStatusLookup | None:
    """The license status as the hub store records it (newest version), or None
    when there is no hub store here (a verifier outside the hub checks the seal only)."""
    from sqlalchemy.engine import make_url

    from ehub.config import Settings
    from ehub.licenses import newest_status
    from ehub.store.db import Store

    url = Settings.from_env().database_url
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and not Path(parsed.database or "").is_file():
        return None  # do not create an empty store just to look
    store = Store(url)
    return lambda identifier: newest_status(store, identifier)


_ZH = {
    "intact": "完好",
    "modified": "已被篡改",
    "broken": "签名数据损坏",
    "whole_document": "覆盖全文",
    "allowed_updates": "签后有允许的更新",
    "disallowed_updates": "签后有不允许的修改",
    "unknown": "未知",
    "trusted": "可信",
    "untrusted_root": "根证书不受信任",
    "expired": "已过期",
    "revoked": "已吊销",
}


def detect_kind(data: bytes) -> str | None:
    """'pdf', 'ofd', 'xml' or None, from the content."""
    if b"%PDF-" in data[:1024]:
        return "pdf"
    if is_ofd(data):
        return "ofd"
    head = data.lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"<"):
        return "xml"
    return None


@click.command("verify")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report on stdout.")
@click.option(
    "--trust",
    "trust",
    multiple=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="Trust root certificate (PEM/DER); repeatable. Default: $EHUB_HOME/pki/root.pem.",
)
@click.option(
    "--crl",
    "crl",
    multiple=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="CRL (PEM/DER) to check against; repeatable. Default with the default root: "
    "$EHUB_HOME/pki/crl/*.crl.",
)
@click.option(
    "--ofd-trust",
    "ofd_trust",
    multiple=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="Trusted SM2 seal maker certificate (PEM/DER) for OFD seals; repeatable. "
    "Default: $EHUB_HOME/pki/sm2/maker.pem.",
)
@click.option("--at", "at", help="Validation time, ISO-8601 with offset (default: now).")
@click.option(
    "--register/--no-register",
    default=True,
    show_default=True,
    help="Also check the license's own status in the hub store (revoked → invalid).",
)
def verify(
    file: Path,
    as_json: bool,
    trust: tuple[Path, ...],
    crl: tuple[Path, ...],
    ofd_trust: tuple[Path, ...],
    at: str | None,
    register: bool,
) -> None:
    """Verify the seal of a license PDF (PAdES), OFD (SM2 seal) or XML (XMLDSig) offline."""
    _quiet_validators()
    pki_dir = default_home() / "pki"
    roots = list(trust) or [pki_dir / ROOT_CERT]
    # With the default (dev) root, the dev PKI's own CRLs count too, so a
    # revoked seal certificate is caught offline.
    crl_files = list(crl) or ([] if trust else sorted((pki_dir / "crl").glob("*.crl")))
    try:
        data = file.read_bytes()
    except OSError as exc:
        _finish(as_json, file, None, None, f"cannot read {file}: {exc.strerror}")
    kind = detect_kind(data)
    if kind is None:
        _finish(as_json, file, None, None, "the file is neither a PDF, an OFD nor an XML document")
    if kind == "ofd":
        _verify_ofd(as_json, file, data, list(ofd_trust) or [maker_cert_path(pki_dir)], register)
    try:
        moment = _parse_time(at)
        crls = load_crls(crl_files)
        lookup = register_lookup() if register else None
        if kind == "pdf":
            result: PdfVerification | XmlVerification = verify_pdf(
                data,
                roots,
                validation_time=moment,
                crls=crls,
                license_status=lookup,
            )
        else:
            result = verify_license_xml(
                data,
                roots,
                validation_time=moment,
                crls=crls,
                license_status=lookup,
            )
    except VerificationError as exc:
        _finish(as_json, file, kind, None, f"cannot verify: {exc}")
    if not result.readable:
        _finish(as_json, file, kind, result, "; ".join(result.reasons))
    _finish(as_json, file, kind, result, None)


def _verify_ofd(
    as_json: bool, file: Path, data: bytes, trust: list[Path], register: bool
) -> NoReturn:
    # The seal layer has its own trust anchors (SM2 seal makers), not the PAdES roots.
    try:
        makers = [load_certificate(path) for path in trust]
    except OSError as exc:
        _finish(
            as_json,
            file,
            "ofd",
            None,
            f"cannot read the OFD seal maker certificate {exc.filename}: {exc.strerror} "
            "(give --ofd-trust, or create the dev one with "
            "signing.pki_sm2.ensure_dev_sm2_seal_maker)",
        )
    lookup = register_lookup() if register else None
    result = verify_ofd(data, makers, license_status=lookup)
    if not result.readable:
        _finish(as_json, file, "ofd", result, "; ".join(result.reasons))
    _finish(as_json, file, "ofd", result, None)


Verdict = PdfVerification | XmlVerification | OfdVerification


def _finish(
    as_json: bool,
    file: Path,
    kind: str | None,
    result: Verdict | None,
    error: str | None,
) -> NoReturn:
    if error is not None:
        code = EXIT_UNREADABLE
    else:
        code = EXIT_VALID if result is not None and result.valid else EXIT_INVALID
    if as_json:
        report: dict[str, Any] = {
            "file": str(file),
            "kind": kind,
            "exit_code": code,
            "valid": bool(result is not None and result.valid and error is None),
            "error": error,
            "result": _plain(result) if result is not None else None,
        }
        click.echo(json.dumps(report, ensure_ascii=False, indent=2))
    else:
        _print(Console(width=None if Console().is_terminal else 140), file, kind, result, error)
    sys.exit(code)


def _print(
    console: Console,
    file: Path,
    kind: str | None,
    result: Verdict | None,
    error: str | None,
) -> None:
    console.print(Text(f"文件 File: {file}  ({(kind or 'unknown').upper()})"))
    if error is not None:
        console.print(Text(f"✘ 无法验证 CANNOT VERIFY: {error}", style="bold yellow"))
        return
    assert result is not None
    if result.valid:
        console.print(Text("✔ 有效 VALID", style="bold green"))
    else:
        console.print(Text("✘ 无效 INVALID", style="bold red"))
    if isinstance(result, PdfVerification):
        for sig in result.signatures:
            rows = [
                ("签名域 Field", sig.field_name),
                ("完整性 Integrity", _zh(sig.integrity)),
                ("覆盖范围 Coverage", _zh(sig.coverage) + _level(sig.modification_level)),
                ("签章人 Signer", sig.signer_subject),
                ("证书序列号 Serial", sig.cert_serial),
                ("印章名称 Seal", sig.seal_name),
                ("签章时间 Signing time", _time(sig.signing_time) + " (声称 claimed)"),
                ("时间戳 Timestamp", _ts(sig.timestamp)),
                ("证书状态 Certificate", _zh(sig.cert_status)),
                ("摘要算法 Digest", sig.digest_algorithm),
            ]
            _table(console, f"签名 Signature {sig.field_name}", rows)
    elif isinstance(result, OfdVerification):
        for seal in result.seals:
            rows = [
                ("完整性 Integrity", _zh("intact" if seal.intact else "modified")),
                ("签章人 Signer", seal.signer_subject),
                ("印章名称 Seal", seal.seal_name),
                ("印章编码 Seal ID", seal.seal_id),
                ("签章时间 Signing time", _time(seal.signing_time)),
                ("受保护文件 Protected files", str(seal.references)),
            ]
            _table(console, f"OFD 电子签章 Seal {seal.signature_entry}", rows)
    else:
        rows = [
            ("完整性 Integrity", _zh("intact" if result.intact else "modified")),
            ("签章人 Signer", result.signer_subject),
            ("证书序列号 Serial", result.cert_serial),
            ("印章名称 Seal", result.seal_name),
            ("证书状态 Certificate", _zh(result.cert_status)),
        ]
        _table(console, "XML 签名 Signature", rows)
    if result.license_identifier:
        status = result.license_status or "未查询 not checked"
        console.print(Text(f"证照标识 License: {result.license_identifier}  状态 status: {status}"))
    for reason in result.reasons:
        console.print(Text(f"  • {reason}", style="red"))


def _table(console: Console, title: str, rows: list[tuple[str, str]]) -> None:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("", style="bold")
    table.add_column("")
    for label, value in rows:
        table.add_row(Text(label), Text(value or "—"))
    console.print(table)


def _zh(value: str) -> str:
    return f"{_ZH.get(str(value), str(value))} {value}"


def _level(level: str) -> str:
    return f" [{level}]" if level and level != "NONE" else ""


def _time(value: datetime | None) -> str:
    return value.isoformat() if value is not None else "—"


def _ts(ts: Any) -> str:
    if not ts.present:
        return "无 none"
    state = "有效 valid" if ts.valid else "无效 invalid"
    return f"{state}, {_time(ts.time)}, {ts.tsa_subject}"


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, XmlVerification):
            out["trusted"] = value.trusted
            signed = out.pop("signed_xml")
            out["signed_xml_bytes"] = len(signed) if signed is not None else None
        if isinstance(value, OfdVerification):
            out["reasons"] = value.reasons
            out["valid"] = value.valid
        return out
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def _parse_time(at: str | None) -> datetime | None:
    if at is None:
        return None
    try:
        moment = datetime.fromisoformat(at)
    except ValueError as exc:
        raise VerificationError(f"--at must be ISO-8601, got {at!r}") from exc
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _quiet_validators() -> None:
    """pyHanko logs every failed path build with a traceback; a verdict says it better."""
    if logging.getLogger().getEffectiveLevel() > logging.INFO:
        for name in ("pyhanko", "pyhanko_certvalidator", "signxml"):
            logging.getLogger(name).setLevel(logging.ERROR)
