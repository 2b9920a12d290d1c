"""Shared fixtures for the signing tests: a throw-away PKI and a sealed license.

The PKI is generated at run time into a temporary directory; no key or
passphrase is ever committed.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from signing.pades import PadesSealer
from signing.pki import DevPKI, ensure_dev_pki
from signing.render import LicenseView, render_license_pdf

SIGNING_TIME = datetime(2024, 5, 20, 9, 30, tzinfo=timezone(timedelta(hours=8)))


SAMPLE_VIEW = LicenseView(
    title="营业执照",
    identifier="1.2.156.3005.2.11100000000013338W.113700000000000000.0001.001",
    number="91370102MA3C5ABC1X",
    holder_name="济南市历下区泉城路示例科技有限公司",
    holder_code="91370102MA3C5ABC1X",
    issuer_name="济南市历下区市场监督管理局",
    issue_date="2024年05月20日",
    validity="2024年05月20日至长期",
    surface=(
        ("类型", "有限责任公司（自然人投资或控股）"),
        ("法定代表人", "张三"),
        ("注册资本", "壹佰万元整"),
        ("住所", "山东省济南市历下区泉城路188号示例大厦12层1201室"),
        ("经营范围", "技术服务、技术开发、技术咨询；软件开发；数据处理服务。"),
    ),
    seal_label="济南市历下区市场监督管理局电子证照专用章",
)


def sample_view(**changes: Any) -> LicenseView:
    return replace(SAMPLE_VIEW, **changes)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> DevPKI:
    return ensure_dev_pki(tmp_path_factory.mktemp("pki"), passphrase="session-test-passphrase")


@pytest.fixture(scope="session")
def other_pki(tmp_path_factory: pytest.TempPathFactory) -> DevPKI:
    """An unrelated PKI whose root must not validate seals of ``pki``."""
    return ensure_dev_pki(tmp_path_factory.mktemp("other-pki"), passphrase="other-passphrase")


@pytest.fixture(scope="session")
def license_pdf() -> bytes:
    return render_license_pdf(sample_view())


@pytest.fixture(scope="session")
def sealer(pki: DevPKI) -> PadesSealer:
    return PadesSealer(pki.seal_p12_path, pki.passphrase)


@pytest.fixture(scope="session")
def sealed_pdf(sealer: PadesSealer, license_pdf: bytes) -> bytes:
    return sealer.seal(
        license_pdf, reason="电子证照签章", location="济南", signing_time=SIGNING_TIME
    )


def tamper(pdf: bytes) -> bytes:
    """Flip one bit inside the first signed byte range (the Producer string)."""
    at = pdf.index(b"ReportLab PDF Library") + 3
    changed = bytearray(pdf)
    changed[at] ^= 0x01
    return bytes(changed)


@pytest.fixture(scope="session")
def tampered_pdf(sealed_pdf: bytes) -> bytes:
    return tamper(sealed_pdf)


def write(directory: Path, name: str, data: bytes) -> Path:
    path = directory / name
    path.write_bytes(data)
    return path
