"""Seal PDFs with PAdES signatures (ETSI.CAdES.detached) via pyHanko.

:class:`Sealer` is the one-method protocol every sealing back end implements;
:class:`PadesSealer` is the software implementation whose key comes from a
PKCS#12 bundle, decrypted once at construction. A PKCS#11 (HSM) sealer
implements the same protocol. Sealing happens in memory (no temporary files).

Baseline levels (:class:`PadesLevel`, ETSI EN 319 142-1):

- ``B-B``: the signature alone; no network.
- ``B-T``: plus a signature timestamp from an RFC 3161 TSA (``tsa_url``).
- ``B-LT``: B-T plus the validation data (certificates, CRLs) of the signer
  and of the TSA, fetched at sealing time and embedded in the document
  security store (DSS); needs the ``trust_roots`` the chain must end in.

A TSA or revocation endpoint that cannot be reached raises
:class:`SealUnavailable` naming the URL: a level is never silently lowered.

pyHanko and ``cryptography`` errors are translated into :mod:`signing.errors`.
Nothing here logs key material or the passphrase.
"""

from __future__ import annotations

import io
import logging
import urllib.request
from collections.abc import Sequence
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Protocol, TypeAlias, runtime_checkable

from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding, pkcs12
from PIL import Image
from pyhanko.keys import load_certs_from_pemder
from pyhanko.pdf_utils.images import PdfImage
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.misc import PdfError
from pyhanko.pdf_utils.text import TextBoxStyle
from pyhanko.pdf_utils.writer import BasePdfFileWriter
from pyhanko.sign import fields, signers
from pyhanko.sign.general import SigningError as PyHankoSigningError
from pyhanko.sign.signers.pdf_signer import PdfSigningSession
from pyhanko.sign.timestamps import TimestampRequestError
from pyhanko.sign.timestamps.requests_client import RequestsHTTPTimeStamper
from pyhanko.stamp import TextStampStyle
from pyhanko_certvalidator import ValidationContext
from pyhanko_certvalidator import errors as cv_errors

from signing.errors import KeyAccessError, SealUnavailable, SigningError, UnsealableDocument
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


def _stamp_style(image: Path | str | None) -> TextStampStyle:
    if image is None:
        return _STAMP_STYLE
    try:
        picture = PdfImage(Image.open(image))
    except OSError as exc:
        raise KeyAccessError(f"seal image {image} cannot be read: {exc}") from exc
    return TextStampStyle(
        stamp_text="%(ts)s",
        text_box_style=TextBoxStyle(text_color=_SEAL_RED, font_size=6),
        timestamp_format="%Y-%m-%d %H:%M:%S %Z",
        border_width=0,
        background=picture,
        background_opacity=1.0,
    )


# Signed attributes, algorithm identifiers and an RSA-4096 signature fit well
# within this; the chain's certificates are added on top.
_RESERVE_OVERHEAD = 2048
# A timestamp token: TSTInfo, the TSA certificate and an RSA-4096 signature.
_TIMESTAMP_RESERVE = 6144


class PadesLevel(StrEnum):
    """PAdES baseline level produced by :class:`PadesSealer`."""

    B_B = "B-B"
    B_T = "B-T"
    B_LT = "B-LT"


TrustRoot: TypeAlias = x509.Certificate | asn1_x509.Certificate | Path | str
"""A trust anchor for B-LT: a certificate object, or the path of a PEM/DER file."""


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
        certify: bool = False,
        box: tuple[int, int, int, int] | None = None,
        reserve: Sequence[tuple[str, tuple[int, int, int, int]]] = (),
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
        timestamper: RequestsHTTPTimeStamper | None = None,
    ) -> None:
        super().__init__(
            signature_meta,
            signer,
            stamp_style=stamp_style,
            new_field_spec=new_field_spec,
            timestamper=timestamper,
        )
        self._signing_time = signing_time

    def init_signing_session(
        self, pdf_out: BasePdfFileWriter, existing_fields_only: bool = False
    ) -> PdfSigningSession:
        session = super().init_signing_session(pdf_out, existing_fields_only)
        if self._signing_time is not None:
            session.system_time = self._signing_time
        return session


def open_seal_p12(
    p12_path: Path | str, passphrase: str | bytes
) -> tuple[bytes, bytes, PrivateKeyTypes, x509.Certificate]:
    """A seal's PKCS#12 bundle opened: (its bytes, the passphrase as bytes, key, certificate);
    KeyAccessError naming the file when it cannot be read, opened, or lacks either."""
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
    return data, secret, key, leaf


class PadesSealer:
    """PAdES sealer (B-B, B-T or B-LT) backed by a PKCS#12 key store.

    The PKCS#12 bundle must contain the seal key, its certificate and the
    issuing chain; the chain is embedded in every signature so that verifiers
    need only the root. ``visible=True`` draws a stamp in
    :data:`signing.render.SEAL_BOX` on page 1. ``level`` B-T and B-LT need
    ``tsa_url`` (an RFC 3161 endpoint); B-LT also needs ``trust_roots``.
    ``timeout`` (seconds) bounds each request to the TSA and CRL endpoints.
    """

    def __init__(
        self,
        p12_path: Path,
        passphrase: str | bytes,
        *,
        visible: bool = True,
        level: PadesLevel | str = PadesLevel.B_B,
        tsa_url: str | None = None,
        trust_roots: Sequence[TrustRoot] = (),
        timeout: float = 10.0,
        stamp_image: Path | str | None = None,
    ) -> None:
        self._init_level(level, tsa_url, trust_roots, timeout, stamp_image)
        data, secret, _key, _leaf = open_seal_p12(p12_path, passphrase)
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
        reserve = sum(len(c.dump()) for c in chain) + _RESERVE_OVERHEAD
        if self.level is not PadesLevel.B_B:
            reserve += _TIMESTAMP_RESERVE
        self._bytes_reserved = 2 * reserve
        self._cert_id = cert.sha256.hex()[:16].upper()
        self.seal_name: str = cert.subject.native.get("common_name", "")
        """Common name of the seal certificate (the seal's name)."""
        if self.level is PadesLevel.B_LT:
            for issued in chain:
                # asn1crypto: self_signed is "no", "maybe" or "yes".
                if issued.self_signed == "no" and not issued.crl_distribution_points:
                    raise KeyAccessError(
                        f"PAdES B-LT needs revocation data, but certificate "
                        f"{issued.subject.human_friendly!r} has no CRL distribution point "
                        f"(issued before the PKI published CRLs: issue a new seal)"
                    )
        log.info("loaded seal key store %s (cert %s)", Path(p12_path).name, self._cert_id)

    def _init_level(
        self,
        level: PadesLevel | str,
        tsa_url: str | None,
        trust_roots: Sequence[TrustRoot],
        timeout: float,
        stamp_image: Path | str | None = None,
    ) -> None:
        """Level, TSA client, trust roots and the visible stamp (shared with the
        PKCS#11 sealer). ``stamp_image``: the seal's picture (PNG), drawn in the
        seal box under the signing time; without it a framed text stamp."""
        self._stamp_style = _stamp_style(stamp_image)
        self.level: PadesLevel = PadesLevel(level)
        """The baseline level of every seal this sealer applies."""
        self._tsa_url = tsa_url
        self._timeout = timeout
        if self.level is not PadesLevel.B_B and not tsa_url:
            raise SigningError(f"PAdES {self.level} needs a timestamp authority URL (tsa_url)")
        # One client per sealer: pyHanko caches its dummy token (used to size
        # and validate the TSA chain) per instance.
        self._timestamper = (
            RequestsHTTPTimeStamper(tsa_url, timeout=timeout)
            if tsa_url and self.level is not PadesLevel.B_B
            else None
        )
        self._trust_roots = _load_roots(trust_roots) if trust_roots else []
        if self.level is PadesLevel.B_LT and not self._trust_roots:
            raise SigningError("PAdES B-LT needs the trust roots the seal chain ends in")

    def seal(
        self,
        pdf: bytes,
        *,
        field_name: str = "EhubSeal1",
        reason: str,
        location: str,
        signing_time: datetime | None = None,
        certify: bool = False,
        box: tuple[int, int, int, int] | None = None,
        reserve: Sequence[tuple[str, tuple[int, int, int, int]]] = (),
    ) -> bytes:
        """Return ``pdf`` with an added PAdES signature at :attr:`level`
        (incremental update; B-LT appends one more revision holding the DSS).

        ``certify`` makes it a certification signature (DocMDP) that allows
        form filling and further signatures: the first of joint seals
        (:mod:`signing.joint`). ``box`` places the visible seal (default
        :data:`signing.render.SEAL_BOX`). ``reserve`` adds empty signature
        fields (name, box) in the same revision, for the seals that follow a
        certifying one: DocMDP lets later signers fill existing fields only.

        ``signing_time`` (timezone-aware) is written as the claimed signing
        time; ``None`` means the current time (the B-T timestamp always
        carries the TSA's time). Raises :class:`UnsealableDocument` when the
        PDF cannot be parsed or signed, :class:`SealUnavailable` when the TSA
        or a CRL endpoint cannot be reached, :class:`KeyAccessError` when the
        seal certificate is revoked or does not chain to ``trust_roots``.
        """
        if signing_time is not None and signing_time.tzinfo is None:
            raise ValueError("signing_time must be timezone-aware")
        long_term = self.level is PadesLevel.B_LT
        meta = signers.PdfSignatureMetadata(
            field_name=field_name,
            md_algorithm="sha256",
            subfilter=fields.SigSeedSubFilter.PADES,
            reason=reason,
            location=location,
            embed_validation_info=long_term,
            validation_context=self._validation_context() if long_term else None,
            use_pades_lta=False,
            certify=certify,
            docmdp_permissions=fields.MDPPerm.FILL_FORMS,
        )
        field_spec = None
        if self._visible:
            field_spec = fields.SigFieldSpec(
                sig_field_name=field_name, on_page=0, box=box or SEAL_BOX
            )
        signer = _PinnedTimePdfSigner(
            meta,
            signer=self._signer,
            stamp_style=self._stamp_style,
            new_field_spec=field_spec,
            signing_time=signing_time,
            timestamper=self._timestamper,
        )
        try:
            writer = IncrementalPdfFileWriter(io.BytesIO(pdf))
            for name, area in reserve:
                fields.append_signature_field(
                    writer, fields.SigFieldSpec(sig_field_name=name, on_page=0, box=area)
                )
            out = signer.sign_pdf(
                writer,
                bytes_reserved=self._bytes_reserved,
                appearance_text_params={"cert_id": self._cert_id},
                output=io.BytesIO(),
            )
        except TimestampRequestError as exc:
            raise SealUnavailable(
                f"timestamp authority {self._tsa_url} unavailable: {_causes(exc)}"
            ) from exc
        except PyHankoSigningError as exc:
            raise self._translate(exc, field_name) from exc
        except (PdfError, ValueError, KeyError, TypeError) as exc:
            raise UnsealableDocument(
                f"cannot seal document into field {field_name!r}: {exc}"
            ) from exc
        sealed: bytes = out.getvalue()
        log.debug(
            "sealed %d bytes -> %d bytes, PAdES %s, field %s, at %s",
            len(pdf),
            len(sealed),
            self.level,
            field_name,
            (signing_time or datetime.now(UTC)).isoformat(),
        )
        return sealed

    def _validation_context(self) -> ValidationContext:
        # A fresh context per seal: the CRLs are fetched again, so a revocation
        # is seen by the next seal. "require": every certificate of the signer's
        # and the TSA's chains must have revocation data, or sealing fails.
        return ValidationContext(
            trust_roots=self._trust_roots,
            allow_fetching=True,
            revocation_mode="require",
        )

    def _crl_urls(self) -> list[str]:
        urls: list[str] = []
        for cert in [self._signer.signing_cert, *self._signer.cert_registry]:
            for point in cert.crl_distribution_points or ():
                if point.url and point.url not in urls:
                    urls.append(point.url)
        return urls

    def _translate(self, exc: PyHankoSigningError, field_name: str) -> SigningError:
        chain = _chain(exc)
        for cause in chain:
            if isinstance(cause, TimestampRequestError):
                return SealUnavailable(
                    f"timestamp authority {self._tsa_url} unavailable: {_causes(exc)}"
                )
        for cause in chain:
            if isinstance(cause, cv_errors.RevokedError):
                return KeyAccessError(f"the seal certificate is revoked: {cause}")
        text = _causes(exc)
        if any(
            isinstance(c, cv_errors.InsufficientRevinfoError | cv_errors.CRLFetchError)
            for c in chain
        ):
            failing = _unreachable(self._crl_urls(), self._timeout)
            where = ", ".join(failing) if failing else "the TSA certificate's CRL"
            return SealUnavailable(f"revocation data unavailable from {where}: {text}")
        if any(
            isinstance(c, cv_errors.PathBuildingError | cv_errors.PathValidationError)
            for c in chain
        ):
            return KeyAccessError(f"the seal certificate cannot be validated: {text}")
        return UnsealableDocument(f"cannot seal document into field {field_name!r}: {text}")


def _unreachable(urls: Sequence[str], timeout: float) -> list[str]:
    """Those of ``urls`` that do not answer with a CRL (to name them in errors)."""
    failing = []
    for url in urls:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as answer:
                ok = answer.headers.get_content_type() == "application/pkix-crl"
        except (OSError, ValueError) as exc:
            log.info("CRL endpoint %s unreachable: %s", url, exc)
            ok = False
        if not ok:
            failing.append(url)
    return failing


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _causes(exc: BaseException) -> str:
    texts: list[str] = []
    for error in _chain(exc):
        text = str(error)
        if text and not any(text in seen for seen in texts):
            texts.append(text)
    return "; ".join(texts)


def _load_roots(roots: Sequence[TrustRoot]) -> list[asn1_x509.Certificate]:
    if isinstance(roots, str | Path):
        raise SigningError("trust_roots must be a sequence of roots, not one path")
    loaded: list[asn1_x509.Certificate] = []
    for root in roots:
        if isinstance(root, asn1_x509.Certificate):
            loaded.append(root)
        elif isinstance(root, x509.Certificate):
            loaded.append(asn1_x509.Certificate.load(root.public_bytes(Encoding.DER)))
        else:
            try:
                loaded.extend(load_certs_from_pemder([str(root)]))
            except (OSError, ValueError) as exc:
                raise SigningError(f"cannot load trust root {root}: {exc}") from exc
    return loaded
