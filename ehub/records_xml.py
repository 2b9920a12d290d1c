"""The XML form of the canonical records (``<DZZZ xmlns="urn:ehub:license:1">``,
``<BJ xmlns="urn:ehub:case:1">``; XSDs in ``schemas/``), and the hardened parser
every untrusted XML record goes through.

Element per field code, in the order of the field specifications of
:mod:`ehub.records`; a null field is an absent element. Parsing checks structure
and types (unknown or repeated elements are rejected) and raises
:class:`ehub.errors.RecordError`, as the JSON form's loaders do.
"""

from __future__ import annotations

import re
from typing import Any

from lxml import etree

from ehub.records import (
    _CASE_SPEC,
    _LICENSE_SPEC,
    _LINEAGE_KEYS,
    _SEAL_KEYS,
    CASE_NS,
    LICENSE_NS,
    CaseRecord,
    License,
    _bad,
    _need,
    _Spec,
    case_from_json,
    case_to_json,
    license_from_json,
    license_to_json,
)

__all__ = [
    "MAX_XML_BYTES",
    "case_from_xml",
    "case_to_xml",
    "license_from_xml",
    "license_to_xml",
    "parse_xml",
]


def _to_xml(doc: dict[str, Any], spec: _Spec, ns: str, root_name: str) -> bytes:
    q = f"{{{ns}}}"
    root = etree.Element(q + root_name, nsmap={None: ns})
    try:
        for _, code, kind in spec:
            v = doc[code]
            if v is None:
                continue  # absent element = null
            if kind == "kz":
                kz = etree.SubElement(root, q + code)
                for k, val in v.items():
                    etree.SubElement(kz, q + "Item", code=k).text = val
            elif kind == "ids":
                ids = etree.SubElement(root, q + code)
                for x in v:
                    etree.SubElement(ids, q + "ZZBS").text = x
            elif kind == "lineage":
                etree.SubElement(root, q + code, {k: v[k] for k in _LINEAGE_KEYS})
            elif kind == "qz":
                qz = etree.SubElement(root, q + code)
                for s in v:
                    etree.SubElement(qz, q + "Seal", {c: s[c] for _, c in _SEAL_KEYS})
            else:
                etree.SubElement(root, q + code).text = str(v)
    except ValueError as exc:  # lxml refuses control characters and the like
        raise _bad(
            "E_VALUE_INVALID",
            root_name,
            f"value not representable in XML: {exc}",
            "字段值含有XML不允许的字符",
        ) from exc
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


def _parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


MAX_XML_BYTES = 4 * 1024 * 1024
"""Largest XML record accepted; a single license or case record is a few kB."""


def parse_xml(data: bytes) -> etree._Element:
    """Parse untrusted XML with a hardened parser; DOCTYPEs and oversize input are refused."""
    if not isinstance(data, bytes | bytearray) or len(data) > MAX_XML_BYTES:
        raise _bad(
            "E_SCHEMA_INVALID",
            "xml",
            f"XML must be bytes of at most {MAX_XML_BYTES}",
            "XML过大或类型错误",
        )
    try:
        root = etree.fromstring(bytes(data), parser=_parser())
    except (etree.XMLSyntaxError, ValueError) as exc:
        raise _bad("E_SCHEMA_INVALID", "xml", f"malformed XML: {exc}", "XML格式错误") from exc
    if root.getroottree().docinfo.doctype:
        raise _bad(
            "E_SCHEMA_INVALID", "xml", "DOCTYPE declarations are not accepted", "不接受DOCTYPE声明"
        )
    return root


def _from_xml(data: bytes, spec: _Spec, ns: str, root_name: str) -> dict[str, Any]:
    root = parse_xml(data)
    q = f"{{{ns}}}"
    if root.tag != q + root_name:
        raise _bad(
            "E_SCHEMA_INVALID",
            "xml",
            f"root must be {{{ns}}}{root_name}",
            "XML根元素错误",
            root.tag,
        )
    kinds = {code: kind for _, code, kind in spec}
    doc: dict[str, Any] = {code: None for code, kind in kinds.items() if kind.startswith("o")}
    seen: set[str] = set()
    for el in root:
        if not isinstance(el.tag, str):
            continue  # comments and processing instructions
        code = el.tag[len(q) :] if el.tag.startswith(q) else el.tag
        kind = kinds.get(code) if el.tag.startswith(q) else None
        if kind is None or code in seen:
            why = "unknown" if kind is None else "repeated"
            raise _bad("E_SCHEMA_INVALID", code, f"{why} element", "未知或重复的元素", el.tag)
        seen.add(code)
        if kind == "kz":
            doc[code] = {i.get("code", ""): i.text or "" for i in el if i.tag == q + "Item"}
        elif kind == "ids":
            doc[code] = [i.text or "" for i in el if i.tag == q + "ZZBS"]
        elif kind == "lineage":
            doc[code] = dict(el.attrib)
        elif kind == "qz":
            doc[code] = [dict(s.attrib) for s in el if s.tag == q + "Seal"]
        elif kind in ("int", "oint"):
            # int() would also take "+1", " 1" and "1_0"; XML integers are plain digits.
            _need(
                re.fullmatch(r"-?[0-9]{1,18}", el.text or "") is not None, code, "integer", el.text
            )
            doc[code] = int(el.text or "")
        else:
            doc[code] = el.text or ""
    doc.pop("CZZTDMLX", None)
    return doc


def license_to_xml(lic: License) -> bytes:
    """UTF-8 ``<DZZZ xmlns="urn:ehub:license:1">``; null fields are absent elements."""
    return _to_xml(license_to_json(lic), _LICENSE_SPEC, LICENSE_NS, "DZZZ")


def license_from_xml(data: bytes) -> License:
    """Parse the XML form (hardened parser); RecordError on structure or type errors."""
    return license_from_json(_from_xml(data, _LICENSE_SPEC, LICENSE_NS, "DZZZ"))


def case_to_xml(case: CaseRecord) -> bytes:
    """UTF-8 ``<BJ xmlns="urn:ehub:case:1">``; null fields are absent elements."""
    return _to_xml(case_to_json(case), _CASE_SPEC, CASE_NS, "BJ")


def case_from_xml(data: bytes) -> CaseRecord:
    """Parse the XML form of a case record (hardened parser)."""
    return case_from_json(_from_xml(data, _CASE_SPEC, CASE_NS, "BJ"))
