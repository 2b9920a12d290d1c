"""Seal PDFs with PAdES signatures (ETSI.CAdES.detached, baseline B-B) via pyHanko.

:class:`Sealer` is the one-method protocol every sealing back end implements;
:class:`PadesSealer` is the software implementation whose key comes from a
PKCS#12 bundle, decrypted once at construction. A PKCS#11 (HSM) sealer will
implement the same protocol later. Sealing happens in memory: no temporary
files, no network (no timestamp authority yet, hence B-B rather than B-T).

pyHanko and ``cryptography`` errors are translated into :mod:`signing.errors`.
Nothing here logs key material or the passphrase.
"""

from __future__ import annotations

import io
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol, runtime_checkable

from cryptography.hazmat.primitives.serialization import pkcs12
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.misc import PdfError
from pyhanko.pdf_utils.text import TextBoxStyle
from pyhanko.pdf_utils.writer import BasePdfFileWriter
from pyhanko.sign import fields, signers
from pyhanko.sign.general import SigningError as PyHankoSigningError
from pyhanko.sign.signers.pdf_signer import PdfSigningSession
from pyhanko.stamp import TextStampStyle

from signing.errors import KeyAccessError, UnsealableDocument
from signing.render import SEAL_BOX

log = logging.getLogger(__name__)

# pyHanko's built-in stamp font is Courier (a simple font): it cannot show CJK,
# so the visible stamp carries ASCII only; the seal name is the caption that
# signing.render prints under the box. A CJK stamp needs an embedded
# TrueType font (seals issue).
_STAMP_TEXT = "ELECTRONIC SEAL\nID %(cert_id)s\n%(ts)s"
_SEAL_RED = (0.72, 0.08, 0.08)
_STAMP_STYLE = TextStampStyle(
    stamp_text=_STAMP_TEXT,
    text_box_style=TextBoxStyle(text_color=_SEAL_RED),
    timestamp_format="%Y-%m-%d %H:%M:%S %Z",
    border_width=2,
    border_color=_SEAL_RED,
    background=None,
)

# Signed attributes, algorithm identifiers and an RSA-4096 signature fit well
# within this; the chain's certificates are added on top.
_RESERVE_OVERHEAD = 2048


@runtime_checkable
class Sealer(Protocol):
    """Applies one electronic seal to a PDF and returns the sealed PDF."""

    def seal(
        self,
        pdf: bytes,
        *,
        field_name: str = "EhubSeal1",
        reason: str,
        location: str,
        signing_time: datetime | None = None,
    ) -> bytes:
        """Return ``pdf`` with a new signature in field ``field_name``."""
        ...


class _PinnedTimePdfSigner(signers.PdfSigner):
    """PdfSigner whose signing time is supplied by the caller, not the clock.

    pyHanko reads the clock when it opens a signing session and offers no
    argument for it; overriding the session's ``system_time`` is the narrow hook.
    """

    def __init__(
        self,
        signature_meta: signers.PdfSignatureMetadata,
        signer: signers.Signer,
        *,
        stamp_style: TextStampStyle,
        new_field_spec: fields.SigFieldSpec | None,
        signing_time: datetime | None,
    ) -> None:
        super().__init__(
            signature_meta, signer, stamp_style=stamp_style, new_field_spec=new_field_spec
        )
        self._signing_time = signing_time

    def init_signing_session(
        self, pdf_out: BasePdfFileWriter, existing_fields_only: bool = False
    ) -> PdfSigningSession:
        session = super().init_signing_session(pdf_out, existing_fields_only)
        if self._signing_time is not None:
            session.system_time = self._signing_time
        return session


class PadesSealer:
    """PAdES B-B sealer backed by a PKCS#12 key store.

    The PKCS#12 bundle must contain the seal key, its certificate and the
    issuing chain; the chain is embedded in every signature so that verifiers
    need only the root. ``visible=True`` draws a stamp in
    :data:`signing.render.SEAL_BOX` on page 1.
    """

    def __init__(self, p12_path: Path, passphrase: str | bytes, *, visible: bool = True) -> None:
        secret = passphrase.encode("utf-8") if isinstance(passphrase, str) else passphrase
        try:
            data = Path(p12_path).read_bytes()
        except OSError as exc:
            raise KeyAccessError(f"cannot read seal key store {p12_path}: {exc.strerror}") from exc
        try:
            key, leaf, _ = pkcs12.load_key_and_certificates(data, secret)
        except ValueError as exc:
            raise KeyAccessError(
                f"cannot open seal key store {p12_path}: wrong passphrase or corrupt file"
            ) from exc
        if key is None or leaf is None:
            raise KeyAccessError(f"seal key store {p12_path} lacks the private key or certificate")
        # Checked with cryptography first because pyHanko fails with an
        # AttributeError on a bundle without a key. load_pkcs12_data (unlike
        # load_pkcs12) raises rather than returning None. Decryption happens
        # only here, at construction, never per seal.
        self._signer = signers.SimpleSigner.load_pkcs12_data(
            data, other_certs=(), passphrase=secret
        )
        cert = self._signer.signing_cert
        self._visible = visible
        # Reserving the signature space from the chain size skips pyHanko's
        # default dry-run signature, which costs ~40% of the sealing time.
        chain = [cert, *self._signer.cert_registry]
        # The figure counts hex digits, two per byte of the DER signature container.
        self._bytes_reserved = 2 * (sum(len(c.dump()) for c in chain) + _RESERVE_OVERHEAD)
        self._cert_id = cert.sha256.hex()[:16].upper()
        self.seal_name: str = cert.subject.native.get("common_name", "")
        """Common name of the seal certificate (the seal's name)."""
        log.info("loaded seal key store %s (cert %s)", Path(p12_path).name, self._cert_id)

    def seal(
        self,
        pdf: bytes,
        *,
        field_name: str = "EhubSeal1",
        reason: str,
        location: str,
        signing_time: datetime | None = None,
    ) -> bytes:
        """Return ``pdf`` with an added PAdES B-B signature (incremental update).

        ``signing_time`` (timezone-aware) is written as the claimed signing
        time; ``None`` means the current time. Raises
        :class:`UnsealableDocument` when the PDF cannot be parsed or signed.
        """
        if signing_time is not None and signing_time.tzinfo is None:
            raise ValueError("signing_time must be timezone-aware")
        meta = signers.PdfSignatureMetadata(
            field_name=field_name,
            md_algorithm="sha256",
            subfilter=fields.SigSeedSubFilter.PADES,
            reason=reason,
            location=location,
        )
        field_spec = None
        if self._visible:
            field_spec = fields.SigFieldSpec(sig_field_name=field_name, on_page=0, box=SEAL_BOX)
        signer = _PinnedTimePdfSigner(
            meta,
            signer=self._signer,
            stamp_style=_STAMP_STYLE,
            new_field_spec=field_spec,
            signing_time=signing_time,
        )
        try:
            writer = IncrementalPdfFileWriter(io.BytesIO(pdf))
            out = signer.sign_pdf(
                writer,
                bytes_reserved=self._bytes_reserved,
                appearance_text_params={"cert_id": self._cert_id},
                output=io.BytesIO(),
            )
        except (PdfError, PyHankoSigningError, ValueError, KeyError, TypeError) as exc:
            raise UnsealableDocument(
                f"cannot seal document into field {field_name!r}: {exc}"
            ) from exc
        sealed: bytes = out.getvalue()
        log.debug(
            "sealed %d bytes -> %d bytes, field %s, at %s",
            len(pdf),
            len(sealed),
            field_name,
            (signing_time or datetime.now(UTC)).isoformat(),
        )
        return sealed
