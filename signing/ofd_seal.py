"""Seal an OFD package with a GB/T 38540 SM2 electronic seal (STANDARDS.md §4–5).

:func:`seal_ofd` adds one seal to an OFD package and returns the new package:

- ``Doc_0/Signs/Signatures.xml`` lists ``<ofd:Signature ID Type="Seal" BaseLoc>``
  (created, and pointed to from ``OFD.xml``'s ``DocBody/Signatures``, on the
  first seal);
- ``Doc_0/Signs/Sign_N/Seal.esl``: the DER ``SESeal`` as the seal maker made it;
- ``Doc_0/Signs/Sign_N/Signature.xml``: ``SignedInfo`` (Provider,
  SignatureMethod ``1.2.156.10197.1.501``, SignatureDateTime, ``References``
  with CheckMethod ``1.2.156.10197.1.401`` (SM3) and one ``Reference`` +
  base64 ``CheckValue`` per protected file, ``StampAnnot`` with PageRef and
  Boundary, ``Seal/BaseLoc``) and ``SignedValue``;
- ``Doc_0/Signs/Sign_N/SignedValue.dat``: the DER ``SES_Signature`` whose
  ``dataHash`` is the SM3 of the ``Signature.xml`` bytes and whose
  ``propertyInfo`` is that file's path.

Protected files: every file in the package at signing time (``OFD.xml`` with
its metadata, pages, resources, fonts, earlier seals and this seal's
``Seal.esl``) except ``Signatures.xml``, which a later seal must be able to
extend. The seal picture is shown by readers at the ``StampAnnot``; it is
taken from the seal itself, never from the page.

The signing time is an argument (default: now, UTC): this is the sealing edge,
where the clock is read once. The key is any :class:`signing.sm2.Sm2Signer`.
"""

from __future__ import annotations

import base64
import datetime as dt
import posixpath
import time
from collections.abc import Sequence

from lxml import etree

from signing import ses
from signing.errors import UnsealableDocument
from signing.ofd_package import (
    NSMAP,
    OFD_ENTRY,
    OfdPackageError,
    parse_xml,
    q,
    read_package,
    resolve,
    to_xml,
    write_package,
)
from signing.ofd_writer import SEAL_BOX_MM
from signing.sm2 import OID_SM3, OID_SM3_WITH_SM2, Sm2Signer, sm3

PROVIDER = "ehub"
SIGNING_TIME_FORMAT = "%Y%m%d%H%M%SZ"
"""``SignatureDateTime`` as written (UTC, the GeneralizedTime form of ``timeInfo``)."""


def _n(value: float) -> str:
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return text or "0"


def default_boundary(seal_der: bytes) -> tuple[float, float, float, float]:
    """The seal picture's size (mm, at most the seal area) centred in the seal area."""
    picture = ses.decode_seal(seal_der).picture
    x, y, w, h = SEAL_BOX_MM
    pw, ph = min(float(picture.width_mm), w), min(float(picture.height_mm), h)
    return (x + (w - pw) / 2, y + (h - ph) / 2, pw, ph)


def seal_ofd(
    ofd_bytes: bytes,
    seal_der: bytes,
    signer_key: Sm2Signer,
    signer_cert_der: bytes,
    *,
    page: int = 0,
    boundary: tuple[float, float, float, float] | None = None,
    signing_time: dt.datetime | None = None,
) -> bytes:
    """The OFD package with one more SM2 seal (``Type="Seal"``) on page ``page``.

    ``boundary`` is the stamp's (x, y, width, height) in mm on that page
    (default :func:`default_boundary`). Raises :class:`UnsealableDocument` when
    the package is not a readable OFD or has no such page, and
    :class:`signing.errors.SealFormatError` when ``seal_der`` is not an SESeal.
    """
    moment = (signing_time or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).replace(microsecond=0)
    stamp_box = boundary or default_boundary(seal_der)
    try:
        entries = read_package(ofd_bytes)
        ofd_root = parse_xml(entries[OFD_ENTRY], OFD_ENTRY)
        body = ofd_root.find(q("DocBody"))
        doc_root_el = body.find(q("DocRoot")) if body is not None else None
        if body is None or doc_root_el is None or not doc_root_el.text:
            raise UnsealableDocument("OFD.xml has no DocBody/DocRoot")
        doc_entry = resolve(doc_root_el.text, OFD_ENTRY)
        document = parse_xml(entries[doc_entry], doc_entry)
        pages = document.findall(f"{q('Pages')}/{q('Page')}")
        if not 0 <= page < len(pages):
            raise UnsealableDocument(f"the document has {len(pages)} page(s), no page {page}")
        page_id = pages[page].get("ID") or ""
        signs_el = body.find(q("Signatures"))
        if signs_el is not None and signs_el.text:
            list_entry = resolve(signs_el.text, OFD_ENTRY)
        else:
            list_entry = posixpath.join(posixpath.dirname(doc_entry), "Signs", "Signatures.xml")
            signs_el = etree.Element(q("Signatures"), nsmap=NSMAP)
            signs_el.text = list_entry
            doc_root_el.addnext(signs_el)  # DocBody order: DocInfo, DocRoot, Versions, Signatures
            entries[OFD_ENTRY] = to_xml(ofd_root)
        if list_entry in entries:
            listing = parse_xml(entries[list_entry], list_entry)
        else:
            listing = etree.Element(q("Signatures"), nsmap=NSMAP)
            etree.SubElement(listing, q("MaxSignId")).text = "0"
    except KeyError as exc:
        raise UnsealableDocument(f"the OFD package lacks {exc.args[0]}") from exc
    except OfdPackageError as exc:
        raise UnsealableDocument(f"not a readable OFD package: {exc}") from exc

    n = 0
    signs_dir = posixpath.dirname(list_entry)
    while any(e.startswith(f"{signs_dir}/Sign_{n}/") for e in entries):
        n += 1
    sign_dir = f"{signs_dir}/Sign_{n}"
    seal_entry, sig_entry = f"{sign_dir}/Seal.esl", f"{sign_dir}/Signature.xml"
    value_entry = f"{sign_dir}/SignedValue.dat"
    entries[seal_entry] = seal_der

    signature = etree.Element(q("Signature"), nsmap=NSMAP)
    info = etree.SubElement(signature, q("SignedInfo"))
    etree.SubElement(info, q("Provider"), ProviderName=PROVIDER, Version="1.0", Company=PROVIDER)
    etree.SubElement(info, q("SignatureMethod")).text = OID_SM3_WITH_SM2
    etree.SubElement(info, q("SignatureDateTime")).text = moment.strftime(SIGNING_TIME_FORMAT)
    refs = etree.SubElement(info, q("References"), CheckMethod=OID_SM3)
    for name in sorted(entries):
        if name == list_entry:
            continue
        ref = etree.SubElement(refs, q("Reference"), FileRef=f"/{name}")
        etree.SubElement(ref, q("CheckValue")).text = base64.b64encode(sm3(entries[name])).decode()
    annot = etree.SubElement(info, q("StampAnnot"), ID="1", PageRef=page_id)
    annot.set("Boundary", " ".join(_n(v) for v in stamp_box))
    seal_el = etree.SubElement(info, q("Seal"))
    etree.SubElement(seal_el, q("BaseLoc")).text = f"/{seal_entry}"
    etree.SubElement(signature, q("SignedValue")).text = f"/{value_entry}"
    signature_xml = to_xml(signature)

    entries[sig_entry] = signature_xml
    entries[value_entry] = ses.make_signature(
        seal_der,
        sm3(signature_xml),
        signer_cert_der,
        signer_key,
        signing_time=moment,
        property_info=f"/{sig_entry}",
    )
    max_el = listing.find(q("MaxSignId"))
    if max_el is None:
        max_el = etree.Element(q("MaxSignId"), nsmap=NSMAP)
        listing.insert(0, max_el)
    try:
        sign_id = int(max_el.text or "0") + 1
    except ValueError:
        sign_id = len(listing.findall(q("Signature"))) + 1
    max_el.text = str(sign_id)
    etree.SubElement(listing, q("Signature"), ID=str(sign_id), Type="Seal", BaseLoc=f"/{sig_entry}")
    entries[list_entry] = to_xml(listing)
    return write_package(entries)


def ofd_seal_per_s(n: int = 50) -> float:
    """Rough throughput of render OFD + SM2 seal, per second, on one core.

    Each iteration writes a license with a new number and holder name and
    clears the font-subset cache, so the subset is rebuilt every time (the
    worst case: in production, documents with the same characters share one).
    """
    from signing import ofd_font
    from signing.ofd_writer import write_license_ofd
    from signing.sm2_cert import make_dev_sm2_pki

    start = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    pki = make_dev_sm2_pki(start)
    picture = ses.SealPicture("PNG", b"\x89PNG\r\n\x1a\n", 40, 40)
    seal = ses.make_seal(
        ses.SealSpec(
            es_id="bench",
            name="电子证照专用章",
            signer_certs=[pki.signer_cert],
            picture=picture,
            create_date=start,
            valid_start=start,
            valid_end=start + dt.timedelta(days=3650),
        ),
        maker_key=pki.maker_key,
        maker_cert=pki.maker_cert,
    )
    holders: Sequence[str] = ("甲", "乙", "丙", "丁", "戊", "己", "庚", "辛")
    began = time.perf_counter()
    for i in range(n):
        ofd_font.font_subset.cache_clear()
        document = {
            **BENCH_DOCUMENT,
            "ZZBH": f"SD{i:012d}",
            "CZZT": f"济南{holders[i % len(holders)]}示例科技有限公司",
        }
        ofd = write_license_ofd(document, verify_url="https://hub.example/verify")
        seal_ofd(ofd, seal, pki.signer_key, pki.signer_cert, signing_time=start)
    return n / (time.perf_counter() - began)


BENCH_DOCUMENT = {
    "ZZBS": "1.2.156.3005.2.11100000000013338W001.11370000MB1234562A.2024000001.001.X",
    "ZZLXDM": "11100000000013338W001",
    "ZZMC": "营业执照",
    "ZZBH": "SD202400000001",
    "ZZBFJG": "济南市历下区市场监督管理局",
    "ZZBFJGDM": "11370000MB1234562A",
    "ZZBFRQ": "2024-05-20",
    "ZZYXQQSRQ": "2024-05-20",
    "ZZYXQJZRQ": None,
    "CZZT": "济南市历下区泉城路示例科技有限公司",
    "CZZTDM": "91370102MA3C5ABC1X",
    "CZZTDMLXDM": "001",
    "BBH": 1,
    "KZ": {
        "KZ_QYLX": "有限责任公司（自然人投资或控股）",
        "KZ_FDDBR": "张三",
        "KZ_ZCZB": "壹佰万元整",
        "KZ_ZS": "山东省济南市历下区泉城路188号示例大厦12层1201室",
        "KZ_JYFW": "技术服务、技术开发、技术咨询；软件开发；数据处理服务。",
    },
}
"""A business license in the hub's JSON form (illustrative values), for the figure and tests."""


__all__ = ["BENCH_DOCUMENT", "default_boundary", "ofd_seal_per_s", "seal_ofd"]
