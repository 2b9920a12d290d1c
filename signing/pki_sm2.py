"""Development SM2 seal maker, signer and GB/T 38540 seal, kept in the dev PKI folder.

:func:`ensure_dev_sm2_seal_maker` creates once, in ``<pki_dir>/sm2/``, a
self-signed SM2 seal maker (制章人), a signer certificate it issues, and a dev
``SESeal`` listing that signer, and loads them on later calls (idempotent;
files are written atomically under an exclusive lock; private keys are PEM
PKCS#8 with mode 0600). ``ehub verify`` trusts :data:`MAKER_CERT` for OFD
seals when no ``--ofd-trust`` is given.

Development and tests only, never under the repository: production seal maker
and signer keys live in an HSM, and seals come from the registered seal maker.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from signing import ses
from signing.sm2 import SM2PrivateKey
from signing.sm2_cert import make_dev_sm2_pki, to_pem

SM2_DIR = "sm2"
MAKER_CERT = "maker.pem"
MAKER_KEY = "maker.key.pem"
SIGNER_CERT = "signer.pem"
SIGNER_KEY = "signer.key.pem"
SEAL_FILE = "seal.esl"
SEAL_NAME = "ehub 开发用电子证照专用章"
_DAYS = 3650


@dataclass(frozen=True)
class DevSm2SealMaker:
    directory: Path
    maker_key: SM2PrivateKey
    maker_cert: bytes
    """DER; the trust anchor for OFD seals made with it."""
    signer_key: SM2PrivateKey
    signer_cert: bytes
    seal: bytes
    """DER ``SESeal`` listing :attr:`signer_cert`."""


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    with open(directory / ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fchmod(fd, mode)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _der(pem_or_der: bytes) -> bytes:
    from asn1crypto import pem

    if pem.detect(pem_or_der):
        return bytes(pem.unarmor(pem_or_der)[2])
    return pem_or_der


def maker_cert_path(pki_dir: Path) -> Path:
    """Where the dev SM2 seal maker's certificate is (it may not exist yet)."""
    return pki_dir / SM2_DIR / MAKER_CERT


def ensure_dev_sm2_seal_maker(pki_dir: Path, *, now: dt.datetime | None = None) -> DevSm2SealMaker:
    """The dev SM2 seal maker, signer and seal under ``pki_dir``, created on first use."""
    directory = pki_dir / SM2_DIR
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    names = (MAKER_CERT, MAKER_KEY, SIGNER_CERT, SIGNER_KEY, SEAL_FILE)
    with _locked(directory):
        if not all((directory / n).is_file() for n in names):
            start = (now or dt.datetime.now(dt.UTC)).replace(microsecond=0)
            start -= dt.timedelta(days=1)  # tolerate clock skew of the machines verifying
            pki = make_dev_sm2_pki(start, days=_DAYS)
            from ehub.seal_image import DIAMETER_MM, render_seal_png

            picture = ses.SealPicture(
                "PNG", render_seal_png("ehub 开发", "电子证照专用章"), DIAMETER_MM, DIAMETER_MM
            )
            seal = ses.make_seal(
                ses.SealSpec(
                    es_id="EHUBDEV0001",
                    name=SEAL_NAME,
                    signer_certs=[pki.signer_cert],
                    picture=picture,
                    create_date=start,
                    valid_start=start,
                    valid_end=start + dt.timedelta(days=_DAYS),
                ),
                maker_key=pki.maker_key,
                maker_cert=pki.maker_cert,
            )
            # Keys first: a crash between writes leaves an incomplete set, rebuilt next time.
            _write(directory / MAKER_KEY, pki.maker_key.to_pem(), 0o600)
            _write(directory / SIGNER_KEY, pki.signer_key.to_pem(), 0o600)
            _write(directory / SIGNER_CERT, to_pem(pki.signer_cert), 0o644)
            _write(directory / SEAL_FILE, seal, 0o644)
            _write(directory / MAKER_CERT, to_pem(pki.maker_cert), 0o644)
        return DevSm2SealMaker(
            directory=directory,
            maker_key=SM2PrivateKey.from_pem((directory / MAKER_KEY).read_bytes()),
            maker_cert=_der((directory / MAKER_CERT).read_bytes()),
            signer_key=SM2PrivateKey.from_pem((directory / SIGNER_KEY).read_bytes()),
            signer_cert=_der((directory / SIGNER_CERT).read_bytes()),
            seal=(directory / SEAL_FILE).read_bytes(),
        )


def load_certificate(path: Path) -> bytes:
    """A certificate file (PEM or DER) as DER."""
    return _der(path.read_bytes())


__all__ = [
    "DevSm2SealMaker",
    "ensure_dev_sm2_seal_maker",
    "load_certificate",
    "maker_cert_path",
]
