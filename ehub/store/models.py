"""Table models of the hub store.

Every table that a pipeline stage writes has a natural unique key so that a
re-run after a crash upserts instead of duplicating:

- ``raw_records``      (source_id, source_key, payload_hash)
- ``licenses``         (identifier, version)
- ``quarantine``       (raw_id, reason_code, field)
- ``signatures``       (license_id, format)
- ``deliveries``       (license_id | case_id | seal_id, destination) and idempotency_key
- ``feed_messages``    (license_id, topic) and message_id
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dict[str, Any]: JSON,
        datetime: DateTime(timezone=True),
    }


class Source(Base):
    """A department system the hub pulls from."""

    __tablename__ = "sources"
    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    department: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20))  # sql | rest | files | kafka | api
    record_kind: Mapped[str] = mapped_column(String(20))  # license | case
    created_at: Mapped[datetime]


class Watermark(Base):
    """How far a source has been read; advanced in the same transaction as the rows."""

    __tablename__ = "watermarks"
    source_id: Mapped[str] = mapped_column(ForeignKey("sources.id"), primary_key=True)
    cursor: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime]


class RawRecord(Base):
    """A source row exactly as extracted (the payload is kept for quarantine and replay)."""

    __tablename__ = "raw_records"
    __table_args__ = (
        UniqueConstraint("source_id", "source_key", "payload_hash"),
        # The normalize stage reads a source's pending records in id order.
        Index("ix_raw_records_source_state_id", "source_id", "state", "id"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    source_id: Mapped[str] = mapped_column(ForeignKey("sources.id"))
    source_key: Mapped[str] = mapped_column(String(200))
    source_version: Mapped[str] = mapped_column(String(100))
    payload: Mapped[dict[str, Any]]
    payload_hash: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(20), index=True)  # pending|normalized|quarantined
    extracted_at: Mapped[datetime]


class LicenseRow(Base):
    """One version of a canonical e-license."""

    __tablename__ = "licenses"
    __table_args__ = (
        UniqueConstraint("identifier", "version"),
        Index("ix_licenses_state_id", "state", "id"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    identifier: Mapped[str] = mapped_column(String(120), index=True)
    version: Mapped[int]
    type_code: Mapped[str] = mapped_column(String(40))
    issuer_code: Mapped[str] = mapped_column(String(18))
    holder_division: Mapped[str] = mapped_column(String(12))
    county: Mapped[str] = mapped_column(String(6))
    status: Mapped[str] = mapped_column(String(20))
    content_hash: Mapped[str] = mapped_column(String(64))
    document: Mapped[dict[str, Any]]
    source_id: Mapped[str] = mapped_column(ForeignKey("sources.id"))
    source_key: Mapped[str] = mapped_column(String(200))
    raw_id: Mapped[int | None] = mapped_column(ForeignKey("raw_records.id"))
    state: Mapped[str] = mapped_column(String(20))  # normalized|sealing|sealed|held
    state_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    state_at: Mapped[datetime | None]
    """When the row entered its state, where it matters: a ``sealing`` claim of the
    on-demand sealing API (a stale claim is handed back to the seal stage)."""


class CaseRow(Base):
    """One version of a canonical case record (办件)."""

    __tablename__ = "case_records"
    __table_args__ = (UniqueConstraint("case_number", "version"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    case_number: Mapped[str] = mapped_column(String(64), index=True)
    version: Mapped[int]
    division: Mapped[str] = mapped_column(String(12))
    content_hash: Mapped[str] = mapped_column(String(64))
    document: Mapped[dict[str, Any]]
    source_id: Mapped[str] = mapped_column(ForeignKey("sources.id"))
    source_key: Mapped[str] = mapped_column(String(200))
    raw_id: Mapped[int | None] = mapped_column(ForeignKey("raw_records.id"))
    created_at: Mapped[datetime]


class QuarantineRow(Base):
    """A record that could not be normalized, with the reason and the raw payload."""

    __tablename__ = "quarantine"
    __table_args__ = (
        UniqueConstraint("raw_id", "reason_code", "field"),
        Index("ix_quarantine_source_key", "source_id", "source_key"),
        Index("ix_quarantine_state_id", "state", "id"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    raw_id: Mapped[int] = mapped_column(ForeignKey("raw_records.id"))
    source_id: Mapped[str] = mapped_column(ForeignKey("sources.id"))
    source_key: Mapped[str] = mapped_column(String(200))
    reason_code: Mapped[str] = mapped_column(String(40), index=True)
    field: Mapped[str] = mapped_column(String(80))
    message_zh: Mapped[str] = mapped_column(Text)
    message_en: Mapped[str] = mapped_column(Text)
    value: Mapped[str | None] = mapped_column(Text)
    payload: Mapped[dict[str, Any]]
    state: Mapped[str] = mapped_column(String(20))  # open|retried|resolved
    created_at: Mapped[datetime]


class ApiClient(Base):
    """An issuing system allowed to post to the hub's API (on-demand sealing).

    It acts for one department (``department_uscc``: the issuer code its licenses
    must carry) and may post to the listed API sources. Only the SHA-256 of its
    bearer token is kept; ``token_hint`` is the token's first characters, so an
    operator can tell tokens apart.
    """

    __tablename__ = "api_clients"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    department_uscc: Mapped[str] = mapped_column(String(18))
    source_ids: Mapped[list[str]] = mapped_column(JSON)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    token_hint: Mapped[str] = mapped_column(String(12))
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class SealRow(Base):
    """A registered electronic seal of a department (the seal registry, 印章库).

    ``license_types`` lists the license type codes (ZZLXDM) the seal is used
    for; an empty list means any type. A ``cross_level`` seal also seals the
    licenses of bureaus inside its ``division`` that have no seal of their own
    (跨层级用章). ``registration_no`` / ``registered_at`` record the national
    platform's acceptance of the seal's registration (备案).
    """

    __tablename__ = "seals"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    department: Mapped[str] = mapped_column(String(200))
    department_uscc: Mapped[str] = mapped_column(String(18), index=True)
    division: Mapped[str] = mapped_column(String(12), server_default="")
    name: Mapped[str] = mapped_column(String(200))
    seal_type: Mapped[str] = mapped_column(String(40))
    license_types: Mapped[list[str]] = mapped_column(JSON, server_default="[]")
    cross_level: Mapped[bool] = mapped_column(Boolean, server_default=false())
    image_path: Mapped[str | None] = mapped_column(Text)
    image_sha256: Mapped[str | None] = mapped_column(String(64))
    cert_pem: Mapped[str] = mapped_column(Text)
    chain_pem: Mapped[str | None] = mapped_column(Text)  # issuing CA certificates, leaf excluded
    key_ref: Mapped[str] = mapped_column(String(400))  # where the key lives (p12 path, pkcs11 uri)
    status: Mapped[str] = mapped_column(String(20))  # active|suspended|revoked
    status_reason: Mapped[str | None] = mapped_column(Text)
    suspended_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    registration_no: Mapped[str | None] = mapped_column(String(64))
    registered_at: Mapped[datetime | None]
    valid_from: Mapped[datetime]
    valid_until: Mapped[datetime]
    created_at: Mapped[datetime]


class SignatureRow(Base):
    """A sealed document of one license version."""

    __tablename__ = "signatures"
    __table_args__ = (UniqueConstraint("license_id", "format"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    license_id: Mapped[int] = mapped_column(ForeignKey("licenses.id"))
    seal_id: Mapped[int] = mapped_column(ForeignKey("seals.id"))
    format: Mapped[str] = mapped_column(String(20))  # pades|xmldsig|ofd
    level: Mapped[str] = mapped_column(String(10))  # B-B|B-T|B-LT
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    signed_at: Mapped[datetime]


class DeliveryRow(Base):
    """Outbox row and receipt of one record version for one destination.

    ``kind`` says what is delivered: a license version (``license_id``), a case
    record version (``case_id``) or a seal registration (``seal_id``);
    ``subject`` / ``version`` repeat the record's identity (license identifier,
    case number or seal code, and its version) so reports and reconciliation
    need no per-kind join.
    """

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("license_id", "destination"),
        UniqueConstraint("case_id", "destination"),
        UniqueConstraint("seal_id", "destination"),
        Index("ix_deliveries_dest_state", "destination", "state", "id"),
        Index("ix_deliveries_subject", "subject", "version"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(10), server_default="license")  # license|case|seal
    license_id: Mapped[int | None] = mapped_column(ForeignKey("licenses.id"))
    case_id: Mapped[int | None] = mapped_column(ForeignKey("case_records.id"))
    seal_id: Mapped[int | None] = mapped_column(ForeignKey("seals.id"))
    subject: Mapped[str] = mapped_column(String(120), server_default="")
    version: Mapped[int] = mapped_column(Integer, server_default="0")
    destination: Mapped[str] = mapped_column(String(40))
    idempotency_key: Mapped[str] = mapped_column(String(64), unique=True)
    state: Mapped[str] = mapped_column(String(20))  # pending|delivered|rejected|dead
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    receipt_id: Mapped[str | None] = mapped_column(String(100))
    receipt: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime]
    delivered_at: Mapped[datetime | None]


class CircuitRow(Base):
    """The circuit breaker of one destination, shared by every delivery worker.

    ``closed``: sends go through. After ``failures`` consecutive failed sends
    reach the threshold it opens (``opened_at``): no send until the cool-down
    has passed, then one probe batch (``half_open``) closes it again or re-opens it.
    """

    __tablename__ = "delivery_circuits"
    destination: Mapped[str] = mapped_column(String(40), primary_key=True)
    state: Mapped[str] = mapped_column(String(12))  # closed|open|half_open
    failures: Mapped[int] = mapped_column(Integer, default=0)
    opened_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime]


class ReturnedRecord(Base):
    """A license or case version another department gave the provincial platform,
    handed back to the hub by its return interface (属地返还) for the offices."""

    __tablename__ = "returned_records"
    __table_args__ = (UniqueConstraint("platform", "kind", "identifier", "version"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    platform: Mapped[str] = mapped_column(String(20))
    kind: Mapped[str] = mapped_column(String(10))  # license|case
    identifier: Mapped[str] = mapped_column(String(120))
    version: Mapped[int]
    division: Mapped[str | None] = mapped_column(String(12))
    """None when the record's division could not be routed (reported as an event)."""
    status: Mapped[str | None] = mapped_column(String(20))
    document: Mapped[dict[str, Any]]
    platform_cursor: Mapped[int] = mapped_column(BigInteger)
    received_at: Mapped[datetime]


class ReturnCursor(Base):
    """How far the hub has read a platform's return interface, per division prefix;
    advanced in the transaction that stores the page."""

    __tablename__ = "return_cursors"
    platform: Mapped[str] = mapped_column(String(20), primary_key=True)
    division: Mapped[str] = mapped_column(String(12), primary_key=True)
    cursor: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime]


UNPUBLISHED = "state IN ('pending', 'sending')"
"""The feed outbox rows the publisher still has to send or settle (indexed)."""


def _one_per_topic(column: str) -> Index:
    """One feed message per record version (``column``) and topic: a partial unique
    index, holding the rows of that record kind only."""
    where = text(f"{column} IS NOT NULL")
    return Index(f"uq_feed_messages_{column}", column, "topic", unique=True,
                 postgresql_where=where, sqlite_where=where)  # fmt: skip


class FeedMessageRow(Base):
    """Outbox row of one return-feed message: one record version (a license,
    ``license_id``, or a case record, ``case_id``) on one office's topic."""

    __tablename__ = "feed_messages"
    __table_args__ = (
        # One message per record version and topic. Partial: a row is in the index of
        # its own record kind only (a full index would hold every row, NULL or not).
        *(_one_per_topic(col) for col in ("license_id", "case_id", "returned_id")),
        # The publisher's queue: rows not yet published, in id order. The published
        # (nearly every row) are not in it, so marking a row published adds no entry.
        Index(
            "ix_feed_messages_unpublished",
            "id",
            postgresql_where=text(UNPUBLISHED),
            sqlite_where=text(UNPUBLISHED),
        ),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(10), server_default="license")  # license|case
    license_id: Mapped[int | None] = mapped_column(ForeignKey("licenses.id"))
    case_id: Mapped[int | None] = mapped_column(ForeignKey("case_records.id"))
    returned_id: Mapped[int | None] = mapped_column(ForeignKey("returned_records.id"))
    """A record handed back by the provincial platform (``kind`` is then its kind)."""
    office: Mapped[str | None] = mapped_column(String(64))
    """The office whose topic this is (None: a county topic of the first feed version)."""
    topic: Mapped[str] = mapped_column(String(200))
    message_key: Mapped[str] = mapped_column(String(200))
    message_id: Mapped[str] = mapped_column(String(64))
    """Derived from (topic, record identifier, version, kind): unique as the record
    version and topic are (no index of its own: the broker scan matches it in memory)."""
    state: Mapped[str] = mapped_column(String(20))  # pending|sending|published|withheld
    partition: Mapped[int | None]
    offset: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime]
    published_at: Mapped[datetime | None]


class AuditEvent(Base):
    """Append-only lineage event; ``hash`` chains each row to the previous one."""

    __tablename__ = "audit_events"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[datetime]
    event: Mapped[str] = mapped_column(String(40))
    subject: Mapped[str] = mapped_column(String(200), index=True)
    version: Mapped[int | None]
    detail: Mapped[dict[str, Any]]
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class OfficeRow(Base):
    """A grassroots office that receives the records of its jurisdiction (属地返还).

    ``division`` is a prefecture (``370600``, level ``city``), county or
    township (9 digits) code; with ``include_children`` the office also sees
    its sub-divisions. ``kinds`` and ``license_types`` (empty = every type) say
    what it receives, ``fields`` which field codes of each kind it may see
    (``{"license": ["ZZBS", ...]}``; ``*`` = all, ``KZ`` = every surface field),
    ``masking`` how a field is masked (``{"CZZT": "name"}``) on top of the hub's
    default policy, ``delivery`` how it receives (kafka | pull | file).
    Credentials are in :class:`OfficeCredentialRow`.
    """

    __tablename__ = "offices"
    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    division: Mapped[str] = mapped_column(String(12), index=True)
    level: Mapped[str] = mapped_column(String(10))  # city|county|township
    kinds: Mapped[list[str]] = mapped_column(JSON)
    license_types: Mapped[list[str]] = mapped_column(JSON)
    include_children: Mapped[bool] = mapped_column(Boolean)
    fields: Mapped[dict[str, Any]]
    masking: Mapped[dict[str, Any]]
    delivery: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class OfficeCredentialRow(Base):
    """A bearer credential of an office. Only its SHA-256 is kept; ``token_hint``
    (the first characters) lets an operator tell credentials apart and revoke one."""

    __tablename__ = "office_credentials"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    office_code: Mapped[str] = mapped_column(ForeignKey("offices.code"), index=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    token_hint: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
