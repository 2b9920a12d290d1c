"""The bulk-sealing fast path validates exactly as pyHanko's own output does.

Every check runs on both documents of the same license, sealed with the same
key, seal picture and signing time: one by :class:`signing.pades.PadesSealer`
(pyHanko) on :func:`signing.render.render_license_pdf`'s page, one by
:class:`signing.fastpades.FastSealer`. pyHanko's validator, poppler's pdfsig
(NSS) and ``ehub verify`` must say the same about both, and a changed byte
must break both.
"""

from __future__ import annotations

import io
import json
import subprocess
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import cms
from click.testing import CliRunner
from pyhanko.keys import load_cert_from_pemder
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko.sign.validation.status import SignatureCoverageLevel
from pyhanko_certvalidator import ValidationContext

from ehub.cli_verify import verify
from ehub.seal_image import render_seal_png
from signing.fastpades import FastSealer
from signing.pades import PadesSealer
from signing.pki import DevPKI
from signing.render import LicenseView, render_license_pdf
from signing.verify import verify_pdf
from tests.conftest import need_binary
from tests.signing.conftest import SIGNING_TIME, sample_view, write
from tests.signing.verify_support import nss_db, pdfsig

REASON, LOCATION = "电子证照签章 / e-license seal", "山东"
VIEW = sample_view(
    verify_url="http://127.0.0.1:8765/verify/1.2.156.3005.2.11100000000013338W.113700000000000000.0001.001"
)
#: A view whose values wrap (CJK and an ASCII run), with a long issuer name that shrinks.
LONG_VIEW = replace(
    VIEW,
    issuer_name="山东省济南市历下区市场监督管理局行政审批服务局（山东省济南市历下区自贸区分局）",
    surface=(
        ("经营范围", "技术服务、技术开发、技术咨询、技术交流、技术转让、技术推广；软件开发；"
                     "数据处理服务；信息系统集成服务；（依法须经批准的项目，经相关部门批准后方可开展经营活动）"),
        ("住所", "Room 1201, Block A, Quancheng Road No.188, Lixia District, Jinan, Shandong 250000"),
        ("网址", "https://www.example.gov.cn/licenses/verify?id=91370102MA3C5ABC1X&version=001"),
    ),
)  # fmt: skip


@pytest.fixture(scope="module")
def seal_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("seal") / "seal.png"
    path.write_bytes(render_seal_png("济南市历下区市场监督管理局", "电子证照专用章"))
    return path


@pytest.fixture(scope="module")
def fast(pki: DevPKI, seal_png: Path) -> FastSealer:
    return FastSealer(pki.seal_p12_path, pki.passphrase, stamp_image=seal_png)


@pytest.fixture(scope="module")
def slow(pki: DevPKI, seal_png: Path) -> PadesSealer:
    return PadesSealer(pki.seal_p12_path, pki.passphrase, stamp_image=seal_png)


def _fast(sealer: FastSealer, view: LicenseView = VIEW, **changes: Any) -> bytes:
    options: dict[str, Any] = {
        "signing_time": SIGNING_TIME,
        "reason": REASON,
        "location": LOCATION,
    } | changes
    return sealer.seal_view(view, **options)


def _slow(sealer: PadesSealer, view: LicenseView = VIEW) -> bytes:
    return sealer.seal(
        render_license_pdf(view), reason=REASON, location=LOCATION, signing_time=SIGNING_TIME
    )


@pytest.fixture(scope="module")
def pair(fast: FastSealer, slow: PadesSealer) -> tuple[bytes, bytes]:
    return _fast(fast), _slow(slow)


def _flip(pdf: bytes, at: int) -> bytes:
    changed = bytearray(pdf)
    changed[at] ^= 0x01
    return bytes(changed)


def _inside_first_range(pdf: bytes) -> int:
    """An offset inside the page's content stream (first signed range)."""
    return pdf.index(b"stream\n", pdf.index(b"4 0 obj")) + 20


# --- the signature container mirrors pyHanko's -------------------------------


def _signer_info(pdf: bytes) -> tuple[cms.SignedData, cms.SignerInfo]:
    reader = PdfFileReader(io.BytesIO(pdf))
    embedded = reader.embedded_signatures[-1]
    sd = embedded.signed_data
    return sd, sd["signer_infos"][0]


def test_cms_has_pyhanko_structure(pair: tuple[bytes, bytes]) -> None:
    (fast_sd, fast_si), (slow_sd, slow_si) = (_signer_info(p) for p in pair)
    assert [a["type"].native for a in fast_si["signed_attrs"]] == [
        a["type"].native for a in slow_si["signed_attrs"]
    ]
    assert "signing_time" not in [a["type"].native for a in fast_si["signed_attrs"]]
    for key in ("version", "sid", "digest_algorithm", "signature_algorithm"):
        assert fast_si[key].dump() == slow_si[key].dump(), key
    for key in ("version", "digest_algorithms", "encap_content_info"):
        assert fast_sd[key].dump() == slow_sd[key].dump(), key
    assert sorted(c.dump() for c in fast_sd["certificates"]) == sorted(
        c.dump() for c in slow_sd["certificates"]
    )
    signing_cert = [a for a in fast_si["signed_attrs"] if a["type"].native != "message_digest"]
    expected = [a for a in slow_si["signed_attrs"] if a["type"].native != "message_digest"]
    assert [a.dump() for a in signing_cert] == [a.dump() for a in expected]


# --- pyHanko's validator -------------------------------------------------------


def _pyhanko_status(pdf: bytes, root: Path) -> dict[str, Any]:
    reader = PdfFileReader(io.BytesIO(pdf))
    (embedded,) = reader.embedded_signatures
    context = ValidationContext(trust_roots=[load_cert_from_pemder(str(root))])
    status = validate_pdf_signature(embedded, context)
    return {
        "intact": status.intact,
        "valid": status.valid,
        "trusted": status.trusted,
        "md_algorithm": status.md_algorithm,
        "coverage": status.coverage,
        "docmdp_ok": status.docmdp_ok,
        "signer": status.signing_cert.subject.human_friendly,
        "signer_reported_dt": status.signer_reported_dt,
        "bottom_line": status.bottom_line,
    }


def test_pyhanko_validates_both_alike(pki: DevPKI, pair: tuple[bytes, bytes]) -> None:
    fast_status, slow_status = (_pyhanko_status(p, pki.root_cert_path) for p in pair)
    assert fast_status == slow_status
    assert fast_status["bottom_line"] and fast_status["trusted"]
    assert fast_status["coverage"] == SignatureCoverageLevel.ENTIRE_FILE
    assert fast_status["md_algorithm"] == "sha256"


def test_pyhanko_rejects_a_changed_byte(pki: DevPKI, pair: tuple[bytes, bytes]) -> None:
    fast_pdf, _ = pair
    status = _pyhanko_status(_flip(fast_pdf, _inside_first_range(fast_pdf)), pki.root_cert_path)
    assert not status["intact"] and not status["bottom_line"]


# --- pdfsig (poppler + NSS) ----------------------------------------------------


@pytest.fixture(scope="module")
def nss(pki: DevPKI, tmp_path_factory: pytest.TempPathFactory) -> str:
    need_binary("pdfsig", "poppler-utils")
    need_binary("certutil", "libnss3-tools")
    return nss_db(tmp_path_factory.mktemp("nss") / "db", pki.root_cert_path)


def _pdfsig_lines(report: str) -> list[str]:
    # The byte offsets of the ranges differ by construction; everything else must not.
    return [ln.strip() for ln in report.splitlines()[1:] if "Signed Ranges" not in ln]


def test_pdfsig_reports_both_alike(pair: tuple[bytes, bytes], nss: str, tmp_path: Path) -> None:
    fast_pdf, slow_pdf = pair
    fast_report = pdfsig(write(tmp_path, "fast.pdf", fast_pdf), nss)
    slow_report = pdfsig(write(tmp_path, "slow.pdf", slow_pdf), nss)
    assert _pdfsig_lines(fast_report) == _pdfsig_lines(slow_report)
    for expected in ("Signature is Valid", "Certificate is Trusted", "Total document signed",
                     "Signing Hash Algorithm: SHA-256", "Common Name: 电子证照测试专用章"):  # fmt: skip
        assert expected in fast_report, fast_report


def test_pdfsig_rejects_a_changed_byte(pair: tuple[bytes, bytes], nss: str, tmp_path: Path) -> None:
    fast_pdf, _ = pair
    path = write(tmp_path, "changed.pdf", _flip(fast_pdf, _inside_first_range(fast_pdf)))
    report = pdfsig(path, nss)
    assert "Signature Validation" in report and "Signature is Valid" not in report


# --- ehub verify ---------------------------------------------------------------


def _ehub_verify(path: Path, root: Path) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(
        verify, [str(path), "--json", "--trust", str(root), "--no-register"]
    )
    return result.exit_code, json.loads(result.output)


def test_ehub_verify_reports_both_alike(
    pki: DevPKI, pair: tuple[bytes, bytes], tmp_path: Path
) -> None:
    fast_pdf, slow_pdf = pair
    code_fast, fast_report = _ehub_verify(write(tmp_path, "fast.pdf", fast_pdf), pki.root_cert_path)
    code_slow, slow_report = _ehub_verify(write(tmp_path, "slow.pdf", slow_pdf), pki.root_cert_path)
    assert code_fast == code_slow == 0
    for report in (fast_report, slow_report):
        report.pop("file", None)
    assert fast_report == slow_report
    fast_v, slow_v = (verify_pdf(p, [pki.root_cert_path]) for p in pair)
    assert fast_v.valid and fast_v.covers_whole_document and fast_v.intact and fast_v.trusted
    assert (fast_v.signer_subject, fast_v.digest_algorithm, fast_v.signing_time,
            fast_v.license_identifier) == (slow_v.signer_subject, slow_v.digest_algorithm,
                                           slow_v.signing_time, slow_v.license_identifier)  # fmt: skip
    assert fast_v.license_identifier == VIEW.identifier


def test_ehub_verify_rejects_a_changed_byte(
    pki: DevPKI, pair: tuple[bytes, bytes], tmp_path: Path
) -> None:
    fast_pdf, _ = pair
    path = write(tmp_path, "changed.pdf", _flip(fast_pdf, _inside_first_range(fast_pdf)))
    code, report = _ehub_verify(path, pki.root_cert_path)
    assert code == 1 and report["valid"] is False


# --- the document itself ---------------------------------------------------------


def test_deterministic_for_same_input_and_time(fast: FastSealer, pair: tuple[bytes, bytes]) -> None:
    assert _fast(fast) == pair[0]
    later = _fast(fast, signing_time=SIGNING_TIME + timedelta(seconds=1))
    assert later != pair[0]


def _pdftotext(pdf: bytes, tmp_path: Path, name: str) -> str:
    path = write(tmp_path, name, pdf)
    return subprocess.run(
        ["pdftotext", str(path), "-"], capture_output=True, text=True, check=True
    ).stdout


@pytest.mark.parametrize("view", [VIEW, LONG_VIEW], ids=["sample", "wrapping"])
def test_text_equals_the_normal_renderers(
    fast: FastSealer, slow: PadesSealer, view: LicenseView, tmp_path: Path
) -> None:
    need_binary("pdftotext", "poppler-utils")
    fast_text = _pdftotext(_fast(fast, view), tmp_path, "fast.pdf")
    slow_text = _pdftotext(_slow(slow, view), tmp_path, "slow.pdf")
    assert fast_text == slow_text
    assert view.holder_name in fast_text


def test_qr_code_reads_back(fast: FastSealer, pair: tuple[bytes, bytes], tmp_path: Path) -> None:
    need_binary("pdftoppm", "poppler-utils")
    need_binary("zbarimg", "zbar-tools")
    pdf = write(tmp_path, "fast.pdf", pair[0])
    subprocess.run(["pdftoppm", "-r", "150", "-png", str(pdf), str(tmp_path / "page")], check=True)
    (png,) = tmp_path.glob("page*.png")
    out = subprocess.run(
        ["zbarimg", "--raw", "-q", str(png)], capture_output=True, text=True, check=False
    ).stdout
    assert out.strip() == VIEW.verify_url


def test_seal_many_across_processes_equals_one_by_one(fast: FastSealer) -> None:
    views = [replace(VIEW, number=f"9137010200000{k:05d}") for k in range(70)]
    options: dict[str, Any] = {"signing_time": SIGNING_TIME, "reason": REASON, "location": LOCATION}
    pooled = fast.seal_many(views, workers=2, chunk=8, **options)
    assert pooled == [fast.seal_view(v, **options) for v in views]


def test_fields_that_do_not_fit_are_refused_like_the_normal_renderer(fast: FastSealer) -> None:
    from signing.errors import UnsealableDocument

    crowded = replace(VIEW, surface=tuple((f"字段{k}", "值" * 80) for k in range(12)))
    with pytest.raises(UnsealableDocument) as normal:
        render_license_pdf(crowded)
    with pytest.raises(UnsealableDocument) as quick:
        _fast(fast, crowded)
    assert str(quick.value) == str(normal.value)


@pytest.mark.parametrize("mask", range(8))
def test_qr_modules_equal_reportlabs_for_each_mask(mask: int) -> None:
    from reportlab.graphics.barcode import qrencoder

    from signing.fastqr import qr_matrix

    for text in (VIEW.verify_url, "a", "电子证照" * 40):
        code = qrencoder.QRCode(None, qrencoder.QRErrorCorrectLevel.M)
        code.addData(text)
        code.make()
        code.makeImpl(False, mask)
        n = code.getModuleCount()
        expected = [[bool(code.isDark(r, c)) for c in range(n)] for r in range(n)]
        assert qr_matrix(text, mask).tolist() == expected


def test_text_stamp_without_picture_validates(pki: DevPKI) -> None:
    plain = FastSealer(pki.seal_p12_path, pki.passphrase)
    status = _pyhanko_status(_fast(plain), pki.root_cert_path)
    assert status["bottom_line"] and status["coverage"] == SignatureCoverageLevel.ENTIRE_FILE


def test_stage_switch_takes_the_fast_path_for_b_b_only(
    pki: DevPKI, seal_png: Path, pair: tuple[bytes, bytes]
) -> None:
    from signing.fastpades import FastSealers, render_and_seal

    sealers = FastSealers(pki.passphrase)
    key = str(pki.seal_p12_path)
    assert sealers.for_seal(key, "B-T", seal_png) is None
    assert sealers.for_seal("pkcs11:token=x;object=y", "B-B", None) is None
    fast = sealers.for_seal(key, "B-B", seal_png)
    assert fast is not None and sealers.for_seal(key, "B-B", seal_png) is fast
    rendered: list[bytes] = []

    def slow(pdf: bytes) -> bytes:
        rendered.append(pdf)
        return b"slow"

    options: dict[str, Any] = {"signing_time": SIGNING_TIME, "reason": REASON,
                               "location": LOCATION}  # fmt: skip
    assert render_and_seal(VIEW, fast=fast, seal_slow=slow, **options) == pair[0]
    assert render_and_seal(VIEW, fast=None, seal_slow=slow, **options) == b"slow"
    assert rendered == [render_license_pdf(VIEW)]


def _template_views() -> list[LicenseView]:
    from ehub.bench_seal_memory import _documents
    from ehub.templates import license_view

    return [
        license_view(
            doc, seal_label="山东省市场监督管理局电子证照专用章", verify_url="http://h/verify"
        )
        for doc in _documents()
    ]


@pytest.mark.parametrize("index", range(4), ids=["W001", "W004", "W005", "W006"])
def test_text_equals_the_normal_renderers_for_every_template(
    fast: FastSealer, slow: PadesSealer, index: int, tmp_path: Path
) -> None:
    need_binary("pdftotext", "poppler-utils")
    view = _template_views()[index]
    fast_text = _pdftotext(_fast(fast, view), tmp_path, "fast.pdf")
    assert fast_text == _pdftotext(_slow(slow, view), tmp_path, "slow.pdf")
    assert view.title[0] in fast_text


def test_rsa_seal_key_validates(pki: DevPKI, tmp_path: Path) -> None:
    """An imported RSA seal key: the template's PKCS#1 v1.5 algorithm is kept."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.hazmat.primitives.serialization import pkcs12
    from cryptography.x509.oid import NameOID

    from signing import pki_build

    issuer_key = serialization.load_pem_private_key(
        pki.intermediate_key_path.read_bytes(), pki.passphrase.encode()
    )
    assert isinstance(issuer_key, ec.EllipticCurvePrivateKey)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = pki_build.end_entity_cert(
        pki_build.name((NameOID.COMMON_NAME, "RSA测试专用章")),
        key.public_key(),
        issuer_cert=pki.intermediate_cert(),
        issuer_key=issuer_key,
        days=30,
        crl_url=None,
    )
    bundle = pkcs12.serialize_key_and_certificates(
        b"rsa", key, cert, [pki.intermediate_cert(), pki.root_cert()],
        serialization.BestAvailableEncryption(b"rsa-pass"),
    )  # fmt: skip
    path = write(tmp_path, "rsa.p12", bundle)
    sealed = _fast(FastSealer(path, "rsa-pass"))
    _, si = _signer_info(sealed)
    assert si["signature_algorithm"]["algorithm"].native == "sha256_rsa"
    status = _pyhanko_status(sealed, pki.root_cert_path)
    assert status["bottom_line"] and status["signer"].endswith("RSA测试专用章")
