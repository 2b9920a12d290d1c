"""Independent check: poppler's pdfsig (NSS) accepts our seals and spots tampering."""

from __future__ import annotations

from pathlib import Path

import pytest

from signing.pki import DevPKI
from tests.conftest import need_binary
from tests.signing.conftest import write
from tests.signing.verify_support import nss_db, pdfsig


@pytest.fixture(autouse=True)
def _tools() -> None:
    need_binary("pdfsig", "poppler-utils")
    need_binary("certutil", "libnss3-tools")


def test_pdfsig_reports_valid_signature(sealed_pdf: bytes, tmp_path: Path) -> None:
    report = pdfsig(write(tmp_path, "sealed.pdf", sealed_pdf), nss_db(tmp_path / "nss", None))
    assert "Signature is Valid" in report
    assert "ETSI.CAdES.detached" in report
    assert "Total document signed" in report
    assert "Certificate is Trusted" not in report  # empty trust store


def test_pdfsig_trusts_dev_root_via_nss(pki: DevPKI, sealed_pdf: bytes, tmp_path: Path) -> None:
    db = nss_db(tmp_path / "nss", pki.root_cert_path)
    report = pdfsig(write(tmp_path, "sealed.pdf", sealed_pdf), db)
    assert "Signature is Valid" in report
    assert "Certificate is Trusted" in report


def test_pdfsig_rejects_tampered(pki: DevPKI, tampered_pdf: bytes, tmp_path: Path) -> None:
    db = nss_db(tmp_path / "nss", pki.root_cert_path)
    report = pdfsig(write(tmp_path, "tampered.pdf", tampered_pdf), db)
    assert "Signature Validation" in report  # the signature was found and checked
    assert "Signature is Valid" not in report
