"""Signed, timestamped checkpoints of the audit chain.

The hash chain of :mod:`ehub.audit` shows a row altered, deleted or moved as
long as nobody rewrites every later hash; a checkpoint pins the chain so that
even a full rewrite (or cutting rows off its end) shows. A checkpoint covers
the chain up to its current last row: that row's id and hash and the number of
rows up to it, in a canonical JSON payload which is

- signed with the hub's key (ECDSA or RSA, SHA-256; the certificate and its
  issuing chain are embedded), and
- timestamped by an RFC 3161 TSA over the payload's SHA-256. When the TSA
  cannot be reached the checkpoint is still made, marked untimestamped, and a
  warning is logged: a missing timestamp weakens the proof of *when*, a missing
  checkpoint would weaken the proof of *what*.

The checkpoint is itself appended to the chain as a ``checkpoint`` event
(subject ``audit``), so it is covered by the next one. :func:`make_checkpoint`
is the whole job; :func:`run` is its pipeline-stage form (``ehub.tasks`` stage
``checkpoint``). :func:`check_checkpoint` verifies one checkpoint's signature and
timestamp; :mod:`ehub.audit_verify` walks the chain and uses it.

Development: the key is the dev PKI's seal key (``<home>/pki/seal.p12``) and the
TSA is the dev PKI's. Nothing here logs key material or the passphrase.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeAlias

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from sqlalchemy import func, select

from ehub.audit import GENESIS, Event, append
from ehub.config import Settings
from ehub.pipeline import StageResult
from ehub.store.db import Store, utcnow
from ehub.store.models import AuditEvent

log = logging.getLogger(__name__)

CHECKPOINT_EVENT = "checkpoint"
CHECKPOINT_SUBJECT = "audit"
SCHEME = "ehub-audit-checkpoint/1"

HubKey: TypeAlias = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
TrustRoot: TypeAlias = x509.Certificate | Path | str
"""A trust anchor: a certificate, or the path of a PEM file."""


@dataclass(frozen=True)
class CheckpointSigner:
    """The hub's key and certificate that sign checkpoints."""

    key: HubKey
    """Private key (ECDSA or RSA); never logged."""
    cert: x509.Certificate
    """Its certificate, embedded in every checkpoint."""
    chain: tuple[x509.Certificate, ...] = ()
    """Issuing CA certificates (without the root), embedded too."""

    @classmethod
    def from_p12(cls, path: Path, passphrase: str) -> CheckpointSigner:
        from signing.xmlsig import load_seal_material

        key, cert, chain = load_seal_material(path, passphrase)
        return cls(key, cert, tuple(chain))


@dataclass(frozen=True)
class Checkpoint:
    """What :func:`make_checkpoint` recorded."""

    row_id: int
    """Id of the ``checkpoint`` audit row."""
    last_id: int
    """Id of the last row covered (0: the chain was empty)."""
    last_hash: str
    count: int
    """Rows up to and including ``last_id``."""
    timestamped: bool
    timestamp: datetime | None
    """The TSA's time (``None`` when untimestamped)."""


@dataclass(frozen=True)
class CheckpointCheck:
    """Outcome of :func:`check_checkpoint` for one checkpoint row."""

    problems: tuple[str, ...]
    """Why the signature or the timestamp does not verify (empty: they do)."""
    timestamped: bool
    timestamp: datetime | None


def canonical(payload: dict[str, Any]) -> bytes:
    """The bytes that are signed and timestamped."""
    return json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


def dev_signer_and_tsa(settings: Settings) -> tuple[CheckpointSigner, str]:
    """The dev PKI's seal key and TSA URL (generated on first use)."""
    from signing.pki import ensure_dev_pki

    pki = ensure_dev_pki(settings.home / "pki")
    return CheckpointSigner.from_p12(pki.seal_p12_path, pki.passphrase), pki.tsa_url


def dev_trust_roots(settings: Settings) -> list[Path]:
    """The dev PKI's root (trust anchor of the dev seal key and the dev TSA), if any."""
    root = settings.home / "pki" / "root.pem"
    return [root] if root.exists() else []


def make_checkpoint(
    settings: Settings,
    store: Store,
    *,
    signer: CheckpointSigner | None = None,
    tsa_url: str | None = None,
    timeout: float = 10.0,
) -> Checkpoint:
    """Sign and timestamp the chain as it stands and append the checkpoint to it.

    ``signer`` and ``tsa_url`` default to the dev PKI's (``tsa_url=""``: no
    timestamp). Re-running makes another checkpoint covering the previous one:
    harmless, so a retried task needs no special care.
    """
    if signer is None or tsa_url is None:
        dev_signer, dev_tsa = dev_signer_and_tsa(settings)
        signer = signer or dev_signer
        tsa_url = dev_tsa if tsa_url is None else tsa_url
    with store.session() as s:
        last = s.execute(
            select(AuditEvent.id, AuditEvent.hash).order_by(AuditEvent.id.desc()).limit(1)
        ).first()
        last_id, last_hash = (int(last[0]), str(last[1])) if last else (0, GENESIS)
        count = int(s.scalar(select(func.count()).where(AuditEvent.id <= last_id)) or 0)
    payload = {
        "scheme": SCHEME,
        "last_id": last_id,
        "last_hash": last_hash,
        "count": count,
        "made_at": utcnow().isoformat(),
    }
    data = canonical(payload)
    tst, ts_time = _timestamp(data, tsa_url, timeout) if tsa_url else (None, None)
    if tst is None:
        log.warning(
            "audit checkpoint up to row %d is untimestamped (TSA %s unreachable or not set)",
            last_id,
            tsa_url or "-",
        )
    detail = {
        "payload": payload,
        "algorithm": _algorithm(signer.key),
        "signature": base64.b64encode(_sign(signer.key, data)).decode(),
        "cert": _pem(signer.cert),
        "chain": [_pem(c) for c in signer.chain],
        "tst": base64.b64encode(tst).decode() if tst else None,
        "tsa": tsa_url or None,
    }
    with store.session() as s:
        append(s, [Event(CHECKPOINT_EVENT, CHECKPOINT_SUBJECT, None, detail)])
        s.flush()
        row_id = int(s.scalar(select(func.max(AuditEvent.id))) or 0)
    log.info(
        "audit checkpoint row %d covers %d rows up to row %d (timestamped: %s)",
        row_id,
        count,
        last_id,
        tst is not None,
    )
    return Checkpoint(row_id, last_id, last_hash, count, tst is not None, ts_time)


def run(settings: Settings, store: Store) -> StageResult:
    """Pipeline-stage form of :func:`make_checkpoint` (for ``ehub.tasks``)."""
    cp = make_checkpoint(settings, store)
    return StageResult(
        "checkpoint", 1, {"covered": cp.count, "last_id": cp.last_id, "timestamped": cp.timestamped}
    )


def check_checkpoint(detail: dict[str, Any], trust_roots: Sequence[TrustRoot]) -> CheckpointCheck:
    """Verify the signature (and its certificate chain) and the timestamp of one checkpoint.

    The coverage (does the named row still have the named hash) is checked by
    the chain walk in :mod:`ehub.audit_verify`, which has the rows.
    """
    problems: list[str] = []
    roots = _load_roots(trust_roots)
    try:
        payload = detail["payload"]
        data = canonical(payload)
        cert = x509.load_pem_x509_certificate(str(detail["cert"]).encode())
        chain = [x509.load_pem_x509_certificate(str(p).encode()) for p in detail.get("chain", [])]
        signature = base64.b64decode(str(detail["signature"]), validate=True)
    except (KeyError, TypeError, ValueError) as exc:
        return CheckpointCheck((f"checkpoint is malformed: {exc}",), False, None)
    try:
        _verify(cert.public_key(), signature, data)
    except InvalidSignature:
        problems.append("checkpoint signature does not verify against its certificate")
    except TypeError as exc:
        problems.append(f"checkpoint signature cannot be checked: {exc}")
    made_at = _parse_time(payload.get("made_at"))
    why = _chain_problem(cert, chain, roots, made_at)
    if why:
        problems.append(f"checkpoint signing certificate is not trusted: {why}")
    tst_b64 = detail.get("tst")
    if not tst_b64:
        return CheckpointCheck(tuple(problems), False, None)
    ts_problem, ts_time = _check_tst(str(tst_b64), data, roots)
    if ts_problem:
        problems.append(f"checkpoint timestamp does not verify: {ts_problem}")
    return CheckpointCheck(tuple(problems), True, ts_time)


# --- internals -------------------------------------------------------------


def _algorithm(key: HubKey) -> str:
    return "ecdsa-sha256" if isinstance(key, ec.EllipticCurvePrivateKey) else "rsa-pkcs1v15-sha256"


def _sign(key: HubKey, data: bytes) -> bytes:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(hashes.SHA256()))
    return key.sign(data, padding.PKCS1v15(), hashes.SHA256())


def _verify(public: object, signature: bytes, data: bytes) -> None:
    if isinstance(public, ec.EllipticCurvePublicKey):
        public.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    elif isinstance(public, rsa.RSAPublicKey):
        public.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
    else:
        raise TypeError(f"unsupported key type {type(public).__name__}")


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _parse_time(value: object) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None


def _load_roots(trust_roots: Sequence[TrustRoot]) -> list[x509.Certificate]:
    out = []
    for r in trust_roots:
        out.append(
            r
            if isinstance(r, x509.Certificate)
            else x509.load_pem_x509_certificate(Path(r).read_bytes())
        )
    return out


def _chain_problem(
    cert: x509.Certificate,
    chain: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    at: datetime | None,
) -> str | None:
    """Why ``cert`` does not chain (through ``chain``) to one of ``roots``; None if it does.

    Signatures and validity windows at ``at`` are checked; revocation is not
    (the checkpoint is evidence of what the hub held, not a seal to rely on).
    """
    if not roots:
        return "no trust roots given"
    current = cert
    for _ in range(len(chain) + 1):
        if at is not None and not (
            current.not_valid_before_utc <= at <= current.not_valid_after_utc
        ):
            return f"{current.subject.rfc4514_string()} not valid at {at.isoformat()}"
        if any(current == r for r in roots):
            return None
        for issuer in [*roots, *chain]:
            try:
                current.verify_directly_issued_by(issuer)
            except (ValueError, TypeError, InvalidSignature):
                continue
            if any(issuer == r for r in roots):
                return None
            current = issuer
            break
        else:
            return f"no issuer found for {current.subject.rfc4514_string()}"
    return "certificate chain too long"


def _timestamp(data: bytes, url: str, timeout: float) -> tuple[bytes | None, datetime | None]:
    """A TST (DER ContentInfo) over SHA-256(data), or (None, None) when the TSA fails."""
    from pyhanko.sign.timestamps import TimestampRequestError
    from pyhanko.sign.timestamps.requests_client import RequestsHTTPTimeStamper

    stamper = RequestsHTTPTimeStamper(url, timeout=timeout)
    try:
        token = asyncio.run(stamper.async_timestamp(hashlib.sha256(data).digest(), "sha256"))
    except (TimestampRequestError, OSError) as exc:
        log.warning("TSA %s failed: %s", url, exc)
        return None, None
    gen_time = token["content"]["encap_content_info"]["content"].parsed["gen_time"].native
    return token.dump(), gen_time


def _check_tst(
    tst_b64: str, data: bytes, roots: Sequence[x509.Certificate]
) -> tuple[str | None, datetime | None]:
    from asn1crypto import cms
    from asn1crypto import x509 as asn1_x509
    from pyhanko.sign.validation.errors import SignatureValidationError
    from pyhanko.sign.validation.generic_cms import validate_tst_signed_data
    from pyhanko_certvalidator import ValidationContext

    try:
        token = cms.ContentInfo.load(base64.b64decode(tst_b64, validate=True))
        signed = token["content"]
        gen_time = signed["encap_content_info"]["content"].parsed["gen_time"].native
    except (ValueError, TypeError, KeyError) as exc:
        return f"unreadable token ({exc})", None
    context = ValidationContext(
        trust_roots=[
            asn1_x509.Certificate.load(r.public_bytes(serialization.Encoding.DER)) for r in roots
        ],
        moment=gen_time,
        allow_fetching=False,
    )

    def imprint(algo: str) -> bytes:
        return hashlib.new(algo, data).digest()

    try:
        status = asyncio.run(validate_tst_signed_data(signed, context, imprint))
    except (SignatureValidationError, ValueError, TypeError) as exc:
        return f"invalid token ({exc})", gen_time
    if not status.get("intact"):
        return "the token does not cover this checkpoint", gen_time
    if not status.get("valid"):
        return "the TSA's signature is invalid", gen_time
    if status.get("trust_problem_indic") is not None:
        return f"the TSA is not trusted ({status['trust_problem_indic']})", gen_time
    return None, gen_time
