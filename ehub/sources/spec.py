"""The source spec: one YAML file per department source, no Python.

A spec says where a department system is (an Airflow connection id — never the
secret itself), how to read it incrementally, and how each canonical field is
computed from the department's fields. It is validated strictly: unknown keys,
unknown target fields, unknown code lists and bad formats are errors that name
the key (see :mod:`ehub.sources.loader` for line and column numbers).

Evaluation order of one field mapping (each step optional)::

    from | const | concat  →  transform (trim, halfwidth, upper, …)  →  regex
    →  lookup (another table or endpoint)  →  codelist  →  date | datetime | integer | split

This module only describes; it reads nothing and connects to nothing.
"""

from __future__ import annotations

import codecs
import re
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ehub import codelists
from ehub.sources.fields import CASE_FIELDS, LICENSE_FIELDS, required_fields

_SLUG = r"^[a-z][a-z0-9_]{1,62}$"

Transform = Literal["trim", "halfwidth", "upper", "lower", "remove_spaces", "strip_zeros"]


class SpecValueError(ValueError):
    """A problem found by a whole-model check, pointing at the key it is about.

    ``loc`` is the key path below the model that raises it (``("mapping", "CZZT")``);
    ``at_key`` shows the problem at the key itself rather than at its value. The
    loader turns both into a line and column.
    """

    def __init__(self, message: str, *loc: str | int, at_key: bool = False) -> None:
        super().__init__(message)
        self.loc = loc
        self.at_key = at_key


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Department(_Model):
    code: str = Field(pattern=_SLUG)
    """Short code used in source ids and DAG ids (``market_regulation``)."""
    name: str = Field(min_length=2)
    """The department's official name (山东省市场监督管理局)."""


class Cursor(_Model):
    field: str | None = None
    """Source field that grows with every change (update time, sequence). Not used by
    ``files`` (file name + row) and ``kafka`` (partition offsets)."""
    type: Literal["timestamp", "date", "integer", "string"] = "timestamp"
    start: str | None = None
    """Read only records with a cursor value at or after this one on the first run."""


class SqlRead(_Model):
    table: str
    """Table or view holding one row per record."""


class RestRead(_Model):
    path: str = Field(pattern=r"^/")
    records: str = "data.items"
    """Dotted path of the record list in each response."""
    pagination: Literal["page", "cursor"] = "page"
    page_size: int = Field(default=100, ge=1, le=10000)
    next_cursor: str = "meta.next_cursor"
    """Dotted path of the next-page cursor (pagination: cursor)."""
    since_param: str = "updated_since"
    """Query parameter that receives the stored watermark."""
    auth_header: str = "Authorization"
    auth_scheme: str = "Bearer"
    params: dict[str, str] = Field(default_factory=dict)


class FilesRead(_Model):
    pattern: str = "*.xml"
    format: Literal["xml", "csv", "xlsx"] = "xml"
    record_tag: str = "Record"
    """XML element holding one record."""
    xsd: str | None = None
    """XSD the department provides; relative to the spec file."""
    sheet: str | None = None
    processed_dir: str = "processed"
    """Relative to the drop folder (no ``..``), or an absolute path."""

    @field_validator("pattern")
    @classmethod
    def _within_folder(cls, v: str) -> str:
        if "/" in v or "\\" in v or ".." in v:
            raise ValueError(f"pattern {v!r} must name files in the drop folder itself "
                             "(no '/', '\\' or '..')")  # fmt: skip
        return v

    @field_validator("processed_dir")
    @classmethod
    def _no_parent(cls, v: str) -> str:
        if ".." in v.replace("\\", "/").split("/"):
            raise ValueError(f"processed_dir {v!r} must not climb out with '..'; "
                             "give an absolute path for a folder elsewhere")  # fmt: skip
        return v


class KafkaRead(_Model):
    topic: str
    group_id: str | None = None
    """Consumer group for lag monitoring; ``ehub.<source id>`` when absent."""


class ApiInbox(_Model):
    """Records the department's issuing system posts to the hub's API (on-demand
    sealing): nothing is pulled; each post is one record, sealed at once."""

    max_body_bytes: int = Field(default=65_536, ge=1_024, le=4_194_304)
    """A larger post is refused (413) before it is read."""
    reclaim_after_s: int = Field(default=600, ge=10)
    """A post whose processing died (process killed) is handed to the pipeline's
    own normalize / seal stages after this many seconds."""


class Contract(_Model):
    unknown_fields: Literal["reject", "drop", "extend"] = "reject"
    """A source field no mapping reads: reject the record (E_FIELD_UNKNOWN), drop the
    field (counted in the run's audit event), or keep it as an extension field."""
    missing_fields: Literal["reject", "empty"] = "empty"
    """A field a mapping reads that is absent from the record: reject the record
    (E_SCHEMA_INVALID) or treat it as empty (then required-field rules apply)."""
    ignore: tuple[str, ...] = ()
    """Source fields known and deliberately not mapped (not 'unknown')."""


class SqlLookup(_Model):
    table: str
    key: str
    value: str


class EndpointLookup(_Model):
    endpoint: str = Field(pattern=r"^/.*\{key\}")
    """Path template on the source's REST connection, e.g. ``/api/v1/orgs/{key}``."""
    value: str
    """Dotted path of the wanted value in the response."""


class FieldMap(_Model):
    from_: str | None = Field(default=None, alias="from")
    """Dotted path of a source field (``builder.creditCode``)."""
    const: str | None = None
    """A constant value; quote it in YAML (``const: "001"``: unquoted 001 is the number 1)."""
    concat: tuple[str, ...] | None = None
    """Source fields joined with ``sep`` (empty ones skipped)."""
    sep: str = ""
    transform: tuple[Transform, ...] = ("trim",)
    regex: str | None = None
    """Pattern with one group (or a group named ``value``); no match = empty."""
    lookup: SqlLookup | EndpointLookup | None = None
    codelist: str | None = None
    """Name of a translation table in the spec's ``codelists``."""
    date: tuple[str, ...] | None = None
    """strptime formats tried in order (``%Y年%m月%d日``)."""
    datetime_: tuple[str, ...] | None = Field(default=None, alias="datetime")
    tz: str = "+08:00"
    """UTC offset given to datetimes without one (Asia/Shanghai)."""
    long_term: tuple[str, ...] = ()
    """Values meaning 'no end date' (长期) for ZZYXQJZRQ."""
    integer: bool = False
    split: str | None = None
    """Separator for list fields (JGZZBS)."""
    default: str | None = None
    """Value when the result is empty."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _one_source(self) -> FieldMap:
        given = [n for n in ("from_", "const", "concat") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of from, const, concat")
        if self.date and self.datetime_:
            raise SpecValueError("give date or datetime, not both", "datetime", at_key=True)
        if self.regex is not None:
            try:
                rx = re.compile(self.regex)
            except re.error as exc:
                raise SpecValueError(f"regex does not compile: {exc}", "regex") from exc
            if rx.groups < 1:
                raise SpecValueError("regex needs one capturing group", "regex")
        # strftime accepts anything (glibc copies unknown directives), so a format
        # is checked by parsing back what it rendered.
        probe = datetime(2001, 2, 3, 4, 5, 6, tzinfo=UTC)
        for key, formats in (("date", self.date or ()), ("datetime", self.datetime_ or ())):
            for i, fmt in enumerate(formats):
                try:
                    datetime.strptime(probe.strftime(fmt), fmt)
                except ValueError as exc:
                    raise SpecValueError(f"bad date format {fmt!r}: {exc}", key, i) from exc
        if not re.fullmatch(r"[+-]\d{2}:\d{2}", self.tz):
            raise SpecValueError("tz must be a UTC offset like +08:00", "tz")
        return self

    def source_fields(self) -> tuple[str, ...]:
        """Top-level source fields this mapping reads."""
        names = (self.from_,) if self.from_ else self.concat or ()
        return tuple(n.split(".", 1)[0] for n in names)


class SourceSpec(_Model):
    department: Department
    source: str = Field(pattern=_SLUG)
    """Short name of this source within the department (``business_licenses``)."""
    kind: Literal["sql", "rest", "files", "kafka", "api"]
    """How records arrive: pulled (sql, rest, files, kafka) or posted to the hub (api)."""
    connection: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]+$")
    """Airflow connection id holding URL and credentials (``AIRFLOW_CONN_<ID>`` outside);
    every pulled kind needs one, ``api`` takes none."""
    record_kind: Literal["license", "case"]
    license_type: str | None = None
    """License type code or name from ``schemas/codelists/license_types.json``."""
    description: str = ""
    schedule: str | None = "@hourly"
    batch_size: int = Field(default=500, ge=1, le=50_000)
    encoding: str = "utf-8"
    key: str
    """Source field (dotted path) that identifies a record at the source."""
    cursor: Cursor = Cursor()
    sql: SqlRead | None = None
    rest: RestRead | None = None
    files: FilesRead | None = None
    kafka: KafkaRead | None = None
    api: ApiInbox | None = None
    contract: Contract = Contract()
    codelists: dict[str, dict[str, str]] = Field(default_factory=dict)
    """Department code → canonical code, per list."""
    mapping: dict[str, FieldMap]

    @property
    def id(self) -> str:
        return f"{self.department.code}.{self.source}"

    @property
    def inbox(self) -> ApiInbox:
        """The API inbox settings (kind api)."""
        return self.api or ApiInbox()

    @property
    def dag_id(self) -> str:
        return f"ingest__{self.department.code}__{self.source}"

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, v: str) -> str:
        try:
            codecs.lookup(v)
        except LookupError:
            raise ValueError(f"unknown encoding {v!r}") from None
        return v

    @model_validator(mode="after")
    def _consistent(self) -> SourceSpec:
        read = getattr(self, self.kind)
        if read is None and self.kind != "api":  # api: the defaults of ApiInbox
            raise SpecValueError(f"kind {self.kind} needs a `{self.kind}:` section", "kind")
        if self.kind == "api" and self.connection is not None:
            raise SpecValueError(
                "kind api takes no connection (records are posted to the hub)", "connection"
            )
        if self.kind != "api" and self.connection is None:
            raise SpecValueError(f"kind {self.kind} needs a connection id", "connection")
        others = [k for k in ("sql", "rest", "files", "kafka", "api") if k != self.kind]
        extra = [k for k in others if getattr(self, k) is not None]
        if extra:
            raise SpecValueError(
                f"kind {self.kind} does not take section(s) {', '.join(extra)}",
                extra[0],
                at_key=True,
            )
        if self.kind in ("sql", "rest") and not self.cursor.field:
            raise SpecValueError(
                f"kind {self.kind} needs cursor.field (the incremental column)", "cursor"
            )
        known = LICENSE_FIELDS if self.record_kind == "license" else CASE_FIELDS
        for target in self.mapping:
            if target not in known and not (
                self.record_kind == "license" and re.fullmatch(r"KZ_[A-Z0-9_]+", target)
            ):
                raise SpecValueError(
                    f"mapping target {target!r} is not a {self.record_kind} field "
                    f"(known: {', '.join(sorted(known))}, or KZ_* surface fields)",
                    "mapping",
                    target,
                    at_key=True,
                )
        missing = [f for f in required_fields(self.record_kind) if f not in self.mapping]
        if missing:
            raise SpecValueError(
                f"mapping lacks required field(s) {', '.join(missing)}", "mapping", at_key=True
            )
        for target, fm in self.mapping.items():
            if fm.codelist is not None and fm.codelist not in self.codelists:
                raise SpecValueError(
                    f"mapping {target}: codelist {fm.codelist!r} is not defined",
                    "mapping",
                    target,
                    "codelist",
                )
            if isinstance(fm.lookup, SqlLookup) and self.kind != "sql":
                raise SpecValueError(
                    f"mapping {target}: table lookups need kind sql", "mapping", target, "lookup"
                )
            if isinstance(fm.lookup, EndpointLookup) and self.kind != "rest":
                raise SpecValueError(
                    f"mapping {target}: endpoint lookups need kind rest",
                    "mapping",
                    target,
                    "lookup",
                )
            conversion = _CONVERSIONS.get(getattr(known.get(target), "kind", ""))
            if conversion is not None and not getattr(fm, conversion[0]):
                raise SpecValueError(
                    f"mapping {target}: a {known[target].kind} field needs `{conversion[1]}`",
                    "mapping",
                    target,
                )
        if self.record_kind == "license":
            if not self.license_type:
                raise SpecValueError("record_kind license needs license_type", "record_kind")
            try:
                self.license_type_code()
            except ValueError as exc:
                raise SpecValueError(str(exc), "license_type") from None
        elif self.contract.unknown_fields == "extend":
            raise SpecValueError(
                "contract.unknown_fields extend applies to licenses only",
                "contract",
                "unknown_fields",
            )
        return self

    def license_type_code(self) -> tuple[str, str]:
        """(code, name) of the spec's license type from the code list."""
        cl = codelists.load("license_types")
        want = self.license_type or ""
        for code in cl.codes:
            if want in (code, cl.zh(code)):
                return code, cl.zh(code)
        raise ValueError(f"license_type {want!r} is not in schemas/codelists/license_types.json")

    def nested_fields(self) -> dict[str, frozenset[str]]:
        """Second-level fields read inside objects that are only read by dotted paths
        (``license.zzbs`` …): ``{"license": {"zzbs", …}}``. The schema contract checks
        those objects' keys too, so a new field inside them is not missed."""
        paths = [fm.from_ for fm in self.mapping.values() if fm.from_]
        paths += [c for fm in self.mapping.values() for c in fm.concat or ()]
        paths += [
            self.key,
            *(self.contract.ignore),
            *([self.cursor.field] if self.cursor.field else []),
        ]
        whole = {p for p in paths if "." not in p}
        nested: dict[str, set[str]] = {}
        for p in paths:
            if "." in p:
                top, rest = p.split(".", 1)
                nested.setdefault(top, set()).add(rest.split(".", 1)[0])
        return {k: frozenset(v) for k, v in nested.items() if k not in whole}

    def read_fields(self) -> frozenset[str]:
        """Top-level source fields the spec reads (mapping, key, cursor, ignore)."""
        names: set[str] = {self.key.split(".", 1)[0], *self.contract.ignore}
        if self.cursor.field:
            names.add(self.cursor.field.split(".", 1)[0])
        for fm in self.mapping.values():
            names.update(fm.source_fields())
        return frozenset(names)


#: Field kind → (FieldMap attribute, what to write) a mapping of that kind must use,
#: so typed values reach the canonical record (a bare string date would crash it).
_CONVERSIONS = {
    "date": ("date", "date: [formats]"),
    "datetime": ("datetime_", "datetime: [formats]"),
    "int": ("integer", "integer: true"),
    "ids": ("split", "split: <separator>"),
}


def spec_from_dict(data: Any) -> SourceSpec:
    """Validate a parsed YAML document (pydantic ``ValidationError`` on failure)."""
    return SourceSpec.model_validate(data)
