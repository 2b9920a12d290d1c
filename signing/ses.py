"""GB/T 38540-2020 electronic seal structures: SESeal and SES_Signature (version 4).

Builds and decodes (:mod:`signing.ses_verify`: verifies) the two DER structures of STANDARDS.md §4:

- the seal (:func:`make_seal` → ``SESeal``): made once by the seal maker
  (制章人, the seal-issuing authority), it carries the seal picture and the
  list of certificates allowed to use the seal, and is signed with the maker's
  SM2 key over ``DER(SES_SealInfo)``;
- the signature (:func:`make_signature` → ``SES_Signature``): made by a
  signer listed in the seal, over ``DER(TBS_Sign)`` which embeds the seal, the
  signing time and the SM3 ``dataHash`` of the protected data (for OFD, the
  bytes of ``Signature.xml``; ``propertyInfo`` is its path).

Field names, types and order follow STANDARDS.md §4 (as implemented by ofdrw).
One deliberate tolerance: STANDARDS.md gives ``SES_Signature.timeStamp`` as an
untagged ``BIT STRING OPTIONAL`` and that is what is written, but ofdrw writes
it as ``[0] EXPLICIT BIT STRING``; the decoder accepts both.

:func:`signing.ses_verify.verify_signature` runs every check of STANDARDS.md §4
and returns a :class:`~signing.ses_verify.SesVerification` listing each failed
check as a :class:`~signing.ses_verify.SesReason`; an invalid signature is a
result, not an exception. Decoding a structure that is not DER of the expected
shape raises :class:`signing.errors.SealFormatError`.

The module does no I/O, reads no clock (times are arguments) and only
supports SM3withSM2 (``1.2.156.10197.1.501``) signatures.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Literal

from asn1crypto import core

from signing.errors import SealFormatError
from signing.sm2 import OID_SM3_WITH_SM2, Sm2Signer, sm3

SES_ID = "ES"
SES_VERSION = 4
"""Structure version of GB/T 38540-2020 (header version and TBS_Sign version)."""

SEAL_TYPE_UNIT: Final = 1
SEAL_TYPE_PERSONAL: Final = 2
CERT_LIST_CERTS: Final = 1
CERT_LIST_DIGESTS: Final = 2


# --- ASN.1 (asn1crypto) ----------------------------------------------------------------


class ExtData(core.Sequence):
    _fields: ClassVar[list[tuple[Any, ...]]] = [
        ("extnID", core.ObjectIdentifier),
        ("critical", core.Boolean, {"default": False}),
        ("extnValue", core.OctetString),
    ]


class ExtensionDatas(core.SequenceOf):
    _child_spec = ExtData


class SESHeader(core.Sequence):
    _fields: ClassVar[list[tuple[Any, ...]]] = [
        ("id", core.IA5String),
        ("version", core.Integer),
        ("vid", core.IA5String),
    ]


class CertInfoList(core.SequenceOf):
    _child_spec = core.OctetString


class CertDigestObj(core.Sequence):
    _fields: ClassVar[list[tuple[Any, ...]]] = [
        ("type", core.PrintableString),
        ("value", core.OctetString),
    ]


class CertDigestList(core.SequenceOf):
    _child_spec = CertDigestObj


class SESESPropertyInfo(core.Sequence):
    # certList is a CHOICE of two untagged SEQUENCE OFs: certListType says which.
    def _cert_list_spec(self) -> type[core.Asn1Value]:
        return CertDigestList if self["certListType"].native == CERT_LIST_DIGESTS else CertInfoList

    _fields: ClassVar[list[tuple[Any, ...]]] = [
        ("type", core.Integer),
        ("name", core.UTF8String),
        ("certListType", core.Integer),
        ("certList", core.Any),
        ("createDate", core.GeneralizedTime),
        ("validStart", core.GeneralizedTime),
        ("validEnd", core.GeneralizedTime),
    ]
    _spec_callbacks: ClassVar[dict[str, Any]] = {"certList": _cert_list_spec}


class SESESPictrueInfo(core.Sequence):  # "Pictrue" is the standard's own spelling
    _fields: ClassVar[list[tuple[Any, ...]]] = [
        ("type", core.IA5String),
        ("data", core.OctetString),
        ("width", core.Integer),
        ("height", core.Integer),
    ]


class SESSealInfo(core.Sequence):
    _fields: ClassVar[list[tuple[Any, ...]]] = [
        ("header", SESHeader),
        ("esID", core.IA5String),
        ("property", SESESPropertyInfo),
        ("picture", SESESPictrueInfo),
        ("extDatas", ExtensionDatas, {"optional": True}),
    ]


class SESeal(core.Sequence):
    _fields: ClassVar[list[tuple[Any, ...]]] = [
        ("eSealInfo", SESSealInfo),
        ("cert", core.OctetString),
        ("signAlgID", core.ObjectIdentifier),
        ("signedValue", core.OctetBitString),
    ]


class TBSSign(core.Sequence):
    _fields: ClassVar[list[tuple[Any, ...]]] = [
        ("version", core.Integer),
        ("eseal", SESeal),
        ("timeInfo", core.GeneralizedTime),
        ("dataHash", core.OctetBitString),
        ("propertyInfo", core.IA5String),
        ("extDatas", ExtensionDatas, {"explicit": 0, "optional": True}),
    ]


class SESSignature(core.Sequence):
    _fields: ClassVar[list[tuple[Any, ...]]] = [
        ("toSign", TBSSign),
        ("cert", core.OctetString),
        ("signatureAlgID", core.ObjectIdentifier),
        ("signature", core.OctetBitString),
        ("timeStamp", core.OctetBitString, {"optional": True}),
        # ofdrw's encoding of the same field; read, never written (see module docstring).
        ("timeStampTagged", core.OctetBitString, {"explicit": 0, "optional": True}),
    ]


# --- building ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SealPicture:
    """The seal image shown where the seal is applied."""

    type: str
    """Image format as the standard names it: ``PNG``, ``JPG``, ``GIF``, ``SVG``..."""
    data: bytes
    """The image file bytes."""
    width_mm: int
    """Display width in millimetres."""
    height_mm: int
    """Display height in millimetres."""


@dataclass(frozen=True)
class SealSpec:
    """What the seal maker puts into a seal (``SES_SealInfo``)."""

    es_id: str
    """The seal's code (``esID``), unique per seal maker; ASCII."""
    name: str
    """The seal name, e.g. ``济南市历下区市场监督管理局电子证照专用章``."""
    signer_certs: Sequence[bytes]
    """DER certificates allowed to sign with this seal (``certList``)."""
    picture: SealPicture
    create_date: dt.datetime
    valid_start: dt.datetime
    valid_end: dt.datetime
    seal_type: Literal[1, 2] = SEAL_TYPE_UNIT
    """1 unit seal (单位印章), 2 personal seal (个人印章)."""
    cert_list_type: Literal[1, 2] = CERT_LIST_CERTS
    """1: the certificates themselves; 2: their SM3 digests."""
    vid: str = "ehub"
    """Vendor id of the producing software (``SES_Header.vid``)."""


def _gtime(value: dt.datetime, field: str) -> dt.datetime:
    if value.tzinfo is None:
        raise SealFormatError(f"{field} must be timezone-aware", field=field)
    return value.astimezone(dt.UTC).replace(microsecond=0)


def _ascii(value: str, field: str) -> str:
    if not value.isascii():
        raise SealFormatError(f"{field} must be ASCII (IA5String): {value!r}", field=field)
    return value


def make_seal(spec: SealSpec, *, maker_key: Sm2Signer, maker_cert: bytes) -> bytes:
    """The DER ``SESeal`` for ``spec``, signed by the seal maker over ``DER(SES_SealInfo)``."""
    if not spec.signer_certs:
        raise SealFormatError("a seal needs at least one signer certificate", field="certList")
    if not spec.valid_start < spec.valid_end:
        raise SealFormatError("validStart must be before validEnd", field="validStart")
    if spec.cert_list_type == CERT_LIST_CERTS:
        cert_list: core.Asn1Value = CertInfoList(list(spec.signer_certs))
    else:
        cert_list = CertDigestList(
            [{"type": "SM3", "value": sm3(cert)} for cert in spec.signer_certs]
        )
    seal_info = SESSealInfo(
        {
            "header": {"id": SES_ID, "version": SES_VERSION, "vid": _ascii(spec.vid, "vid")},
            "esID": _ascii(spec.es_id, "esID"),
            "property": {
                "type": spec.seal_type,
                "name": spec.name,
                "certListType": spec.cert_list_type,
                "certList": cert_list,
                "createDate": _gtime(spec.create_date, "createDate"),
                "validStart": _gtime(spec.valid_start, "validStart"),
                "validEnd": _gtime(spec.valid_end, "validEnd"),
            },
            "picture": {
                "type": _ascii(spec.picture.type, "picture.type"),
                "data": spec.picture.data,
                "width": spec.picture.width_mm,
                "height": spec.picture.height_mm,
            },
        }
    )
    seal_info_der = seal_info.dump()
    seal = SESeal(
        {
            "eSealInfo": seal_info,
            "cert": maker_cert,
            "signAlgID": OID_SM3_WITH_SM2,
            "signedValue": maker_key.sign(seal_info_der),
        }
    )
    return bytes(seal.dump())


def make_signature(
    seal_der: bytes,
    data_hash: bytes,
    signer_cert_der: bytes,
    key: Sm2Signer,
    *,
    signing_time: dt.datetime,
    property_info: str,
    timestamp: bytes | None = None,
) -> bytes:
    """The DER ``SES_Signature`` of ``data_hash`` (SM3, 32 bytes) with ``seal_der``.

    ``property_info`` is the path of the signed data (for OFD, the
    ``Signature.xml`` path); ``timestamp`` an optional RFC 3161 token over the
    signature value, already obtained by the caller.
    """
    if len(data_hash) != 32:
        raise SealFormatError(
            f"dataHash must be an SM3 digest (32 bytes), got {len(data_hash)}", field="dataHash"
        )
    try:
        seal = SESeal.load(seal_der, strict=True)
        seal.native  # noqa: B018 - parse everything now: a bad seal fails here, not later
    except (ValueError, TypeError) as exc:
        raise SealFormatError(f"the seal is not a DER SESeal: {exc}", field="eseal") from exc
    tbs = TBSSign(
        {
            "version": SES_VERSION,
            "eseal": seal,
            "timeInfo": _gtime(signing_time, "timeInfo"),
            "dataHash": data_hash,
            "propertyInfo": _ascii(property_info, "propertyInfo"),
        }
    )
    fields: dict[str, Any] = {
        "toSign": tbs,
        "cert": signer_cert_der,
        "signatureAlgID": OID_SM3_WITH_SM2,
        "signature": key.sign(tbs.dump()),
    }
    if timestamp is not None:
        fields["timeStamp"] = timestamp
    return bytes(SESSignature(fields).dump())


# --- decoding ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DecodedSeal:
    """The fields of an ``SESeal`` (plus the exact bytes the maker signed)."""

    header_id: str
    version: int
    vid: str
    es_id: str
    seal_type: int
    name: str
    cert_list_type: int
    certs: tuple[bytes, ...]
    """Signer certificates (certListType 1), else empty."""
    cert_digests: tuple[tuple[str, bytes], ...]
    """(digest algorithm, digest) pairs (certListType 2), else empty."""
    create_date: dt.datetime
    valid_start: dt.datetime
    valid_end: dt.datetime
    picture: SealPicture
    maker_cert: bytes
    sign_alg: str
    signed_value: bytes
    seal_info_der: bytes
    """``DER(SES_SealInfo)`` as found in the seal: what the maker's signature covers."""


@dataclass(frozen=True)
class DecodedSignature:
    """The fields of an ``SES_Signature`` (plus the exact bytes the signer signed)."""

    version: int
    seal: DecodedSeal
    seal_der: bytes
    time_info: dt.datetime
    data_hash: bytes
    property_info: str
    signer_cert: bytes
    signature_alg: str
    signature: bytes
    timestamp: bytes | None
    tbs_der: bytes
    """``DER(TBS_Sign)`` as found: what the signer's signature covers."""


def _decode_seal_value(seal: SESeal) -> DecodedSeal:
    info = seal["eSealInfo"]
    prop = info["property"]
    pic = info["picture"]
    cert_list_type = int(prop["certListType"].native)
    if cert_list_type not in (CERT_LIST_CERTS, CERT_LIST_DIGESTS):
        raise SealFormatError(f"certListType {cert_list_type} is not 1 or 2", field="certListType")
    parsed_list = prop["certList"]  # already typed by _cert_list_spec
    certs: tuple[bytes, ...] = ()
    digests: tuple[tuple[str, bytes], ...] = ()
    if cert_list_type == CERT_LIST_CERTS:
        certs = tuple(bytes(c.native) for c in parsed_list)
    else:
        digests = tuple((str(d["type"].native), bytes(d["value"].native)) for d in parsed_list)
    return DecodedSeal(
        header_id=info["header"]["id"].native,
        version=int(info["header"]["version"].native),
        vid=info["header"]["vid"].native,
        es_id=info["esID"].native,
        seal_type=int(prop["type"].native),
        name=prop["name"].native,
        cert_list_type=cert_list_type,
        certs=certs,
        cert_digests=digests,
        create_date=prop["createDate"].native,
        valid_start=prop["validStart"].native,
        valid_end=prop["validEnd"].native,
        picture=SealPicture(
            type=pic["type"].native,
            data=bytes(pic["data"].native),
            width_mm=int(pic["width"].native),
            height_mm=int(pic["height"].native),
        ),
        maker_cert=bytes(seal["cert"].native),
        sign_alg=seal["signAlgID"].dotted,
        signed_value=bytes(seal["signedValue"].native),
        seal_info_der=bytes(info.dump()),
    )


def decode_seal(der: bytes) -> DecodedSeal:
    """Decode a DER ``SESeal``; raises :class:`SealFormatError` if it is not one."""
    try:
        return _decode_seal_value(SESeal.load(der, strict=True))
    except SealFormatError:
        raise
    except (ValueError, TypeError, KeyError) as exc:
        raise SealFormatError(f"not a DER SESeal: {exc}") from exc


def decode_signature(der: bytes) -> DecodedSignature:
    """Decode a DER ``SES_Signature``; raises :class:`SealFormatError` if it is not one."""
    try:
        sig = SESSignature.load(der, strict=True)
        tbs = sig["toSign"]
        stamp = sig["timeStamp"] if sig["timeStamp"].native is not None else sig["timeStampTagged"]
        return DecodedSignature(
            version=int(tbs["version"].native),
            seal=_decode_seal_value(tbs["eseal"]),
            seal_der=bytes(tbs["eseal"].dump()),
            time_info=tbs["timeInfo"].native,
            data_hash=bytes(tbs["dataHash"].native),
            property_info=tbs["propertyInfo"].native,
            signer_cert=bytes(sig["cert"].native),
            signature_alg=sig["signatureAlgID"].dotted,
            signature=bytes(sig["signature"].native),
            timestamp=bytes(stamp.native) if stamp.native is not None else None,
            tbs_der=bytes(tbs.dump()),
        )
    except SealFormatError:
        raise
    except (ValueError, TypeError, KeyError) as exc:
        raise SealFormatError(f"not a DER SES_Signature: {exc}") from exc
