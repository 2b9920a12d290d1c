"""Seal stage: normalized license versions → sealed PDF (PAdES) and/or OFD (SM2) + outbox rows.

Per batch: select each license's seal in the seal registry (:mod:`ehub.seals`:
the issuing department's own seal for the license type, else a cross-level
seal over its division), render the license, seal it, write the file
atomically (temp + rename), then in one transaction record the signature,
mark the license sealed, and write its delivery outbox rows and return-feed
outbox rows. A crash between the file and the commit only means the file is
written again on the re-run; the store never says "sealed" without a file.

A license with no usable seal (none registered, suspended, revoked, expired,
not yet valid, key unavailable) is HELD: ``state='held'``, ``state_reason``
``"<reason code>: <message>"`` and a ``held`` audit event (written again only
when the reason changes). Every run looks at held licenses again and seals
those whose seal has become usable.

Development: :func:`ensure_dev_seal` registers one cross-level seal per demo
department over Shandong (division 370000), each for its department's license
types, so every demo license has a seal unless one is suspended or revoked.

Formats: the license type's template says which sealed documents are issued
(``seal_formats``: PAdES PDF, OFD with a GB/T 38540 SM2 seal, or both). The
OFD part lives in :mod:`ehub.pipeline.seal_ofd`; its file is written beside
the PDF and recorded as a ``signatures`` row of format ``ofd``. Delivery to
the platforms sends the PDF, so delivery outbox rows are written only for a
license sealed as PDF (an OFD-only type is sealed, returned to the offices and
verifiable, but not delivered until the platform interfaces take OFD).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from ehub import feeds
from ehub.allocator import CycleCollector, frozen_heap, pin_mmap_threshold
from ehub.audit import Event, append
from ehub.config import Settings
from ehub.feeds import FeedRouter
from ehub.pipeline import StageResult, outbox, seal_shards
from ehub.pipeline.faults import crash_point
from ehub.pipeline.seal_files import FileWriter
from ehub.pipeline.seal_ofd import OfdSealing, SealedOfd
from ehub.records import license_from_json
from ehub.records_xml import license_to_xml
from ehub.seals import NoUsableSeal, Seal, SealRegistry, SealRegistryError, create_seal
from ehub.store.db import Store, insert_ignore, utcnow
from ehub.store.models import LicenseRow, SealRow, SignatureRow
from ehub.templates import Level, license_view, template_for
from signing import softhsm
from signing.errors import KeyAccessError, SealUnavailable, SigningError, UnsealableDocument
from signing.fastpades import FastSealers, render_and_seal
from signing.pades import PadesSealer
from signing.pkcs11_sealer import Pkcs11Sealer, is_pkcs11_uri, sealer_for
from signing.pki import DEV_DEPARTMENT_USCC, DevPKI, ensure_dev_pki
from signing.xmlsig import load_seal_material, sign_license_xml

log = logging.getLogger(__name__)

DEV_SEAL_CODE = "370000-SCJG-DZZZ-0001"
DEV_SEAL_DEPARTMENT = "山东省市场监督管理局"
DEV_SEAL_NAME = "山东省市场监督管理局电子证照专用章"


@dataclass(frozen=True)
class DevSeal:
    """A development seal registered by :func:`ensure_dev_seal`."""

    code: str
    department: str
    uscc: str
    name: str
    license_types: tuple[str, ...]


#: One cross-level dev seal per demo department (USCCs are structurally valid
#: test codes; type codes are those of schemas/codelists/license_types.json).
DEV_SEALS = (
    DevSeal(
        DEV_SEAL_CODE,
        DEV_SEAL_DEPARTMENT,
        DEV_DEPARTMENT_USCC,
        DEV_SEAL_NAME,
        ("11100000000013338W001", "11100000000013338W002", "11100000000013338W003"),
    ),
    DevSeal(
        "370000-ZJT-DZZZ-0001",
        "山东省住房和城乡建设厅",
        "11370000MB12345705",
        "山东省住房和城乡建设厅电子证照专用章",
        ("11100000000013338W004",),
    ),
    DevSeal(
        "370000-WJW-DZZZ-0001",
        "山东省卫生健康委员会",
        "11370000MB12345892",
        "山东省卫生健康委员会电子证照专用章",
        ("11100000000013338W005",),
    ),
    DevSeal(
        "370000-JTT-DZZZ-0001",
        "山东省交通运输厅",
        "11370000MB1234597W",
        "山东省交通运输厅电子证照专用章",
        ("11100000000013338W006",),
    ),
)


def document_path(settings: Settings, identifier: str, version: int) -> Path:
    return settings.out_dir / "licenses" / f"{identifier}_v{version}.pdf"


def ensure_dev_seal(settings: Settings, store: Store) -> tuple[int, DevPKI]:
    """The development seals: PKI generated at first run, each seal registered once
    (a suspended or revoked dev seal stays so). Returns the market-regulation seal's id."""
    pki = ensure_dev_pki(settings.home / "pki")
    with store.session() as s:
        known = set(
            s.scalars(select(SealRow.code).where(SealRow.code.in_([d.code for d in DEV_SEALS])))
        )
    for dev in DEV_SEALS:
        if dev.code in known:
            continue
        try:
            create_seal(
                store,
                settings,
                department=dev.department,
                department_uscc=dev.uscc,
                division="370000",
                name=dev.name,
                seal_type="电子证照专用章",
                license_types=dev.license_types,
                code=dev.code,
                cross_level=True,
            )
        except (SealRegistryError, IntegrityError):
            with store.session() as s:  # another process registered it at the same time
                if s.scalar(select(SealRow.id).where(SealRow.code == dev.code)) is None:
                    raise
    with store.session() as s:
        seal_id = s.scalar(select(SealRow.id).where(SealRow.code == DEV_SEAL_CODE))
    assert seal_id is not None
    return seal_id, pki


@dataclass(frozen=True, slots=True)
class Pending:
    """A license version to seal (a row of the store)."""

    id: int
    identifier: str
    version: int
    county: str
    issuer_code: str
    type_code: str
    state: str
    state_reason: str | None
    document: dict[str, Any]


_PENDING_COLUMNS = (
    LicenseRow.id,
    LicenseRow.identifier,
    LicenseRow.version,
    LicenseRow.county,
    LicenseRow.issuer_code,
    LicenseRow.type_code,
    LicenseRow.state,
    LicenseRow.state_reason,
    LicenseRow.document,
)


def load_pending(s: Any, license_id: int) -> Pending | None:
    row = s.execute(select(*_PENDING_COLUMNS).where(LicenseRow.id == license_id)).first()
    return None if row is None else Pending(*row)


@dataclass
class Outcome:
    """One license sealed (``pdf`` and/or ``ofd`` set, rows to write) or held
    (``hold_code`` set)."""

    license: Pending
    pdf: bytes | None = None
    ofd: bytes | None = None
    path: Path | None = None
    hold_code: str | None = None
    hold_message: str = ""
    signatures: list[dict[str, Any]] = field(default_factory=list)
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    feeds: list[dict[str, Any]] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)

    @property
    def sealed(self) -> bool:
        return self.pdf is not None or self.ofd is not None

    @property
    def held_reason(self) -> str:
        return f"{self.hold_code}: {self.hold_message}"


class SealContext:
    """What sealing needs across licenses of one process: the dev PKI, the opened
    sealers (one per seal key and level) and the settings."""

    def __init__(self, settings: Settings, store: Store) -> None:
        pin_mmap_threshold()  # a worker sealing for hours keeps its memory flat
        _dev_seal_id, self.pki = ensure_dev_seal(settings, store)
        (settings.out_dir / "licenses").mkdir(parents=True, exist_ok=True)
        self.settings = settings
        self.store = store
        self.sealers = _Sealers(settings, self.pki)
        self.ofd = OfdSealing(settings.home / "pki", settings.verify_url)
        self.fast = FastSealers(self.pki.passphrase)
        self._collector = CycleCollector()
        self.files = FileWriter(fault=settings.fault)  # each file flushed before its rename
        self._router: tuple[float, FeedRouter] | None = None

    def use_store(self, store: Store) -> None:
        """Work with ``store`` from now on (a forked shard's connections of its own)."""
        self.store, self._router = store, None

    def router(self) -> FeedRouter:
        """The offices receiving return feeds, re-read every 30 s (a long-running API
        server sees an office registered meanwhile)."""
        now = time.monotonic()
        if self._router is None or now - self._router[0] > 30:
            self._router = (now, FeedRouter.load(self.store, self.settings.return_topic_prefix))
        return self._router[1]

    def seal(self, registry: SealRegistry, lic: Pending) -> Outcome:
        """Render, seal and write one license's files; the store rows to record it."""
        self._collector.tick()
        settings = self.settings
        signed_at = datetime.now(UTC)
        tpl = template_for(lic.type_code)
        level, formats = tpl.pades_level, tpl.seal_formats
        ident, ver, doc = lic.identifier, lic.version, lic.document
        path = document_path(settings, ident, ver)
        sealed_pdf: bytes | None = None
        sealed_ofd: SealedOfd | None = None
        try:
            seal = registry.select(lic.issuer_code, lic.type_code, signed_at)
            sealer = self.sealers.get(seal, level)
            if "pades" in formats:
                # B-B with a key file: the bulk fast path (signing.fastpades, validated
                # like pyHanko's own output); B-T, B-LT and PKCS#11 keys: pyHanko.
                sealed_pdf = render_and_seal(
                    license_view(doc, seal_label=seal.name, verify_url=settings.verify_url),
                    fast=self.fast.for_seal(seal.key_ref, level, seal.image_path),
                    seal_slow=lambda pdf: _seal_with_retries(sealer, pdf, signed_at),
                    signing_time=signed_at, reason=SEAL_REASON, location=SEAL_LOCATION,
                )  # fmt: skip
            if "ofd" in formats:
                sealed_ofd = self.ofd.seal(seal, lic.id, doc, path, signed_at)
            xml = self.sealers.xml(seal, doc, sealer)
        except (NoUsableSeal, UnsealableDocument, KeyAccessError) as exc:
            # Held, never sealed: the reason is kept and the next run tries again.
            code = getattr(exc, "reason", None) or _HOLD_REASONS[type(exc)]
            out = Outcome(lic, hold_code=code, hold_message=str(exc))
            if lic.state != "held" or lic.state_reason != out.held_reason:
                out.events.append(Event("held", ident, ver, {"reason": code, "message": str(exc)}))
            return out
        out = Outcome(lic, pdf=sealed_pdf, path=path if sealed_pdf is not None else None)
        if sealed_pdf is not None:
            self.files.write(path, sealed_pdf)
        if sealed_ofd is not None:
            self.files.write(sealed_ofd.path, sealed_ofd.data)
            out.ofd = sealed_ofd.data
            out.signatures.append(sealed_ofd.signature)
        xml_path = path.with_suffix(".xml")  # the structured data, signed by the same seal
        self.files.write(xml_path, xml)
        out.signatures.append({
            "license_id": lic.id, "seal_id": seal.id, "format": "xmldsig",
            "level": "enveloped", "path": str(xml_path),
            "sha256": hashlib.sha256(xml).hexdigest(), "signed_at": signed_at,
        })  # fmt: skip
        if sealed_pdf is not None:
            out.signatures.append({
                "license_id": lic.id, "seal_id": seal.id, "format": "pades", "level": level,
                "path": str(path), "sha256": hashlib.sha256(sealed_pdf).hexdigest(),
                "signed_at": signed_at,
            })  # fmt: skip
            out.deliveries = outbox.rows_for("license", lic.id, ident, ver)  # PDF-based
        out.feeds, unroutable = self.router().rows("license", lic.id, ident, ver, doc,
                                                   lic.type_code)  # fmt: skip
        out.events += unroutable
        out.events.append(Event("sealed", ident, ver, _sealed_detail(formats, level, seal.code)))
        return out


def record(s: Any, outcomes: Sequence[Outcome]) -> None:
    """Write outcomes in the caller's transaction: signatures, outbox rows, states, audit."""
    insert_ignore(s, SignatureRow.__table__, [r for o in outcomes for r in o.signatures],
                  ["license_id", "format"])  # fmt: skip
    outbox.insert(s, [r for o in outcomes for r in o.deliveries])
    feeds.insert_rows(s, [r for o in outcomes for r in o.feeds])
    done = [o.license.id for o in outcomes if o.sealed]
    now = utcnow()
    if done:
        s.execute(
            update(LicenseRow)
            .where(LicenseRow.id.in_(done))
            .values(state="sealed", state_reason=None, state_at=now)
        )
    for o in outcomes:
        lic = o.license
        if o.hold_code is not None and (lic.state != "held" or lic.state_reason != o.held_reason):
            s.execute(
                update(LicenseRow)
                .where(LicenseRow.id == o.license.id)
                .values(state="held", state_reason=o.held_reason, state_at=now)
            )
    append(s, [e for o in outcomes for e in o.events])


def run(
    settings: Settings,
    store: Store,
    *,
    workers: int | None = None,
    min_parallel: int = seal_shards.PARALLEL_MIN_ROWS,
) -> StageResult:
    """Seal every license to seal. ``workers``: processes a run with ``min_parallel``
    licenses or more deals them among (None: ``settings.seal_workers``, 0 there meaning
    one per core; :mod:`ehub.pipeline.seal_shards`); then, alone, what came meanwhile."""
    n = seal_shards.default_workers(settings) if workers is None else workers
    ctx = SealContext(settings, store)  # shards inherit it: the PKI and seals loaded once
    forked = seal_shards.seal_sharded(settings, store, ctx, n, min_rows=min_parallel)
    (batches, sealed, held), after = forked or ((0, 0, 0), 0)
    more = seal_loop(settings, store, after=after, ctx=ctx)
    batches, sealed, held = batches + more[0], sealed + more[1], held + more[2]
    log.info("seal: %d batches, %d licenses sealed, %d held", batches, sealed, held)
    return StageResult("seal", batches, {"sealed": sealed, "held": held})


def seal_loop(
    settings: Settings,
    store: Store | None,
    *,
    after: int = 0,
    only: Sequence[int] | None = None,
    ctx: SealContext | None = None,
) -> tuple[int, int, int]:
    """Seal, one batch after another, the licenses to seal with an id above ``after``
    (or, ``only``: those of these ids, a shard's); (batches, sealed, held).
    ``store`` None: a store of its own (a shard process). ``ctx``: a context made
    before (a shard's, inherited from its parent), used with ``store``."""
    own = store is None
    store = Store(settings.database_url) if store is None else store
    try:
        if ctx is None:
            ctx = SealContext(settings, store)
        else:
            ctx.use_store(store)
        with frozen_heap():  # the full collections (ctx's CycleCollector) skip what is here
            return _seal_batches(settings, store, ctx, after, only)
    finally:
        if own:
            store.dispose()


def _seal_batches(
    settings: Settings, store: Store, ctx: SealContext, after: int, only: Sequence[int] | None
) -> tuple[int, int, int]:
    """The batches of :func:`seal_loop`."""
    ctx.files.deferred = True  # a batch's files flushed at once, before its commit
    batches = sealed = held = 0
    for todo in _to_seal(settings, store, after, only):
        batches += 1
        registry = SealRegistry.load(store)  # per batch: a suspension applies from the next
        outcomes = [ctx.seal(registry, lic) for lic in todo]
        ctx.files.flush()  # on disk before the store says sealed
        crash_point(settings.fault, "seal", batches, "before")
        with store.session() as s:
            record(s, outcomes)
        done = sum(o.sealed for o in outcomes)
        sealed += done
        held += len(todo) - done
        crash_point(settings.fault, "seal", batches)
    return batches, sealed, held


def _to_seal(
    settings: Settings, store: Store, after: int, only: Sequence[int] | None
) -> Iterator[list[Pending]]:
    """Batches of licenses to seal, in id order: those above ``after`` (read after the
    previous batch is recorded), or those of the ids ``only`` still to seal."""
    base = select(*_PENDING_COLUMNS).where(LicenseRow.state.in_(seal_shards.TO_SEAL))
    if only is not None:
        for ids in seal_shards.chunks(only, settings.batch_size):
            with store.session() as s:
                todo = [Pending(*row) for row in s.execute(
                    base.where(LicenseRow.id.in_(list(ids))).order_by(LicenseRow.id))]  # fmt: skip
            if todo:
                yield todo
        return
    while True:
        with store.session() as s:
            todo = [Pending(*row) for row in s.execute(
                base.where(LicenseRow.id > after).order_by(LicenseRow.id)
                .limit(settings.batch_size))]  # fmt: skip
        if not todo:
            return
        after = todo[-1].id
        yield todo


def _sealed_detail(formats: Sequence[str], level: str, seal_code: str) -> dict[str, Any]:
    """The ``sealed`` audit event's detail (unchanged for a PAdES-only type)."""
    detail: dict[str, Any] = {"format": "+".join(formats), "seal": seal_code}
    if "pades" in formats:
        detail["level"] = level
    return detail


#: Hold reason codes of the signing errors that are not a seal selection's.
_HOLD_REASONS: dict[type[Exception], str] = {
    UnsealableDocument: "unsealable",  # e.g. the fields do not fit the template's page
    KeyAccessError: "key_unavailable",  # e.g. the certificate was revoked (B-LT refuses)
}

SEAL_REASON = "电子证照签章 / e-license seal"
SEAL_LOCATION = "山东"
#: Attempts at one signature when the TSA or a revocation endpoint fails, and the
#: pause before each retry (seconds). After the last the license is held.
SEAL_ATTEMPTS = 3
SEAL_RETRY_PAUSE = (0.5, 2.0)


def _seal_with_retries(sealer: PadesSealer, pdf: bytes, signed_at: datetime) -> bytes:
    """Seal, retrying a transient failure (TSA / CRL endpoint); NoUsableSeal after the last."""
    for attempt in range(SEAL_ATTEMPTS):
        try:
            return sealer.seal(
                pdf, reason=SEAL_REASON, location=SEAL_LOCATION, signing_time=signed_at
            )
        except SealUnavailable as exc:
            if attempt + 1 == SEAL_ATTEMPTS:
                raise NoUsableSeal(
                    "service_unavailable", f"{exc} (after {SEAL_ATTEMPTS} attempts)"
                ) from exc
            time.sleep(SEAL_RETRY_PAUSE[min(attempt, len(SEAL_RETRY_PAUSE) - 1)])
    raise AssertionError("unreachable")


class _Sealers:
    """One opened sealer per (seal key, PAdES level): PKCS#12 bundles of the dev PKI
    or imported, or keys in a PKCS#11 token (one persistent session per process)."""

    def __init__(self, settings: Settings, pki: DevPKI) -> None:
        self._settings = settings
        self._pki = pki
        self._open: dict[tuple[str, Level], PadesSealer] = {}
        self._xml_keys: dict[str, tuple[Any, Any, Any]] = {}

    def get(self, seal: Seal, level: Level) -> PadesSealer:
        key = (seal.key_ref, level)
        if key not in self._open:
            if is_pkcs11_uri(seal.key_ref):
                softhsm.activate(self._settings.home / "hsm")  # the dev token, when there is one
            options: dict[str, Any] = {"level": level, "stamp_image": seal.image_path}
            if level != "B-B":
                options |= {"tsa_url": self._pki.tsa_url, "trust_roots": [self._pki.root_cert_path]}
            try:
                self._open[key] = sealer_for(
                    seal.key_ref, passphrase=self._pki.passphrase, **options
                )
            except (SigningError, OSError) as exc:
                raise NoUsableSeal(
                    "key_unavailable", f"seal {seal.code}: cannot open its key: {exc}"
                ) from exc
        return self._open[key]

    def xml(self, seal: Seal, doc: dict[str, Any], sealer: PadesSealer) -> bytes:
        """The license's canonical XML with an enveloped XMLDSig by ``seal``. A key in
        a PKCS#11 token signs through ``sealer``'s open session (it never leaves the
        token); a PKCS#12 bundle is loaded once."""
        if seal.key_ref not in self._xml_keys:
            try:
                if isinstance(sealer, Pkcs11Sealer):
                    self._xml_keys[seal.key_ref] = sealer.xml_material()
                else:
                    self._xml_keys[seal.key_ref] = load_seal_material(
                        Path(seal.key_ref), self._pki.passphrase
                    )
            except SigningError as exc:
                raise NoUsableSeal(
                    "key_unavailable", f"seal {seal.code}: cannot open its key: {exc}"
                ) from exc
        key, cert, chain = self._xml_keys[seal.key_ref]
        return sign_license_xml(license_to_xml(license_from_json(doc)), key, cert, chain)
