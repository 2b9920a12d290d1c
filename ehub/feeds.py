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

The envelope (``schemas/return_envelope.schema.json``, version 3) carries the
record as the office may see it (:func:`ehub.routing.view_for`) and a signature
by the hub's key over the canonical JSON of everything else, so an office can
check that a message comes from the hub (:func:`verify_envelope`). The publish
stage signs each batch once (:func:`sign_envelopes`): the signature covers the
root of a hash tree over the batch's canonical JSON texts, and each envelope
carries its path to the root (:mod:`ehub.feed_tree`); :func:`envelope` signs a
single message directly. The
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
import functools
import hashlib
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
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
from ehub.feed_tree import sign_tree, signed_statement
from ehub.offices import Office, RecordKind, list_offices
from ehub.routing import RoutingError, division_of, offices_for
from ehub.store.db import Store, utcnow
from ehub.store.pg_arrays import int_array, text_array

ENVELOPE_SCHEMA = "ehub.return/3"
"""Version 3: the signature may be a batch's (``signature.tree``, :mod:`ehub.feed_tree`)."""
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
    _targets: dict[tuple[str, str, str | None], tuple[tuple[str, str], ...]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    """(kind, division, type code) -> (office code, topic) of each receiving office:
    the offices are fixed for the router's life, and records share few divisions."""

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
            key = (kind, division, type_code)
            targets = self._targets.get(key)
            if targets is None:
                offices = offices_for(division, kind, type_code, self.offices)
                targets = self._targets[key] = tuple((o.code, self.topic(o)) for o in offices)
        except RoutingError as exc:
            return [], [Event("unroutable", identifier, version,
                              {"kind": kind, "field": exc.field, "reason": exc.reason_code,
                               "message": exc.message_en[:300]})]  # fmt: skip
        now = utcnow()
        license_id = record_id if kind == "license" else None
        case_id = record_id if kind == "case" else None
        rows = [
            {
                "kind": kind,
                "license_id": license_id,
                "case_id": case_id,
                "office": code,
                "topic": topic,
                "message_key": identifier,
                "message_id": message_id(topic, identifier, version, kind),
                "state": "pending",
                "created_at": now,
            }
            for code, topic in targets
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
            insert_ignore(s, FeedMessageRow.__table__, group, [f"{kind}_id", "topic"],
                          where=f"{kind}_id IS NOT NULL")  # fmt: skip
    if rows and pg:
        s.execute(text(f"NOTIFY {NOTIFY_CHANNEL}"))  # delivered at commit, once per transaction


_COLUMNS = ("kind", "license_id", "case_id", "office", "topic", "message_key", "message_id",
            "state", "created_at")  # fmt: skip
_TYPES = ("text", "bigint", "bigint", "text", "text", "text", "text", "text", "timestamptz")
_INT_COLUMNS = frozenset({"license_id", "case_id"})


def _insert_unnest(s: Any, kind: str, rows: Sequence[dict[str, Any]]) -> None:
    """One statement of arrays (PostgreSQL): a multi-row INSERT of 2,000 rows spends
    more time building its 18,000 parameters than the database spends inserting. The
    arrays go as literals (:mod:`ehub.store.pg_arrays`), not adapted element by element."""
    arrays = ", ".join(f"CAST(:{c} AS {t}[])" for c, t in zip(_COLUMNS, _TYPES, strict=True))
    params: dict[str, str] = {}
    for c in _COLUMNS:
        if c in _INT_COLUMNS:
            params[c] = int_array([r[c] for r in rows])
        elif c == "created_at":  # ISO 8601 with the offset: the same instant
            params[c] = text_array([r[c].isoformat() for r in rows])
        else:
            params[c] = text_array([r[c] for r in rows])
    s.execute(
        text(
            f"INSERT INTO feed_messages ({', '.join(_COLUMNS)}) "
            f"SELECT {', '.join('t.' + c for c in _COLUMNS)} FROM unnest({arrays}) "
            f"WITH ORDINALITY AS t({', '.join(_COLUMNS)}, n) ORDER BY t.n "
            f"ON CONFLICT ({kind}_id, topic) WHERE {kind}_id IS NOT NULL DO NOTHING"
        ),
        params,
    )


# --- the envelope -----------------------------------------------------------------


class FeedSigner:
    """Signs envelopes with the hub's key (EC or RSA) and names its certificate."""

    def __init__(self, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, cert: x509.Certificate):
        self.key = key
        self.cert = cert
        self.cert_sha256 = hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()
        self.alg = "ES256" if isinstance(key, ec.EllipticCurvePrivateKey) else "RS256"
        # Decided once, not per signature (an ABC isinstance check and two objects each).
        self._sign: Callable[[bytes], bytes] = (
            functools.partial(key.sign, signature_algorithm=ec.ECDSA(hashes.SHA256()))
            if isinstance(key, ec.EllipticCurvePrivateKey)
            else functools.partial(key.sign, padding=padding.PKCS1v15(), algorithm=hashes.SHA256())
        )
        self.signature_prefix = (
            f',"signature":{{"alg":"{self.alg}","cert_sha256":"{self.cert_sha256}","value":"'
        ).encode()
        """What the envelope's ``signature`` member starts with, up to its value."""

    @classmethod
    def dev(cls, home: Any) -> FeedSigner:
        """The dev PKI's seal key (production: the hub's own signing key)."""
        from signing.pki import ensure_dev_pki
        from signing.xmlsig import load_seal_material

        pki = ensure_dev_pki(home / "pki")
        key, cert, _chain = load_seal_material(pki.seal_p12_path, pki.passphrase)
        return cls(key, cert)

    def sign(self, data: bytes) -> bytes:
        return self._sign(data)


_second: tuple[int, str] = (-1, "")  # the last whole second seen and its ISO 8601 text


def _now_iso() -> str:
    """``datetime.now(UTC).isoformat()``, the date and time formatted once a second."""
    global _second
    sec, micro = divmod(time.time_ns() // 1000, 1_000_000)
    cached = _second  # one read: another thread may replace it meanwhile
    if cached[0] != sec:
        cached = _second = (sec, datetime.fromtimestamp(sec, UTC).isoformat()[:19])
    # isoformat leaves the fraction out when it is zero
    return f"{cached[1]}.{micro:06d}+00:00" if micro else f"{cached[1]}+00:00"


def _canonical(body: dict[str, Any]) -> bytes:
    """Sorted keys, no spaces, UTF-8: what the signature covers."""
    return _ENCODER.encode(body)


def envelope_body(
    *,
    kind: str,
    identifier: str,
    version: int,
    status: str | None,
    division: str,
    office: str,
    payload: dict[str, Any],
    message_id: str,
) -> bytes:
    """An envelope's canonical JSON, without its signature (what the signature covers)."""
    body: dict[str, Any] = {
        "schema": ENVELOPE_SCHEMA,
        "message_id": message_id,
        "kind": kind,
        "identifier": identifier,
        "version": version,
        "operation": "revoke" if status in REVOKING else "upsert",
        "division": division,
        "office": office,
        "produced_at": _now_iso(),
        "payload": payload,
    }
    return _canonical(body)


def envelope(*, signer: FeedSigner, **fields: Any) -> bytes:
    """One envelope signed on its own (:func:`envelope_body`'s fields): the signature
    is over its canonical JSON."""
    canonical = envelope_body(**fields)
    signature = base64.b64encode(signer.sign(canonical))
    return b"".join((canonical[:-1], signer.signature_prefix, signature, b'"}}'))


def sign_envelopes(bodies: Sequence[bytes], signer: FeedSigner) -> list[bytes]:
    """A batch of envelope bodies (:func:`envelope_body`) signed with one signature over
    their hash tree; each envelope carries its path (:mod:`ehub.feed_tree`)."""
    return sign_tree(bodies, signer.sign, signer.signature_prefix)


def verify_envelope(raw: bytes, certs: Iterable[x509.Certificate]) -> bool:
    """True if the envelope's signature verifies with the named one of ``certs``."""
    try:
        body = json.loads(raw)
        if not isinstance(body, dict):
            return False
        sig = body.pop("signature")
        value = base64.b64decode(sig["value"], validate=True)
        signed = _canonical(body)
        if "tree" in sig:  # signed with its batch: the signature is over the tree's root
            tree_signed = signed_statement(signed, sig["tree"])
            if tree_signed is None:
                return False
            signed = tree_signed
    except (ValueError, KeyError, TypeError, AttributeError, msgspec.EncodeError):
        return False
    for cert in certs:
        if hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest() != sig.get("cert_sha256"):
            continue
        key = cert.public_key()
        try:
            if isinstance(key, ec.EllipticCurvePublicKey):
                key.verify(value, signed, ec.ECDSA(hashes.SHA256()))
            elif isinstance(key, rsa.RSAPublicKey):
                key.verify(value, signed, padding.PKCS1v15(), hashes.SHA256())
            else:
                return False
        except InvalidSignature:
            return False
        return True
    return False
