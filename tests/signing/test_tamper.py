"""Tampered PDFs: `ehub verify` (exit 1, precise reason) and poppler's pdfsig both object.

pdfsig does not analyse incremental updates: for an update appended after the
seal it still prints "Signature is Valid" but flags "Not total document
signed", which is what it is held to here; `ehub verify` rejects the update.
"""

from __future__ import annotations

import io
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.serialization import Encoding
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.generic import NameObject
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.sign.diff_analysis import ModificationLevel

from ehub.cli import main
from ehub.cli_verify import verify
from signing.certstatus import CertStatus
from signing.pades import PadesSealer
from signing.pki import DevPKI
from signing.verify import Coverage, Integrity, verify_pdf
from tests.signing.conftest import SIGNING_TIME, write
from tests.signing.verify_support import dev_tsa, nss_db, pdfsig, revoking_crl, seal_cert


@pytest.fixture(scope="module")
def nss(pki: DevPKI, tmp_path_factory: pytest.TempPathFactory) -> str:
    return nss_db(tmp_path_factory.mktemp("nss") / "db", pki.root_cert_path)


def _cli(path: Path, *trust: Path, extra: tuple[str, ...] = ()) -> tuple[int, dict[str, Any]]:
    args = [str(path), "--json", *extra]
    for root in trust:
        args += ["--trust", str(root)]
    result = CliRunner().invoke(verify, args)
    return result.exit_code, json.loads(result.output)


def _append(pdf: bytes, change: Any) -> bytes:
    """Apply ``change(writer)`` as an unsigned incremental update."""
    writer = IncrementalPdfFileWriter(io.BytesIO(pdf))
    change(writer)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def _forge_content(writer: IncrementalPdfFileWriter) -> None:
    page = writer.root["/Pages"]["/Kids"][0].get_object()
    forged = writer.add_object(
        generic.StreamObject(stream_data=b"BT /F1 24 Tf 100 300 Td (FORGED) Tj ET")
    )
    page["/Contents"] = generic.ArrayObject([page.raw_get("/Contents"), forged])
    writer.update_container(page)


def _add_annotation(writer: IncrementalPdfFileWriter) -> None:
    """A FreeText annotation whose appearance paints "VOID" over the license."""
    page = writer.root["/Pages"]["/Kids"][0].get_object()
    bbox = generic.ArrayObject([generic.FloatObject(v) for v in (0, 0, 300, 50)])
    appearance = writer.add_object(
        generic.StreamObject(
            {
                NameObject("/Type"): NameObject("/XObject"),
                NameObject("/Subtype"): NameObject("/Form"),
                NameObject("/BBox"): bbox,
            },
            stream_data=b"1 0 0 rg 0 0 300 50 re f",
        )
    )
    annot = writer.add_object(
        generic.DictionaryObject(
            {
                NameObject("/Type"): NameObject("/Annot"),
                NameObject("/Subtype"): NameObject("/FreeText"),
                NameObject("/Rect"): generic.ArrayObject(
                    [generic.FloatObject(v) for v in (100, 400, 400, 450)]
                ),
                NameObject("/Contents"): generic.TextStringObject("VOID"),
                NameObject("/DA"): generic.TextStringObject("/Helv 24 Tf 0 g"),
                NameObject("/AP"): generic.DictionaryObject({NameObject("/N"): appearance}),
            }
        )
    )
    annots = page.get("/Annots")
    if isinstance(page.raw_get("/Annots"), generic.IndirectObject):
        annots.append(annot)
        writer.update_container(annots)
    else:
        page["/Annots"] = generic.ArrayObject([*(annots or ()), annot])
        writer.update_container(page)


def _strip_value(writer: IncrementalPdfFileWriter) -> None:
    field = writer.root["/AcroForm"]["/Fields"][0].get_object()
    del field["/V"]
    writer.update_container(field)


def _zero_contents(pdf: bytes) -> bytes:
    match = re.search(rb"/Contents\s*<([0-9a-fA-F]+)>", pdf)
    assert match is not None
    start, end = match.span(1)
    return pdf[:start] + b"0" * (end - start) + pdf[end:]


# --- the valid baseline -------------------------------------------------------


def test_cli_reports_a_valid_seal_in_detail(pki: DevPKI, sealed_pdf: bytes, tmp_path: Path) -> None:
    code, report = _cli(write(tmp_path, "ok.pdf", sealed_pdf), pki.root_cert_path)
    assert code == 0 and report["valid"] is True and report["kind"] == "pdf"
    (sig,) = report["result"]["signatures"]
    assert sig["integrity"] == "intact"
    assert sig["coverage"] == "whole_document"
    assert sig["cert_status"] == "trusted"
    assert sig["cert_serial"] == f"{seal_cert(pki).serial_number:X}"
    assert sig["seal_name"] == "电子证照测试专用章"
    assert sig["signing_time"] == SIGNING_TIME.isoformat()
    assert sig["timestamp"]["present"] is False  # B-B: no timestamp
    assert sig["reasons"] == []
    assert report["result"]["license_identifier"].startswith("1.2.156.3005.2.")


def test_cli_human_report_and_registration(pki: DevPKI, sealed_pdf: bytes, tmp_path: Path) -> None:
    path = write(tmp_path, "ok.pdf", sealed_pdf)
    result = CliRunner().invoke(main, ["verify", str(path), "--trust", str(pki.root_cert_path)])
    assert result.exit_code == 0, result.output
    assert "有效 VALID" in result.output
    assert "完好 intact" in result.output and "可信 trusted" in result.output


# --- tampering: each case rejected by ehub verify and flagged by pdfsig ------


def test_byte_changed_in_signed_range(
    pki: DevPKI, tampered_pdf: bytes, tmp_path: Path, nss: str
) -> None:
    path = write(tmp_path, "byte.pdf", tampered_pdf)
    code, report = _cli(path, pki.root_cert_path)
    assert code == 1
    (sig,) = report["result"]["signatures"]
    assert sig["integrity"] == Integrity.MODIFIED
    assert sig["reasons"] == ["signature EhubSeal1: the signed bytes were modified after sealing"]
    out = pdfsig(path, nss)
    assert "Digest Mismatch" in out and "Signature is Valid" not in out


@pytest.mark.parametrize("change", [_forge_content, _add_annotation], ids=["content", "annot"])
def test_unsigned_incremental_update(
    pki: DevPKI, sealed_pdf: bytes, tmp_path: Path, nss: str, change: Any
) -> None:
    path = write(tmp_path, "update.pdf", _append(sealed_pdf, change))
    code, report = _cli(path, pki.root_cert_path)
    assert code == 1
    (sig,) = report["result"]["signatures"]
    assert sig["integrity"] == "intact" and sig["cert_status"] == "trusted"
    assert sig["coverage"] == Coverage.DISALLOWED_UPDATES
    assert len(sig["reasons"]) == 1
    assert "changed after sealing in a way the modification policy rejects" in sig["reasons"][0]
    out = pdfsig(path, nss)
    assert "Not total document signed" in out and "Total document signed" not in out


def test_signature_value_removed(pki: DevPKI, sealed_pdf: bytes, tmp_path: Path, nss: str) -> None:
    path = write(tmp_path, "stripped.pdf", _append(sealed_pdf, _strip_value))
    code, report = _cli(path, pki.root_cert_path)
    assert code == 1
    assert report["result"]["reasons"] == ["the PDF carries no signature"]
    assert report["result"]["signature_count"] == 0
    out = pdfsig(path, nss)
    assert "The signature form field is not signed" in out and "Signature is Valid" not in out


def test_signature_contents_zeroed(
    pki: DevPKI, sealed_pdf: bytes, tmp_path: Path, nss: str
) -> None:
    path = write(tmp_path, "zeroed.pdf", _zero_contents(sealed_pdf))
    code, report = _cli(path, pki.root_cert_path)
    assert code == 1
    (sig,) = report["result"]["signatures"]
    assert sig["integrity"] == Integrity.BROKEN
    assert sig["reasons"][0].startswith("signature EhubSeal1: the signature cannot be read")
    assert "Signature is Valid" not in pdfsig(path, nss)


def test_wrong_trust_root(
    pki: DevPKI, other_pki: DevPKI, sealed_pdf: bytes, tmp_path: Path
) -> None:
    path = write(tmp_path, "sealed.pdf", sealed_pdf)
    code, report = _cli(path, other_pki.root_cert_path)
    assert code == 1
    (sig,) = report["result"]["signatures"]
    assert sig["integrity"] == "intact" and sig["cert_status"] == CertStatus.UNTRUSTED_ROOT
    assert sig["reasons"] == [
        "signature EhubSeal1: the signer certificate is not trusted (no path to a given trust root)"
    ]
    out = pdfsig(path, nss_db(tmp_path / "other-nss", other_pki.root_cert_path))
    assert "Signature is Valid" in out and "Certificate is Trusted" not in out


def test_expired_and_revoked(pki: DevPKI, sealed_pdf: bytes, tmp_path: Path) -> None:
    path = write(tmp_path, "sealed.pdf", sealed_pdf)
    later = (seal_cert(pki).not_valid_after_utc + timedelta(days=1)).isoformat()
    code, report = _cli(path, pki.root_cert_path, extra=("--at", later))
    assert code == 1 and report["result"]["signatures"][0]["cert_status"] == "expired"

    crl = revoking_crl(pki, seal_cert(pki).serial_number).public_bytes(Encoding.PEM)
    crl_path = write(tmp_path, "seal.crl.pem", crl)
    code, report = _cli(path, pki.root_cert_path, extra=("--crl", str(crl_path)))
    assert code == 1
    (sig,) = report["result"]["signatures"]
    assert sig["cert_status"] == "revoked" and "revoked on" in sig["reasons"][0]


def test_second_seal_is_an_allowed_update(
    pki: DevPKI, sealer: PadesSealer, sealed_pdf: bytes
) -> None:
    twice = sealer.seal(sealed_pdf, field_name="EhubSeal2", reason="r", location="l")
    result = verify_pdf(twice, [pki.root_cert()])
    assert result.valid, result.reasons
    first, second = result.signatures
    assert first.coverage == Coverage.ALLOWED_UPDATES and first.modification_level == "FORM_FILLING"
    assert second.coverage == Coverage.WHOLE_DOCUMENT
    # The policy knob: nothing at all may follow a seal.
    strict = verify_pdf(twice, [pki.root_cert()], max_modification=ModificationLevel.NONE)
    assert not strict.valid and strict.signatures[0].coverage == Coverage.DISALLOWED_UPDATES


def test_license_register_hook(pki: DevPKI, sealed_pdf: bytes) -> None:
    result = verify_pdf(sealed_pdf, [pki.root_cert()], license_status=lambda _ident: "revoked")
    assert result.intact and result.trusted and not result.valid
    assert result.license_status == "revoked"
    assert result.reasons == (
        f"the license {result.license_identifier} is revoked in the register",
    )


def test_unreadable_exit_2(pki: DevPKI, sealed_pdf: bytes, tmp_path: Path) -> None:
    root = pki.root_cert_path
    for name, data in [
        ("junk.pdf", b"this is not a document"),
        ("truncated.pdf", sealed_pdf[:400]),
        ("empty.pdf", b""),
    ]:
        code, report = _cli(write(tmp_path, name, data), root)
        assert code == 2, (name, report)
        assert report["valid"] is False and report["error"]
    code, report = _cli(tmp_path / "absent.pdf", root)
    assert code == 2 and "cannot read" in report["error"]


def test_signature_timestamp_is_reported(
    pki: DevPKI, other_pki: DevPKI, license_pdf: bytes
) -> None:
    from pyhanko.sign import fields, signers

    stamp_time = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    signer = signers.SimpleSigner.load_pkcs12(pki.seal_p12_path, passphrase=pki.passphrase.encode())
    assert signer is not None
    meta = signers.PdfSignatureMetadata(
        field_name="EhubSeal1", md_algorithm="sha256", subfilter=fields.SigSeedSubFilter.PADES
    )
    out = signers.sign_pdf(
        IncrementalPdfFileWriter(io.BytesIO(license_pdf)),
        meta,
        signer=signer,
        timestamper=dev_tsa(pki, stamp_time),
    )
    stamped = out.getvalue()

    result = verify_pdf(stamped, [pki.root_cert()])
    assert result.valid, result.reasons
    ts = result.signatures[0].timestamp
    assert ts.present and ts.valid and ts.time == stamp_time
    assert ts.tsa_subject == "CN=ehub test TSA"

    # The same timestamp under a TSA root nobody trusts is reported, and fails the seal.
    untrusted = verify_pdf(stamped, [pki.root_cert()], tsa_roots=[other_pki.root_cert()])
    ts = untrusted.signatures[0].timestamp
    assert ts.present and not ts.valid and not untrusted.valid
    assert untrusted.reasons == (
        "signature EhubSeal1: the signature timestamp is not valid or not trusted",
    )


def test_default_trust_root_and_crls_from_hub_home(
    pki: DevPKI, sealed_pdf: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    (home / "pki" / "crl").mkdir(parents=True)
    write(home / "pki", "root.pem", pki.root_cert_path.read_bytes())
    monkeypatch.setenv("EHUB_HOME", str(home))
    path = write(tmp_path, "sealed.pdf", sealed_pdf)
    code, report = _cli(path)
    assert code == 0, report

    crl = revoking_crl(pki, seal_cert(pki).serial_number).public_bytes(Encoding.DER)
    write(home / "pki" / "crl", "intermediate.crl", crl)
    code, report = _cli(path)
    assert code == 1 and report["result"]["signatures"][0]["cert_status"] == "revoked"

    monkeypatch.setenv("EHUB_HOME", str(tmp_path / "empty-home"))
    code, report = _cli(path)
    assert code == 2 and "cannot load trust root" in report["error"]
