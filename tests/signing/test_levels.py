"""PAdES B-T and B-LT against the dev PKI's real TSA and CRL server on loopback."""

from __future__ import annotations

import io
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from asn1crypto import cms
from asn1crypto import crl as asn1_crl
from cryptography.hazmat.primitives.serialization import Encoding
from pyhanko.keys import load_cert_from_pemder
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko.sign.validation.dss import DocumentSecurityStore
from pyhanko.sign.validation.status import PdfSignatureStatus
from pyhanko_certvalidator import ValidationContext

from ehub.errors import Terminal, Transient
from signing.errors import KeyAccessError, SealUnavailable, SigningError
from signing.pades import PadesLevel, PadesSealer
from signing.pki import DevPKI, ensure_dev_pki, issue_seal_certificate
from signing.pki_revocation import list_seal_certificates, revoke_seal_certificate
from signing.pki_services import Fault, PkiServer, serve_pki
from tests.signing.conftest import write
from tests.signing.verify_support import nss_db, pdfsig

REASON, LOCATION = "电子证照签章", "济南"


@pytest.fixture(scope="module")
def lpki(tmp_path_factory: pytest.TempPathFactory) -> DevPKI:
    return ensure_dev_pki(tmp_path_factory.mktemp("levels-pki"), passphrase="levels-passphrase")


@pytest.fixture(scope="module")
def server(lpki: DevPKI) -> Iterator[PkiServer]:
    with serve_pki(lpki) as running:
        yield running


@pytest.fixture(autouse=True)
def _no_faults(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "server" in request.fixturenames:
        running: PkiServer = request.getfixturevalue("server")
        running.faults.tsa = running.faults.crl = None


def _sealer(pki: DevPKI, level: PadesLevel, p12: Path | None = None) -> PadesSealer:
    return PadesSealer(
        p12 or pki.seal_p12_path,
        pki.passphrase,
        level=level,
        tsa_url=pki.tsa_url,
        trust_roots=[pki.root_cert_path],
        timeout=5,
    )


def _online(pki: DevPKI) -> ValidationContext:
    root = load_cert_from_pemder(str(pki.root_cert_path))
    return ValidationContext(trust_roots=[root], allow_fetching=True, revocation_mode="hard-fail")


def _validate(pdf: bytes, context: ValidationContext) -> PdfSignatureStatus:
    reader = PdfFileReader(io.BytesIO(pdf))
    (signature,) = reader.embedded_regular_signatures
    return validate_pdf_signature(signature, context)


def test_b_b_stays_offline(lpki: DevPKI, server: PkiServer, license_pdf: bytes) -> None:
    before = server.tsa_requests
    sealed = PadesSealer(lpki.seal_p12_path, lpki.passphrase).seal(
        license_pdf, reason=REASON, location=LOCATION
    )
    status = _validate(sealed, _online(lpki))
    assert status.bottom_line
    assert status.timestamp_validity is None
    assert server.tsa_requests == before


def test_b_t_carries_a_valid_timestamp_from_our_tsa(
    lpki: DevPKI, server: PkiServer, license_pdf: bytes
) -> None:
    before = server.tsa_requests
    sealed = _sealer(lpki, PadesLevel.B_T).seal(license_pdf, reason=REASON, location=LOCATION)
    assert server.tsa_requests == before + 1

    status = _validate(sealed, _online(lpki))
    assert status.bottom_line, status.summary()
    assert status.intact and status.valid and status.trusted and not status.revoked
    ts = status.timestamp_validity
    assert ts is not None
    assert ts.intact and ts.valid and ts.trusted
    assert ts.signing_cert.dump() == lpki.tsa_cert().public_bytes(Encoding.DER)
    assert abs(ts.timestamp - datetime.now(UTC)) < timedelta(minutes=2)
    assert "/DSS" not in PdfFileReader(io.BytesIO(sealed)).root  # B-T only


def test_b_t_timestamp_is_untrusted_under_another_root(
    lpki: DevPKI, other_pki: DevPKI, server: PkiServer, license_pdf: bytes
) -> None:
    sealed = _sealer(lpki, PadesLevel.B_T).seal(license_pdf, reason=REASON, location=LOCATION)
    status = _validate(sealed, _online(other_pki))
    assert not status.trusted
    assert status.timestamp_validity is not None
    assert not status.timestamp_validity.trusted


def test_b_lt_embeds_crls_and_validates_offline(
    lpki: DevPKI, server: PkiServer, license_pdf: bytes, tmp_path: Path
) -> None:
    sealed = _sealer(lpki, PadesLevel.B_LT).seal(license_pdf, reason=REASON, location=LOCATION)
    reader = PdfFileReader(io.BytesIO(sealed))
    dss = DocumentSecurityStore.read_dss(reader)
    crls = [
        asn1_crl.CertificateList.load(ref.get_object().data)
        for ref in dss.crls  # the DSS holds both CAs' CRLs, fetched from our server
    ]
    issuers = {c.issuer.native["common_name"] for c in crls}
    assert issuers == {"ehub Dev Root CA", "ehub Dev Seal Issuing CA"}
    cert_subjects = {c.subject.native["common_name"] for c in dss.load_certs()}
    assert {"ehub Dev Timestamp Authority", "ehub Dev Seal Issuing CA"} <= cert_subjects

    # Offline, revocation required: only the embedded data can satisfy it.
    root = load_cert_from_pemder(str(lpki.root_cert_path))
    offline = {"trust_roots": [root], "allow_fetching": False, "revocation_mode": "require"}
    status = _validate(sealed, dss.as_validation_context(offline))
    assert status.bottom_line, status.summary()
    assert status.timestamp_validity is not None and status.timestamp_validity.trusted

    # The same check on a B-T document fails: it has no revocation data.
    b_t = _sealer(lpki, PadesLevel.B_T).seal(license_pdf, reason=REASON, location=LOCATION)
    bare = _validate(b_t, ValidationContext(crls=[], ocsps=[], **offline))  # type: ignore[arg-type]
    assert not bare.trusted


def test_revoked_seal_is_reported_revoked(
    lpki: DevPKI, server: PkiServer, license_pdf: bytes
) -> None:
    p12 = issue_seal_certificate(lpki, "撤销测试局", "11370100MB1234562A", "撤销测试专用章")
    (info,) = [c for c in list_seal_certificates(lpki) if c.path == p12]
    assert info.crl_urls == (f"{server.url}/crl/intermediate.crl",)
    sealed = _sealer(lpki, PadesLevel.B_T, p12).seal(license_pdf, reason=REASON, location=LOCATION)
    before = _validate(sealed, _online(lpki))
    assert before.bottom_line and not before.revoked

    revocation = revoke_seal_certificate(lpki, info.serial)
    assert revocation.serial == info.serial
    after = _validate(sealed, _online(lpki))
    assert after.revoked
    assert not after.bottom_line
    assert "REVOKED" in str(after.trust_problem_indic)

    with pytest.raises(KeyAccessError, match="revoked") as raised:
        _sealer(lpki, PadesLevel.B_LT, p12).seal(license_pdf, reason=REASON, location=LOCATION)
    assert isinstance(raised.value, Terminal)
    # The PKI's other seal is untouched by that revocation.
    assert _validate(
        _sealer(lpki, PadesLevel.B_T).seal(license_pdf, reason=REASON, location=LOCATION),
        _online(lpki),
    ).bottom_line


@pytest.mark.parametrize("fault", [Fault.DROP, Fault.ERROR, Fault.MALFORMED])
def test_tsa_fault_raises_seal_unavailable(
    lpki: DevPKI, server: PkiServer, license_pdf: bytes, fault: Fault
) -> None:
    server.faults.tsa = fault
    for level in (PadesLevel.B_T, PadesLevel.B_LT):
        with pytest.raises(SealUnavailable, match="timestamp authority") as raised:
            _sealer(lpki, level).seal(license_pdf, reason=REASON, location=LOCATION)
        assert lpki.tsa_url in str(raised.value)
        assert isinstance(raised.value, Transient)


def test_tsa_not_listening_raises_seal_unavailable(lpki: DevPKI, license_pdf: bytes) -> None:
    with serve_pki(lpki, port=0) as elsewhere:
        url = elsewhere.tsa_url
    sealer = PadesSealer(lpki.seal_p12_path, lpki.passphrase, level="B-T", tsa_url=url, timeout=3)
    with pytest.raises(SealUnavailable, match=url):
        sealer.seal(license_pdf, reason=REASON, location=LOCATION)


@pytest.mark.parametrize("fault", [Fault.DROP, Fault.ERROR])
def test_crl_fault_fails_b_lt_naming_the_url(
    lpki: DevPKI, server: PkiServer, license_pdf: bytes, fault: Fault
) -> None:
    server.faults.crl = fault
    with pytest.raises(SealUnavailable, match="revocation data unavailable") as raised:
        _sealer(lpki, PadesLevel.B_LT).seal(license_pdf, reason=REASON, location=LOCATION)
    assert f"{server.url}/crl/intermediate.crl" in str(raised.value)
    # B-T needs no CRL: it still works while the CRL endpoint is down.
    sealed = _sealer(lpki, PadesLevel.B_T).seal(license_pdf, reason=REASON, location=LOCATION)
    assert sealed.startswith(b"%PDF")


def test_levels_need_their_configuration(lpki: DevPKI) -> None:
    with pytest.raises(SigningError, match="tsa_url"):
        PadesSealer(lpki.seal_p12_path, lpki.passphrase, level="B-T")
    with pytest.raises(SigningError, match="trust roots"):
        PadesSealer(lpki.seal_p12_path, lpki.passphrase, level="B-LT", tsa_url=lpki.tsa_url)
    with pytest.raises(ValueError):
        PadesSealer(lpki.seal_p12_path, lpki.passphrase, level="B-LTA")


def test_pdfsig_validates_b_t(
    lpki: DevPKI, server: PkiServer, license_pdf: bytes, tmp_path: Path
) -> None:
    sealed = _sealer(lpki, PadesLevel.B_T).seal(license_pdf, reason=REASON, location=LOCATION)
    pdf = write(tmp_path, "b-t.pdf", sealed)
    report = pdfsig(pdf, nss_db(tmp_path / "nss", lpki.root_cert_path))
    assert "Signature is Valid" in report
    assert "Certificate is Trusted" in report
    assert "ETSI.CAdES.detached" in report
    assert "Total document signed" in report

    # The CMS pdfsig validated carries the RFC 3161 token as an unsigned attribute.
    dump_dir = tmp_path / "dump"
    dump_dir.mkdir()
    subprocess.run(["pdfsig", "-nocert", "-dump", str(pdf)], cwd=dump_dir, check=True)
    (dumped,) = list(dump_dir.iterdir())
    signed_data = cms.ContentInfo.load(dumped.read_bytes())["content"]
    attrs = signed_data["signer_infos"][0]["unsigned_attrs"]
    kinds = [a["type"].native for a in attrs]
    assert "signature_time_stamp_token" in kinds


def test_b_lt_refuses_a_seal_without_crl_distribution_point(lpki: DevPKI) -> None:
    # As issued by a PKI created before it published CRLs.
    legacy = issue_seal_certificate(
        replace(lpki, services=None), "旧证书单位", "11370100MB1234562A", "旧章"
    )
    (info,) = [c for c in list_seal_certificates(lpki) if c.path == legacy]
    assert info.crl_urls == ()
    with pytest.raises(KeyAccessError, match="no CRL distribution point"):
        _sealer(lpki, PadesLevel.B_LT, legacy)
    _sealer(lpki, PadesLevel.B_T, legacy)  # B-T needs no revocation data
