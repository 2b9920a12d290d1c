"""Independent check: poppler's pdfsig (NSS) accepts our seals and spots tampering."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from signing.pki import DevPKI
from tests.conftest import need_binary
from tests.signing.conftest import write


@pytest.fixture(autouse=True)
def _tools() -> None:
    need_binary("pdfsig", "poppler-utils")
    need_binary("certutil", "libnss3-tools")


def _nss_db(directory: Path, root: Path | None) -> str:
    """An NSS database trusting ``root`` (or nothing), so results never depend on ~/.pki."""
    directory.mkdir()
    db = f"sql:{directory}"
    subprocess.run(
        ["certutil", "-N", "--empty-password", "-d", db], check=True, capture_output=True
    )
    if root is not None:
        # pdfsig checks the signer for the S/MIME (email signing) usage, so the
        # root must be a trusted CA in the second trust slot; "C,," (SSL only)
        # leaves it untrusted.
        subprocess.run(
            ["certutil", "-A", "-n", "ehub-root", "-t", ",C,", "-i", str(root), "-d", db],
            check=True,
            capture_output=True,
        )
    return db


def _pdfsig(pdf: Path, nssdir: str) -> str:
    # pdfsig exits non-zero for some invalid signatures; the report is what matters.
    run = subprocess.run(
        ["pdfsig", "-nssdir", nssdir, str(pdf)], capture_output=True, text=True, check=False
    )
    return run.stdout + run.stderr


def test_pdfsig_reports_valid_signature(sealed_pdf: bytes, tmp_path: Path) -> None:
    report = _pdfsig(write(tmp_path, "sealed.pdf", sealed_pdf), _nss_db(tmp_path / "nss", None))
    assert "Signature is Valid" in report
    assert "ETSI.CAdES.detached" in report
    assert "Total document signed" in report
    assert "Certificate is Trusted" not in report  # empty trust store


def test_pdfsig_trusts_dev_root_via_nss(pki: DevPKI, sealed_pdf: bytes, tmp_path: Path) -> None:
    db = _nss_db(tmp_path / "nss", pki.root_cert_path)
    report = _pdfsig(write(tmp_path, "sealed.pdf", sealed_pdf), db)
    assert "Signature is Valid" in report
    assert "Certificate is Trusted" in report


def test_pdfsig_rejects_tampered(pki: DevPKI, tampered_pdf: bytes, tmp_path: Path) -> None:
    db = _nss_db(tmp_path / "nss", pki.root_cert_path)
    report = _pdfsig(write(tmp_path, "tampered.pdf", tampered_pdf), db)
    assert "Signature Validation" in report  # the signature was found and checked
    assert "Signature is Valid" not in report
