"""License templates: how each license type is laid out and sealed.

One JSON file per license type in ``schemas/templates/`` gives the page title,
the words the type uses for its holder (名称 / 姓名 / 建设单位…), the surface
fields (KZ_*) shown and their labels in display order, and the PAdES level the
type is sealed at (B-B, B-T or B-LT). A type without a template is rendered
with the generic layout: its name as title, every surface field by code.

:func:`license_view` turns a license document (the hub's JSON form) into the
display strings :func:`signing.render.render_license_pdf` lays out.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal

from ehub.errors import ConfigError
from signing.render import LicenseView

Level = Literal["B-B", "B-T", "B-LT"]
LEVELS: tuple[Level, ...] = ("B-B", "B-T", "B-LT")
SealFormat = Literal["pades", "ofd"]
SEAL_FORMATS: tuple[SealFormat, ...] = ("pades", "ofd")


@dataclass(frozen=True, slots=True)
class LicenseTemplate:
    type_code: str
    title: str
    holder_label: str = "持证主体"
    holder_code_label: str = "持证主体代码"
    fields: tuple[tuple[str, str], ...] = ()
    """(surface code, label) in display order; empty = every surface field by code."""
    pades_level: Level = "B-B"
    seal_formats: tuple[SealFormat, ...] = ("pades",)
    """The sealed documents issued: a PAdES PDF, an OFD with an SM2 seal, or both."""


def _seal_formats(value: Any) -> tuple[SealFormat, ...]:
    if not isinstance(value, list) or not value:
        raise ValueError(
            f"seal_formats must be a non-empty list of {', '.join(SEAL_FORMATS)}, not {value!r}"
        )
    out: list[SealFormat] = []
    for item in value:
        if item not in SEAL_FORMATS:
            raise ValueError(f"seal_formats: {item!r} is not one of {', '.join(SEAL_FORMATS)}")
        if item in out:
            raise ValueError(f"seal_formats: {item!r} given twice")
        out.append(item)
    return tuple(f for f in SEAL_FORMATS if f in out)  # a fixed order, whatever the file's


def _parse(name: str, data: dict[str, Any]) -> LicenseTemplate:
    try:
        level = data.get("pades_level", "B-B")
        if level not in LEVELS:
            raise ValueError(f"pades_level must be one of {', '.join(LEVELS)}, not {level!r}")
        fields = tuple((str(f["code"]), str(f["label"])) for f in data.get("fields", []))
        bad = [c for c, _ in fields if not c.startswith("KZ_")]
        if bad:
            raise ValueError(f"fields must be surface fields (KZ_*): {', '.join(bad)}")
        return LicenseTemplate(
            type_code=str(data["type_code"]),
            title=str(data["title"]),
            holder_label=str(data.get("holder_label", "持证主体")),
            holder_code_label=str(data.get("holder_code_label", "持证主体代码")),
            fields=fields,
            pades_level=level,
            seal_formats=_seal_formats(data.get("seal_formats", ["pades"])),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"license template {name}: {exc}") from exc


@functools.cache
def templates() -> dict[str, LicenseTemplate]:
    """Every shipped template by license type code."""
    out: dict[str, LicenseTemplate] = {}
    folder = resources.files("schemas") / "templates"
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".json"):
            continue
        try:
            data = json.loads(entry.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise ConfigError(f"license template {entry.name}: not JSON: {exc}") from exc
        tpl = _parse(entry.name, data)
        if tpl.type_code in out:
            raise ConfigError(f"license template {entry.name}: type {tpl.type_code} twice")
        out[tpl.type_code] = tpl
    return out


def template_for(type_code: str, type_name: str = "") -> LicenseTemplate:
    """The type's template, or the generic one titled with the type's name."""
    return templates().get(type_code) or LicenseTemplate(type_code, type_name or "电子证照")


def license_view(doc: dict[str, Any], *, seal_label: str = "", verify_url: str = "") -> LicenseView:
    """Display strings of a license document in its type's template.

    ``verify_url`` is the verification endpoint's base: the QR code leads to
    ``<verify_url>/<identifier>`` (no QR code when empty).
    """
    tpl = template_for(doc["ZZLXDM"], doc.get("ZZMC", ""))
    kz: dict[str, str] = dict(doc.get("KZ") or {})
    if tpl.fields:
        surface = tuple((label, kz[code]) for code, label in tpl.fields if kz.get(code))
    else:
        surface = tuple((code, value) for code, value in sorted(kz.items()) if value)
    until = doc.get("ZZYXQJZRQ") or "长期"
    return LicenseView(
        title=tpl.title,
        identifier=doc["ZZBS"],
        number=doc["ZZBH"],
        holder_name=doc["CZZT"],
        holder_code=doc["CZZTDM"],
        issuer_name=doc["ZZBFJG"],
        issue_date=_zh_date(doc["ZZBFRQ"]),
        validity=f"{_zh_date(doc['ZZYXQQSRQ'])}至{_zh_date(until)}",
        surface=surface,
        seal_label=seal_label,
        verify_url=f"{verify_url}/{doc['ZZBS']}" if verify_url else "",
        holder_label=tpl.holder_label,
        holder_code_label=tpl.holder_code_label,
    )


def _zh_date(value: str) -> str:
    """2024-05-20 → 2024年05月20日 (other text, e.g. 长期, as it is)."""
    if len(value) == 10 and value[4] == "-" and value[7] == "-":
        return f"{value[:4]}年{value[5:7]}月{value[8:]}日"
    return value
