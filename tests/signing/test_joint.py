"""Joint seals: the first seal certifies, two more departments follow (one later, at a
higher level); pyHanko, ehub's verifier and pdfsig show every seal valid, and a change
after the seals breaks the certification."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from pyhanko.keys import load_cert_from_pemder
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.fields import MDPPerm
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko_certvalidator import ValidationContext

from signing.errors import UnsealableDocument
from signing.joint import MAX_JOINT_SEALS, JointSeal, add_seal, joint_box, seal_jointly
from signing.pades import PadesSealer
from signing.pki import DevPKI, issue_seal_certificate
from signing.verify import verify_pdf
from tests.signing.conftest import SIGNING_TIME, write
from tests.signing.test_tamper import _append, _forge_content
from tests.signing.verify_support import nss_db, pdfsig


def _sealer(pki: DevPKI, department: str, uscc: str) -> PadesSealer:
    p12 = issue_seal_certificate(pki, department, uscc, f"{department}电子证照专用章")
    return PadesSealer(p12, pki.passphrase)


@pytest.fixture(scope="module")
def joint_pdf(pki: DevPKI, license_pdf: bytes) -> bytes:
    housing = _sealer(pki, "山东省住房和城乡建设厅", "11370000MB12345705")
    market = PadesSealer(pki.seal_p12_path, pki.passphrase)
    return seal_jointly(
        license_pdf,
        [JointSeal(market, "联合签章", "济南"), JointSeal(housing, "联合签章", "济南")],
        later=1,
        signing_time=SIGNING_TIME,
    )


def test_first_seal_certifies_and_every_seal_validates(pki: DevPKI, joint_pdf: bytes) -> None:
    reader = PdfFileReader(io.BytesIO(joint_pdf))
    sigs = reader.embedded_regular_signatures
    assert [s.field_name for s in sigs] == ["EhubSeal1", "EhubSeal2"]
    assert sigs[0].docmdp_level == MDPPerm.FILL_FORMS and sigs[1].docmdp_level is None
    ctx = ValidationContext(
        trust_roots=[load_cert_from_pemder(str(pki.root_cert_path))], allow_fetching=False
    )
    for sig in sigs:
        status = validate_pdf_signature(sig, ctx)
        assert status.intact and status.valid and status.trusted, status.pretty_print_details()

    result = verify_pdf(joint_pdf, [pki.root_cert_path])
    assert result.valid, result.reasons
    assert result.signature_count == 2 and all(s.valid for s in result.signatures)
    subjects = {s.signer_subject for s in result.signatures}
    assert len(subjects) == 2 and any("住房和城乡建设厅" in s for s in subjects)


def test_a_higher_level_department_adds_its_seal_later(pki: DevPKI, joint_pdf: bytes) -> None:
    province = _sealer(pki, "山东省人民政府办公厅", "11370000MB1234562A")
    triple = add_seal(joint_pdf, JointSeal(province, "跨层级签章", "济南"), index=2)
    result = verify_pdf(triple, [pki.root_cert_path])
    assert result.valid, result.reasons
    assert result.signature_count == 3
    with pytest.raises(UnsealableDocument, match="at most"):
        joint_box(MAX_JOINT_SEALS)
    with pytest.raises(UnsealableDocument, match="no empty signature field EhubSeal3"):
        add_seal(triple, JointSeal(province, "again", "济南"), index=2)  # already signed


def test_pdfsig_shows_every_joint_seal_valid_and_trusted(
    pki: DevPKI, joint_pdf: bytes, tmp_path: Path
) -> None:
    report = pdfsig(
        write(tmp_path, "joint.pdf", joint_pdf), nss_db(tmp_path / "nss", pki.root_cert_path)
    )
    assert report.count("Signature is Valid") == 2, report
    assert report.count("Certificate is Trusted") == 2, report


def test_content_changed_after_the_joint_seals_is_reported(
    pki: DevPKI, joint_pdf: bytes, tmp_path: Path
) -> None:
    forged = _append(joint_pdf, _forge_content)
    result = verify_pdf(forged, [pki.root_cert_path])
    assert not result.valid
    assert all(not s.valid for s in result.signatures), result.reasons
    report = pdfsig(
        write(tmp_path, "forged.pdf", forged), nss_db(tmp_path / "nss", pki.root_cert_path)
    )
    assert report.count("Total document signed") == 0, report


def test_a_seal_without_a_reserved_field_is_refused(pki: DevPKI, license_pdf: bytes) -> None:
    market = PadesSealer(pki.seal_p12_path, pki.passphrase)
    alone = seal_jointly(license_pdf, [JointSeal(market, "签章", "济南")])
    with pytest.raises(UnsealableDocument, match="reserve"):
        add_seal(alone, JointSeal(market, "签章", "济南"), index=1)
