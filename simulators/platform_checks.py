"""Item checks shared by the platform simulators (provincial and national), independent of the hub.

- :class:`ItemRejected` carries a receipt's ``error_code`` and message.
- :class:`SchemaFile` compiles a JSON Schema from ``schemas/`` on first use; a
  relative ``$ref`` (``case.schema.json``) is found by file name in the same
  folder, the way the OpenAPI contracts reference them. Violations come back as
  ``<field path>: <message>`` so a receipt names the offending field. A pre-check
  compiled from the same schema (:mod:`simulators.schema_fast`) passes the items
  that are certainly valid; jsonschema judges every other one.
- :func:`check_case_item` checks one case-record batch item (both platforms).

Case business rules (error code ``BUSINESS_RULE``), over the canonical case
codes of ``schemas/codelists/case_states.json`` / ``case_results.json``:

1. a ``completed`` (已办结) case carries SLSJ (受理时间), BJSJ (办结时间) and BJJG (办结结果);
2. the times that are set are in order: SBSJ ≤ SLSJ ≤ SPSJ ≤ BJSJ (in particular
   BJSJ is not earlier than SLSJ);
3. BJJG ``granted`` (准予许可) only on a finished case (BJZT ``decided`` or ``completed``).

Pure functions and one validator per schema file (built on first use, or at a
server's start-up): no network, no clock.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import msgspec

from simulators.schema_fast import compile_precheck, never_sure

log = logging.getLogger(__name__)

CST = timezone(timedelta(hours=8))
"""China Standard Time: the platforms' calendar days."""
SCHEMAS_DIR = Path(__file__).resolve().parent.parent / "schemas"
FINISHED_STATES = frozenset({"decided", "completed"})
_CASE_TIMES = ("SBSJ", "SLSJ", "SPSJ", "BJSJ")


class ItemRejected(Exception):
    """One batch item failed a check; ``code`` is the receipt's ``error_code``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Checked:
    """A batch item that passed every content check (idempotency comes later).

    ``identity`` is what CONFLICT is decided on; ``version`` None asks the store
    for the next version of ``identifier`` (seal registrations).
    """

    idempotency_key: str
    identifier: str
    version: int | None
    identity: str
    fingerprint: str
    payload_json: str
    extra: dict[str, Any] = field(default_factory=dict)
    division: str = ""
    blob: bytes | None = None


_SORTED = msgspec.json.Encoder(order="sorted")


def canonical_json(value: Any) -> str:
    """Sorted keys, no spaces, UTF-8 kept: the bytes fingerprints are computed over.

    What ``json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))``
    gives, byte for byte. msgspec writes exactly that for strings, integers, booleans,
    null, lists and string-keyed objects (in C, ten times faster); a value holding
    anything else (a float: ``1e+16`` vs ``1e16``) goes to ``json.dumps`` itself."""
    if plain_json(value):
        try:
            return _SORTED.encode(value).decode()
        except UnicodeEncodeError:  # a lone surrogate: json.dumps keeps it (and fails later)
            pass
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def plain_json(value: Any) -> bool:
    """Only str / int / bool / None, in lists and objects with string keys: values that
    msgspec encodes byte for byte as ``json.dumps`` does."""
    cls = value.__class__
    if cls in _SCALARS:
        return True
    if cls is dict:
        for k, v in value.items():
            if k.__class__ is not str or (v.__class__ not in _SCALARS and not plain_json(v)):
                return False
        return True
    if cls is list:
        return all(v.__class__ in _SCALARS or plain_json(v) for v in value)
    return False


_SCALARS = frozenset({str, int, bool, type(None)})


def decode_json(raw: bytes | str) -> Any:
    """``json.loads(raw)``, by msgspec when it can (the same result, five times faster);
    what msgspec refuses (``NaN``, ``1e400``, a lone surrogate escape, a BOM) is left to
    ``json.loads``, which decides and words any error as before."""
    try:
        return msgspec.json.decode(raw)
    except msgspec.MsgspecError:
        return json.loads(raw)


def fingerprint_of(*parts: str) -> str:
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


class SchemaFile:
    """A JSON Schema file compiled on first use (thread-safe); None when the file is absent."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._validator: Any = None
        self._precheck: Callable[[Any], bool] = never_sure
        self._lock = threading.Lock()

    def load(self) -> Any:
        with self._lock:
            if self._validator is None and self.path.is_file():
                import jsonschema
                from referencing import Registry, Resource

                folder = self.path.parent

                @functools.cache  # a $ref is resolved per validated item: read each file once
                def read(name: str) -> Any:
                    hits = sorted(folder.rglob(name))
                    if not hits:
                        raise LookupError(f"schema {name!r} not found under {folder}")
                    return json.loads(hits[0].read_text("utf-8"))

                @functools.cache
                def retrieve(uri: str) -> Resource:
                    name = uri.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1].split("#", 1)[0]
                    return Resource.from_contents(read(name))

                schema = json.loads(self.path.read_text("utf-8"))
                cls = jsonschema.validators.validator_for(schema)
                self._validator = cls(
                    schema,
                    registry=Registry(retrieve=retrieve),  # type: ignore[call-arg]
                    format_checker=cls.FORMAT_CHECKER,
                )
                # Valid items are the rule: a compiled pre-check says "certainly valid"
                # in a few microseconds; anything else is left to jsonschema.
                self._precheck = compile_precheck(schema, self.path.name, read, cls)
                log.info("platform simulator: schema loaded from %s", self.path)
            return self._validator

    @property
    def source(self) -> str:
        return str(self.path) if self.load() is not None else "builtin"

    def problems(self, instance: Any) -> list[str]:
        """At most five ``path: message`` lines; a missing file is a setup error."""
        validator = self._validator or self.load()
        if validator is None:
            raise FileNotFoundError(f"schema file {self.path} is missing")
        if self._precheck(instance):
            return []
        return format_errors(validator.iter_errors(instance))


def format_errors(errors: Any) -> list[str]:
    ordered = sorted(errors, key=lambda e: [str(p) for p in e.absolute_path])
    return [
        f"{'/'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}" for e in ordered[:5]
    ]


def validate_item(schema: SchemaFile, item: dict[str, Any]) -> None:
    problems = schema.problems(item)
    if problems:
        raise ItemRejected("SCHEMA", "; ".join(problems))


def _instant(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def case_rule_problem(case: dict[str, Any]) -> str | None:
    """The first case business rule (module docstring) the record breaks, or None."""
    state, result = case.get("BJZT"), case.get("BJJG")
    if state == "completed":
        missing = [c for c in ("SLSJ", "BJSJ", "BJJG") if case.get(c) is None]
        if missing:
            return f"a completed case (BJZT completed) must carry {', '.join(missing)}"
    seen = [(c, _instant(case.get(c))) for c in _CASE_TIMES]
    timeline = [(c, t) for c, t in seen if t is not None]
    for (c1, t1), (c2, t2) in itertools.pairwise(timeline):
        if t2 < t1:
            return f"{c2} {case[c2]} is earlier than {c1} {case[c1]}"
    if result == "granted" and state not in FINISHED_STATES:
        return f"BJJG granted on a case that is not finished (BJZT {state})"
    return None


def check_case_item(key: str, item: dict[str, Any], *, schema: SchemaFile) -> Checked:
    """Schema (``schemas/case_item.schema.json``), then the case business rules."""
    validate_item(schema, item)
    case = item["case"]
    problem = case_rule_problem(case)
    if problem is not None:
        raise ItemRejected("BUSINESS_RULE", problem)
    payload = canonical_json(case)
    return Checked(
        idempotency_key=key,
        identifier=case["BJBH"],
        version=case["BBH"],
        identity=f"{case['BJBH']}|{case['BBH']}",
        fingerprint=fingerprint_of(payload),
        payload_json=payload,
        division=case["XZQHDM"],
    )
