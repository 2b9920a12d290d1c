"""Seal stage, OFD part: a license as an OFD document with a GB/T 38540 SM2 seal.

The seal stage (:mod:`ehub.pipeline.seal`) calls :meth:`OfdSealing.seal` for a
license whose template lists ``"ofd"`` in ``seal_formats``
(:mod:`ehub.templates`): the OFD is written by
:func:`signing.ofd_writer.write_license_ofd` from the same template as the
PDF, sealed by :func:`signing.ofd_seal.seal_ofd`, and recorded like the PDF:
the file beside it (``<identifier>_v<version>.ofd``, see
:func:`ofd_document_path`) and one ``signatures`` row of format ``ofd``
(level :data:`OFD_LEVEL`) with its path and SHA-256.

Which SM2 seal signs (development): the registry selects the license's seal
as for the PDF (:class:`ehub.seals.Seal`: the department's own or a
cross-level seal). For that seal the dev SM2 seal maker of
:mod:`signing.pki_sm2` makes once an ``SESeal`` with the seal's name, code
(``esID``), picture and validity (clipped to the dev signer certificate's),
listing the dev SM2 signer certificate; it is kept in
``<home>/pki/sm2/seals/`` and made again when the seal or the maker changes.
``ehub verify`` trusts that maker by default. Production seals come from the
registered seal maker and the signer key lives in an HSM (docs/OFD.md).

Must not: write the store (the seal stage records the returned row in its
transaction), touch the PDF path, or read the clock (the signing time is the
stage's).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asn1crypto import x509

from ehub.seal_image import DIAMETER_MM, render_seal_png
from ehub.seals import NoUsableSeal, Seal
from signing import ses
from signing.errors import CryptoLibraryError, SealFormatError
from signing.ofd_seal import seal_ofd
from signing.ofd_writer import write_license_ofd
from signing.pki_sm2 import DevSm2SealMaker, ensure_dev_sm2_seal_maker

log = logging.getLogger(__name__)

OFD_LEVEL = "SM2"
"""``signatures.level`` of an OFD seal (GB/T 38540 v4, SM2 with SM3, no timestamp)."""
SEALS_DIR = "seals"


def ofd_document_path(pdf_path: Path) -> Path:
    """The OFD beside the license's PDF path (:func:`ehub.pipeline.seal.document_path`)."""
    return pdf_path.with_suffix(".ofd")


@dataclass(frozen=True)
class SealedOfd:
    """One license's sealed OFD and the ``signatures`` row that records it."""

    data: bytes
    path: Path
    signature: dict[str, Any]


def _utc(value: dt.datetime) -> dt.datetime:
    """Registry times (SQLite returns them naive, in UTC) as aware UTC, whole seconds."""
    aware = value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
    return aware.astimezone(dt.UTC).replace(microsecond=0)


def _cert_window(cert_der: bytes) -> tuple[dt.datetime, dt.datetime]:
    validity = x509.Certificate.load(cert_der)["tbs_certificate"]["validity"]
    return _utc(validity["not_before"].native), _utc(validity["not_after"].native)


class OfdSealing:
    """The dev SM2 signer and one ``SESeal`` per registered seal, for one process."""

    def __init__(self, pki_dir: Path, verify_url: str) -> None:
        self._pki_dir = pki_dir
        self._verify_url = verify_url
        self._maker: DevSm2SealMaker | None = None
        self._seals: dict[str, bytes] = {}

    def _dev_maker(self, seal: Seal) -> DevSm2SealMaker:
        if self._maker is None:
            try:
                self._maker = ensure_dev_sm2_seal_maker(self._pki_dir)
            except (OSError, SealFormatError, CryptoLibraryError) as exc:
                raise NoUsableSeal(
                    "key_unavailable", f"seal {seal.code}: no SM2 seal maker/signer for OFD: {exc}"
                ) from exc
        return self._maker

    def seal_for(self, seal: Seal) -> bytes:
        """The DER ``SESeal`` of ``seal`` made by the dev SM2 seal maker (made once)."""
        maker = self._dev_maker(seal)
        identity = "|".join((
            seal.code, seal.name, seal.department, seal.image_sha256 or "",
            _utc(seal.valid_from).isoformat(), _utc(seal.valid_until).isoformat(),
            hashlib.sha256(maker.maker_cert + maker.signer_cert).hexdigest(),
        ))  # fmt: skip
        key = hashlib.sha256(identity.encode()).hexdigest()[:24]
        if key in self._seals:
            return self._seals[key]
        folder = maker.directory / SEALS_DIR
        path = folder / f"{key}.esl"
        if path.is_file():
            self._seals[key] = path.read_bytes()
            return self._seals[key]
        try:
            der = self._make(seal, maker)
            folder.mkdir(mode=0o700, exist_ok=True)
            # Atomic: a concurrent worker making the same seal leaves one complete file
            # (both seals are the maker's and list the same signer: either verifies).
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=".seal-", suffix=".tmp")
            with os.fdopen(fd, "wb") as fh:
                fh.write(der)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except (OSError, SealFormatError) as exc:
            raise NoUsableSeal(
                "key_unavailable", f"seal {seal.code}: cannot make its SM2 seal for OFD: {exc}"
            ) from exc
        log.info("seal %s: SM2 seal for OFD made by the dev seal maker", seal.code)
        self._seals[key] = der
        return der

    @staticmethod
    def _make(seal: Seal, maker: DevSm2SealMaker) -> bytes:
        cert_from, cert_until = _cert_window(maker.signer_cert)
        start = max(_utc(seal.valid_from), cert_from)
        end = min(_utc(seal.valid_until), cert_until)
        image = Path(seal.image_path) if seal.image_path else None
        png = (
            image.read_bytes()
            if image is not None and image.is_file()
            else render_seal_png(seal.department, seal.seal_type)
        )
        es_id = seal.code if seal.code.isascii() else hashlib.sha256(seal.code.encode()).hexdigest()
        spec = ses.SealSpec(
            es_id=es_id[:64],
            name=seal.name,
            signer_certs=[maker.signer_cert],
            picture=ses.SealPicture("PNG", png, DIAMETER_MM, DIAMETER_MM),
            create_date=start,
            valid_start=start,
            valid_end=end,
        )
        return ses.make_seal(spec, maker_key=maker.maker_key, maker_cert=maker.maker_cert)

    def seal(
        self,
        seal: Seal,
        license_id: int,
        doc: dict[str, Any],
        pdf_path: Path,
        signed_at: dt.datetime,
    ) -> SealedOfd:
        """Render and seal one license's OFD; the stage writes the file and records the row.

        Raises :class:`NoUsableSeal` when there is no SM2 seal for ``seal`` and
        :class:`signing.errors.UnsealableDocument` when the page cannot be laid
        out: the stage holds the license, as for the PDF.
        """
        seal_der = self.seal_for(seal)
        maker = self._dev_maker(seal)
        ofd = write_license_ofd(doc, verify_url=self._verify_url, seal_label=seal.name)
        sealed = seal_ofd(
            ofd, seal_der, maker.signer_key, maker.signer_cert, signing_time=signed_at
        )
        path = ofd_document_path(pdf_path)
        return SealedOfd(sealed, path, {
            "license_id": license_id, "seal_id": seal.id, "format": "ofd",
            "level": OFD_LEVEL, "path": str(path),
            "sha256": hashlib.sha256(sealed).hexdigest(), "signed_at": signed_at,
        })  # fmt: skip


__all__ = ["OFD_LEVEL", "OfdSealing", "SealedOfd", "ofd_document_path"]
