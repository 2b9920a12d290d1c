"""Return feeds per office (数据属地返还): which office topics a record version goes to,
and the signed envelope each office receives.

**Topic design: one topic per office** (``<prefix><office code>``, default prefix
``ehub.return.office.``). What an office may see depends on the office — its
jurisdiction, its fields, its masking — not only on the division, so two
offices over the same division need different payloads: a shared division
topic would show one office the other's fields. With a topic per office, an
office's Kafka principal is granted read on exactly one topic (production
Kafka: SASL login + an ACL per office topic), its lag and offsets are its own,
and a record of a township is written up to three times (township, county,
city) — the price of the isolation. Offices without Kafka read the same
records through the pull API or an export (:mod:`ehub.office_feed`).

Feed outbox rows are written with the record (the seal stage for licenses, the
normalize stage for case records), one per office whose jurisdiction holds the
record's division (:mod:`ehub.routing`) and which receives over Kafka. A
record whose division cannot be routed is never dropped silently: an
``unroutable`` audit event names it, its field and the reason. An office
registered later gets earlier records through the pull API or an export.

The envelope (``schemas/return_envelope.schema.json``, version 2) carries the
record as the office may see it (:func:`ehub.routing.view_for`) and a signature
by the hub's key over the canonical JSON of everything else, so an office can
check that a message comes from the hub (:func:`verify_envelope`). The
canonical JSON is encoded by msgspec: byte for byte what ``json.dumps(...,
sort_keys=True, separators=(",", ":"), ensure_ascii=False)`` gives, at a tenth
of the cost, except for floats in exponent notation (``1e16`` vs ``1e+16``),
which canonical records do not hold. The message is that text with the
signature member appended, so the body is encoded once.

:func:`insert_rows` also wakes the continuous publisher (:mod:`ehub.feed_worker`)
on PostgreSQL: a ``NOTIFY ehub_feeds`` delivered when the record's transaction
commits.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import text

from ehub.audit import Event
from ehub.offices import Office, RecordKind, list_offices
from ehub.routing import RoutingError, division_of, offices_for
from ehub.store.db import Store, utcnow

ENVELOPE_SCHEMA = "ehub.return/2"
REVOKING = ("revoked", "cancelled")
NOTIFY_CHANNEL = "ehub_feeds"
_ENCODER = msgspec.json.Encoder(order="sorted")


def message_id(topic: str, identifier: str, version: int, kind: str = "license") -> str:
    """Stable id of one record version on one topic (the consumer's dedup key)."""
    text = (
        f"return|{topic}|{identifier}|{version}"
        if kind == "license"
        else f"return|{topic}|{kind}|{identifier}|{version}"
    )
    return hashlib.sha256(text.encode()).hexdigest()[:48]


@dataclass(frozen=True)
class FeedRouter:
    """The offices receiving over Kafka, loaded once per stage run."""

    offices: tuple[Office, ...]
    prefix: str

    @classmethod
    def load(cls, store: Store, prefix: str) -> FeedRouter:
        active = list_offices(store, include_revoked=False)
        return cls(tuple(o for o in active if "kafka" in o.delivery), prefix)

    def topic(self, office: Office) -> str:
        return self.prefix + office.code

    def rows(
        self,
        kind: RecordKind,
        record_id: int,
        identifier: str,
        version: int,
        document: dict[str, Any],
        type_code: str | None = None,
    ) -> tuple[list[dict[str, Any]], list[Event]]:
        """The feed outbox rows of one record version, and an ``unroutable`` event
        when its division cannot be routed."""
        try:
            division = division_of(kind, document)
            targets = offices_for(division, kind, type_code, self.offices)
        except RoutingError as exc:
            return [], [Event("unroutable", identifier, version,
                              {"kind": kind, "field": exc.field, "reason": exc.reason_code,
                               "message": exc.message_en[:300]})]  # fmt: skip
        now = utcnow()
        rows = [
            {
                "kind": kind,
                "license_id": record_id if kind == "license" else None,
                "case_id": record_id if kind == "case" else None,
                "office": o.code,
                "topic": self.topic(o),
                "message_key": identifier,
                "message_id": message_id(self.topic(o), identifier, version, kind),
                "state": "pending",
                "created_at": now,
            }
            for o in targets
        ]
        return rows, []


def insert_rows(s: Any, rows: Sequence[dict[str, Any]]) -> None:
    """Insert feed outbox rows, in order; a row already there (a re-run) is left as it is."""
    from ehub.store.db import insert_ignore
    from ehub.store.models import FeedMessageRow

    pg = s.get_bind().dialect.name == "postgresql"
    for kind in ("license", "case"):
        group = [r for r in rows if r["kind"] == kind]
        if pg and len(group) > 50:
            _insert_unnest(s, kind, group)
        else:
            insert_ignore(s, FeedMessageRow.__table__, group, [f"{kind}_id", "topic"])
    if rows and pg:
        s.execute(text(f"NOTIFY {NOTIFY_CHANNEL}"))  # delivered at commit, once per transaction


_COLUMNS = ("kind", "license_id", "case_id", "office", "topic", "message_key", "message_id",
            "state", "created_at")  # fmt: skip
_TYPES = ("text", "bigint", "bigint", "text", "text", "text", "text", "text", "timestamptz")


def _insert_unnest(s: Any, kind: str, rows: Sequence[dict[str, Any]]) -> None:
    """One statement of arrays (PostgreSQL): a multi-row INSERT of 2,000 rows spends
    more time building its 18,000 parameters than the database spends inserting."""
    arrays = ", ".join(f"CAST(:{c} AS {t}[])" for c, t in zip(_COLUMNS, _TYPES, strict=True))
    s.execute(
        text(
            f"INSERT INTO feed_messages ({', '.join(_COLUMNS)}) "
            f"SELECT {', '.join('t.' + c for c in _COLUMNS)} FROM unnest({arrays}) "
            f"WITH ORDINALITY AS t({', '.join(_COLUMNS)}, n) ORDER BY t.n "
            f"ON CONFLICT ({kind}_id, topic) DO NOTHING"
        ),
        {c: [r[c] for r in rows] for c in _COLUMNS},
    )


# --- the envelope -----------------------------------------------------------------


class FeedSigner:
    """Signs envelopes with the hub's key (EC or RSA) and names its certificate."""

    def __init__(self, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, cert: x509.Certificate):
        self.key = key
        self.cert = cert
        self.cert_sha256 = hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()
        self.alg = "ES256" if isinstance(key, ec.EllipticCurvePrivateKey) else "RS256"

    @classmethod
    def dev(cls, home: Any) -> FeedSigner:
        """The dev PKI's seal key (production: the hub's own signing key)."""
        from signing.pki import ensure_dev_pki
        from signing.xmlsig import load_seal_material

        pki = ensure_dev_pki(home / "pki")
        key, cert, _chain = load_seal_material(pki.seal_p12_path, pki.passphrase)
        return cls(key, cert)

    def sign(self, data: bytes) -> bytes:
        if isinstance(self.key, ec.EllipticCurvePrivateKey):
            return self.key.sign(data, ec.ECDSA(hashes.SHA256()))
        return self.key.sign(data, padding.PKCS1v15(), hashes.SHA256())


def _canonical(body: dict[str, Any]) -> bytes:
    """Sorted keys, no spaces, UTF-8: what the signature covers."""
    return _ENCODER.encode(body)


def envelope(
    *,
    kind: str,
    identifier: str,
    version: int,
    status: str | None,
    division: str,
    office: str,
    payload: dict[str, Any],
    message_id: str,
    signer: FeedSigner,
) -> bytes:
    body: dict[str, Any] = {
        "schema": ENVELOPE_SCHEMA,
        "message_id": message_id,
        "kind": kind,
        "identifier": identifier,
        "version": version,
        "operation": "revoke" if status in REVOKING else "upsert",
        "division": division,
        "office": office,
        "produced_at": datetime.now(UTC).isoformat(),
        "payload": payload,
    }
    canonical = _canonical(body)
    signature = base64.b64encode(signer.sign(canonical)).decode()
    return b"".join((
        canonical[:-1], b',"signature":{"alg":"', signer.alg.encode(), b'","cert_sha256":"',
        signer.cert_sha256.encode(), b'","value":"', signature.encode(), b'"}}',
    ))  # fmt: skip


def verify_envelope(raw: bytes, certs: Iterable[x509.Certificate]) -> bool:
    """True if the envelope's signature verifies with the named one of ``certs``."""
    try:
        body = json.loads(raw)
        if not isinstance(body, dict):
            return False
        sig = body.pop("signature")
        value = base64.b64decode(sig["value"], validate=True)
    except (ValueError, KeyError, TypeError, AttributeError):
        return False
    for cert in certs:
        if hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest() != sig.get("cert_sha256"):
            continue
        key = cert.public_key()
        try:
            if isinstance(key, ec.EllipticCurvePublicKey):
                key.verify(value, _canonical(body), ec.ECDSA(hashes.SHA256()))
            elif isinstance(key, rsa.RSAPublicKey):
                key.verify(value, _canonical(body), padding.PKCS1v15(), hashes.SHA256())
            else:
                return False
        except InvalidSignature:
            return False
        return True
    return False
