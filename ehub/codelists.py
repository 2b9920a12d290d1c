"""Closed vocabularies of the hub, read from ``schemas/codelists/*.json``.

Every code list file has the shape
``{"name", "unconfirmed", "source", "codes": [{"code", "zh", "en", ...}]}``;
extra keys of an entry (a division's ``level`` and ``parent``, a per-entry
``unconfirmed`` flag) are kept in :attr:`CodeEntry.extra`. Lists marked
``unconfirmed`` have no official text behind them: they are configurable
defaults, so code must consult them instead of hard-coding literals.

Loading is lazy and cached; nothing here touches the network or the clock.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import schemas
from ehub.errors import ConfigError, RecordError

__all__ = ["NAMES", "CodeEntry", "CodeList", "load", "reason_fix", "reason_message"]

NAMES = (
    "license_status",
    "holder_code_types",
    "license_types",
    "case_types",
    "applicant_types",
    "channels",
    "case_states",
    "case_results",
    "evaluations",
    "reason_codes",
    "divisions_37",
)
"""The code lists the hub ships."""

_NAME_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")


@dataclass(frozen=True, slots=True)
class CodeEntry:
    """One code of a code list."""

    code: str
    zh: str
    """Chinese name (the name used on the platforms)."""
    en: str
    """English name; the Chinese name where the file has none."""
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=False)
    """Entry keys beyond code/zh/en, read-only."""


@dataclass(frozen=True, slots=True)
class CodeList:
    """A loaded code list; ``code in codelist`` tests membership."""

    name: str
    unconfirmed: bool
    """True when no official text confirms the list: a configurable default."""
    source: str
    entries: tuple[CodeEntry, ...]
    meta: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=False)
    """File-level keys beyond name/unconfirmed/source/codes, read-only."""
    _index: Mapping[str, CodeEntry] = field(
        default_factory=dict, hash=False, compare=False, repr=False
    )

    @property
    def codes(self) -> tuple[str, ...]:
        """The codes, in file order."""
        return tuple(e.code for e in self.entries)

    def __contains__(self, code: object) -> bool:
        return isinstance(code, str) and code in self._index

    def __iter__(self) -> Iterator[CodeEntry]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, code: str) -> CodeEntry | None:
        """The entry of ``code``, or None."""
        return self._index.get(code)

    def entry(self, code: str, field: str = "") -> CodeEntry:
        """The entry of ``code``; RecordError(``E_CODE_UNKNOWN``) if absent."""
        e = self._index.get(code)
        if e is None:
            raise RecordError(
                "E_CODE_UNKNOWN",
                field or self.name,
                f"code {code!r} is not in code list {self.name}",
                f"代码 {code!r} 不在代码表 {self.name} 中",
                value=code,
            )
        return e

    def check(self, code: str, field: str = "") -> str:
        """Return ``code`` if listed, else raise RecordError(``E_CODE_UNKNOWN``)."""
        return self.entry(code, field).code

    def zh(self, code: str) -> str:
        """Chinese name of ``code``; RecordError(``E_CODE_UNKNOWN``) if absent."""
        return self.entry(code).zh

    def en(self, code: str) -> str:
        """English name of ``code``; RecordError(``E_CODE_UNKNOWN``) if absent."""
        return self.entry(code).en


@functools.cache
def load(name: str) -> CodeList:
    """Load the code list ``schemas/codelists/<name>.json`` (cached).

    Raises ConfigError if the list is missing or malformed.
    """
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ConfigError(f"code list name {name!r} is not a valid name")
    try:
        raw = schemas.path(f"codelists/{name}.json").read_text(encoding="utf-8")
        doc = json.loads(raw)
    except FileNotFoundError as exc:
        raise ConfigError(f"code list {name!r} is not shipped in schemas/codelists") from exc
    except (OSError, ValueError) as exc:
        raise ConfigError(f"code list {name!r} cannot be read: {exc}") from exc
    return _parse(name, doc)


def _parse(name: str, doc: Any) -> CodeList:
    def bad(why: str) -> ConfigError:
        return ConfigError(f"code list {name!r} is malformed: {why}")

    if not isinstance(doc, dict) or doc.get("name") != name:
        raise bad("top level must be an object whose 'name' matches the file name")
    if not isinstance(doc.get("unconfirmed"), bool) or not isinstance(doc.get("source"), str):
        raise bad("'unconfirmed' must be a boolean and 'source' a string")
    codes = doc.get("codes")
    if not isinstance(codes, list) or not codes:
        raise bad("'codes' must be a non-empty array")
    entries: list[CodeEntry] = []
    index: dict[str, CodeEntry] = {}
    for i, item in enumerate(codes):
        if not isinstance(item, dict):
            raise bad(f"codes[{i}] is not an object")
        code, zh, en = item.get("code"), item.get("zh"), item.get("en", item.get("zh"))
        if not (isinstance(code, str) and code and isinstance(zh, str) and isinstance(en, str)):
            raise bad(f"codes[{i}] needs string 'code' and 'zh' (and 'en' if present)")
        if code in index:
            raise bad(f"code {code!r} is listed twice")
        extra = MappingProxyType({k: v for k, v in item.items() if k not in ("code", "zh", "en")})
        entry = CodeEntry(code, zh, en, extra)
        entries.append(entry)
        index[code] = entry
    meta = MappingProxyType(
        {k: v for k, v in doc.items() if k not in ("name", "unconfirmed", "source", "codes")}
    )
    return CodeList(
        name, doc["unconfirmed"], doc["source"], tuple(entries), meta, MappingProxyType(index)
    )


def reason_message(reason_code: str) -> tuple[str, str]:
    """``(en, zh)`` message of a quarantine reason code."""
    e = load("reason_codes").entry(reason_code, "reason_code")
    return e.en, e.zh


def reason_fix(reason_code: str) -> tuple[str, str]:
    """``(en, zh)`` advice to the department on how to fix a record with ``reason_code``."""
    e = load("reason_codes").entry(reason_code, "reason_code")
    return str(e.extra.get("fix_en", "")), str(e.extra.get("fix_zh", ""))
