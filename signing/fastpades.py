"""Bulk sealing fast path: render + PAdES B-B in one pass, without pyHanko per document.

A plain pyHanko ``sign_pdf`` loop spends ~20-40 ms a document on generic work:
parsing the input PDF, an incremental update with a visible stamp, and a CMS
built through asn1crypto's object model. The ECDSA P-256 signature itself
costs ~50 us. :class:`FastSealer` produces a sealed license as follows:

1. **One revision, written directly.** The page (:mod:`signing.fastrender`:
   the normal renderer's layout, a per-document font subset from cached glyph
   parts, the QR code as an image) is written together with the signature
   field, its widget (the seal picture, one XObject compressed once per
   sealer, plus the signing time), the ``/AcroForm`` and the signature
   dictionary, whose ``/ByteRange`` and ``/Contents`` have fixed-size
   placeholders. No incremental update is needed, and nothing is parsed.
2. **CMS from pyHanko's own template.** At construction the sealer signs one
   small PDF with pyHanko (the same ``PdfSignatureMetadata`` as the bench's
   baseline loop: PAdES subfilter, SHA-256) and keeps the DER of every part of
   the resulting ``SignedData``: certificates, signer identifier, algorithm
   identifiers and the signed attributes (content type, message digest, ESS
   signing-certificate-v2; PAdES puts the signing time in ``/M``, not in the
   CMS). It checks that re-assembling those parts reproduces pyHanko's
   container byte for byte. Per document only the message digest changes: its
   32 bytes are spliced into the signed attributes, whose DER is signed with
   the key through ``cryptography`` (deterministic ECDSA, RFC 6979, so equal
   input and signing time give equal bytes), and the container is re-assembled
   by concatenation.
3. **Bulk.** :meth:`FastSealer.seal_many` seals a batch in this process, or
   across ``workers`` forked processes, which inherit the opened sealer.

The output validates under pyHanko, pdfsig and ``ehub verify`` the way
pyHanko's own output does (``tests/signing/test_fastpades.py``). B-T and B-LT,
PKCS#11 keys, certification and reserved fields stay on
:class:`signing.pades.PadesSealer`. Nothing here logs key material.
"""

from __future__ import annotations

import hashlib
import io
import multiprocessing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from asn1crypto import cms
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from signing.errors import KeyAccessError, SigningError
from signing.fastpdf import PdfParts, assemble, seal_image_parts
from signing.fastrender import FastPage
from signing.pades import open_seal_p12
from signing.render import LicenseView

__all__ = ["FastSealer", "FastSealers", "fast_sealer_for", "render_and_seal"]

_SHA256 = b"\x06\x09\x60\x86\x48\x01\x65\x03\x04\x02\x01"


def _tlv(tag: int, body: bytes) -> bytes:
    n = len(body)
    if n < 0x80:
        return bytes((tag, n)) + body
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(size))) + size + body


@dataclass(frozen=True, slots=True)
class _CmsTemplate:
    """The DER parts of pyHanko's SignedData for this key; see the module docstring."""

    content_type: bytes
    sd_head: bytes
    """version + digestAlgorithms + encapContentInfo + [0] certificates."""
    si_head: bytes
    """version + sid + digestAlgorithm."""
    attrs_before: bytes
    attrs_after: bytes
    """The signed attributes' content around the 32 message-digest bytes."""
    sig_alg: bytes
    scheme: str
    """'ecdsa' or 'rsa' (PKCS#1 v1.5)."""

    def container(self, digest: bytes, sign: Any) -> bytes:
        body = self.attrs_before + digest + self.attrs_after
        signature = sign(_tlv(0x31, body))
        signer = _tlv(0x30, self.si_head + _tlv(0xA0, body) + self.sig_alg + _tlv(0x04, signature))
        signed_data = _tlv(0x30, self.sd_head + _tlv(0x31, signer))
        return _tlv(0x30, self.content_type + _tlv(0xA0, signed_data))


def _template_from_pyhanko(p12: bytes, secret: bytes) -> tuple[_CmsTemplate, bytes, bytes]:
    """Sign a one-page PDF with pyHanko; return the template, pyHanko's CMS and its digest."""
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign import fields, signers
    from reportlab.pdfgen import canvas

    buffer = io.BytesIO()
    page = canvas.Canvas(buffer, invariant=1)
    page.showPage()
    page.save()
    signer = signers.SimpleSigner.load_pkcs12_data(p12, other_certs=(), passphrase=secret)
    meta = signers.PdfSignatureMetadata(
        field_name="Sig1", subfilter=fields.SigSeedSubFilter.PADES, md_algorithm="sha256"
    )
    out = signers.sign_pdf(
        IncrementalPdfFileWriter(io.BytesIO(buffer.getvalue())), meta, signer=signer
    ).getvalue()
    at = out.rindex(b"/ByteRange")
    numbers = out[at + len(b"/ByteRange") :].split(b"]", 1)[0].strip(b" [")
    start, gap_end = (int(x) for x in numbers.split()[1:3])
    raw = bytes.fromhex(out[start + 1 : gap_end - 1].decode("ascii"))
    info = cms.ContentInfo.load(raw, strict=False)
    der = info.dump()
    sd = info["content"]
    si = sd["signer_infos"][0]
    attrs = si["signed_attrs"]
    types = [a["type"].native for a in attrs]
    if types.count("message_digest") != 1 or "signing_time" in types:
        raise SigningError(f"unexpected signed attributes from pyHanko: {types}")
    digest = next(a for a in attrs if a["type"].native == "message_digest")["values"][0].native
    body = attrs.dump()
    body = body[len(body) - len(attrs.contents) :]
    cut = body.index(digest)
    algo = si["signature_algorithm"]["algorithm"].native
    scheme = {"sha256_ecdsa": "ecdsa", "sha256_rsa": "rsa"}.get(algo)
    if scheme is None or si["digest_algorithm"]["algorithm"].native != "sha256":
        raise SigningError(f"the fast path signs ECDSA or RSA PKCS#1 v1.5 with SHA-256, not {algo}")
    template = _CmsTemplate(
        content_type=info["content_type"].dump(),
        sd_head=b"".join(sd[k].dump() for k in
                         ("version", "digest_algorithms", "encap_content_info", "certificates")),
        si_head=b"".join(si[k].dump() for k in ("version", "sid", "digest_algorithm")),
        attrs_before=body[:cut],
        attrs_after=body[cut + len(digest) :],
        sig_alg=si["signature_algorithm"].dump(),
        scheme=scheme,
    )  # fmt: skip
    signature = si["signature"].native
    if template.container(digest, lambda _: signature) != der:
        raise SigningError("cannot reproduce pyHanko's signature container from its parts")
    return template, der, digest


class FastSealer:
    """Renders and seals licenses at PAdES B-B with a PKCS#12 seal key (see the module
    docstring). ``stamp_image``: the seal's picture (PNG) drawn in the seal box, as
    :class:`signing.pades.PadesSealer` draws it; without it a framed text stamp."""

    def __init__(
        self,
        p12_path: Path | str,
        passphrase: str | bytes,
        *,
        stamp_image: Path | str | None = None,
        field_name: str = "EhubSeal1",
    ) -> None:
        data, secret, key, cert = open_seal_p12(p12_path, passphrase)
        self._template, self.reference_cms, _ = _template_from_pyhanko(data, secret)
        if self._template.scheme == "ecdsa" and isinstance(key, ec.EllipticCurvePrivateKey):
            algorithm = ec.ECDSA(hashes.SHA256(), deterministic_signing=True)
            self._sign = lambda tbs: key.sign(tbs, algorithm)
        elif self._template.scheme == "rsa" and isinstance(key, rsa.RSAPrivateKey):
            self._sign = lambda tbs: key.sign(tbs, padding.PKCS1v15(), hashes.SHA256())
        else:
            raise KeyAccessError(f"seal key store {p12_path}: unsupported key type")
        names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        self.seal_name: str = str(names[0].value) if names else ""
        """Common name of the seal certificate (the seal's name)."""
        cert_id = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
        self._cert_id = cert_id[:16].upper()
        # The container's size varies only with the signature's length: at most
        # 2 x 32 bytes + 9 of DER for ECDSA P-256, the modulus size for RSA.
        if isinstance(key, ec.EllipticCurvePrivateKey):
            longest = 2 * ((key.curve.key_size + 7) // 8) + 9
        else:
            longest = (key.key_size + 7) // 8
        probe = self._template.container(b"\0" * 32, lambda _: b"\0" * longest)
        self._reserve = len(probe) + 32
        self._image = seal_image_parts(stamp_image)
        self._page = FastPage()
        self._field = field_name

    # Not thread-safe (per-process caches); use one sealer per thread or seal_many's processes.

    def seal_view(
        self, view: LicenseView, *, signing_time: datetime, reason: str, location: str
    ) -> bytes:
        """The license page of ``view`` sealed at PAdES B-B, claimed time ``signing_time``."""
        if signing_time.tzinfo is None:
            raise ValueError("signing_time must be timezone-aware")
        page = self._page.render(view)
        parts = PdfParts(
            page=page,
            view=view,
            image=self._image,
            field_name=self._field,
            signing_time=signing_time,
            reason=reason,
            location=location,
            cert_id=self._cert_id,
            face=self._page.font.face,
            reserve=self._reserve,
        )
        pdf, ranges = assemble(parts)
        digest = hashlib.sha256()
        digest.update(memoryview(pdf)[: ranges[1]])
        digest.update(memoryview(pdf)[ranges[2] :])
        container = self._template.container(digest.digest(), self._sign)
        hexed = container.hex().encode("ascii")
        if len(hexed) > 2 * self._reserve:
            raise SigningError(
                f"signature container of {len(container)} bytes exceeds the "
                f"{self._reserve} reserved"
            )
        pdf[ranges[1] + 1 : ranges[1] + 1 + len(hexed)] = hexed
        return bytes(pdf)

    def seal_many(
        self,
        views: Iterable[LicenseView],
        *,
        signing_time: datetime,
        reason: str,
        location: str,
        workers: int = 1,
        chunk: int = 32,
    ) -> list[bytes]:
        """Seal every view (same signing time), in order. ``workers`` > 1 forks that many
        processes, each opening the key once; the results come back in input order."""
        items = list(views)
        options: dict[str, Any] = {
            "signing_time": signing_time,
            "reason": reason,
            "location": location,
        }
        if workers <= 1 or len(items) < 2 * chunk:
            return [self.seal_view(v, **options) for v in items]
        # Forked workers inherit this sealer (key, template, caches): nothing secret is
        # pickled, and no worker opens the key store again. Only views and PDFs travel.
        _WORKER["sealer"], _WORKER["options"] = self, options
        try:
            with multiprocessing.get_context("fork").Pool(workers) as pool:
                return pool.map(_worker_seal, items, chunksize=chunk)
        finally:
            _WORKER.clear()


#: The sealer and options of the current :meth:`FastSealer.seal_many`, for its forked workers.
_WORKER: dict[str, Any] = {}


def _worker_seal(view: LicenseView) -> bytes:
    sealed: bytes = _WORKER["sealer"].seal_view(view, **_WORKER["options"])
    return sealed


def fast_sealer_for(
    key_ref: str,
    *,
    passphrase: str | bytes | None,
    level: str,
    stamp_image: Path | str | None = None,
) -> FastSealer | None:
    """The fast sealer for a seal registry entry when the fast path applies (PAdES B-B,
    a PKCS#12 key store), else None: the caller keeps :func:`signing.pkcs11_sealer.sealer_for`."""
    if level != "B-B" or key_ref.startswith("pkcs11:") or passphrase is None:
        return None
    return FastSealer(key_ref, passphrase, stamp_image=stamp_image)


class FastSealers:
    """The fast sealers of one process, one per (key store, stamp picture), opened on
    first use; :meth:`for_seal` is None where the fast path does not apply."""

    def __init__(self, passphrase: str | bytes | None) -> None:
        self._passphrase = passphrase
        self._open: dict[tuple[str, str | None], FastSealer] = {}

    def for_seal(
        self, key_ref: str, level: str, stamp_image: Path | str | None
    ) -> FastSealer | None:
        key = (key_ref, None if stamp_image is None else str(stamp_image))
        if key not in self._open:
            sealer = fast_sealer_for(
                key_ref, passphrase=self._passphrase, level=level, stamp_image=stamp_image
            )
            if sealer is None:
                return None
            self._open[key] = sealer
        return self._open[key] if level == "B-B" else None


def render_and_seal(
    view: LicenseView,
    *,
    fast: FastSealer | None,
    seal_slow: Callable[[bytes], bytes],
    signing_time: datetime,
    reason: str,
    location: str,
) -> bytes:
    """The sealed PDF of ``view``: through ``fast`` when given, else rendered by
    :func:`signing.render.render_license_pdf` and sealed by ``seal_slow`` (e.g. the seal
    stage's ``_seal_with_retries`` around a :class:`signing.pades.PadesSealer`).

    The seal stage's switch (``ehub.pipeline.seal.SealContext.seal``), with
    ``self.fast = FastSealers(self.pki.passphrase)`` made in ``__init__``::

        sealed_pdf = render_and_seal(
            license_view(doc, seal_label=seal.name, verify_url=settings.verify_url),
            fast=self.fast.for_seal(seal.key_ref, level, seal.image_path),
            seal_slow=lambda pdf: _seal_with_retries(sealer, pdf, signed_at),
            signing_time=signed_at, reason="电子证照签章 / e-license seal", location="山东",
        )
    """
    if fast is not None:
        return fast.seal_view(view, signing_time=signing_time, reason=reason, location=location)
    from signing.render import render_license_pdf

    return seal_slow(render_license_pdf(view))
