"""Joint seals (多部门联合签章) and cross-level seals (跨层级签章) on one license PDF.

The first seal certifies the document (a DocMDP certification signature that
allows form filling and signing, nothing else) and, in the same revision,
creates the empty signature fields of the seals that follow: DocMDP lets later
signers fill existing fields only, a new field would break the certification.
Every following seal is an approval signature into its reserved field, appended
as an incremental update, so each earlier seal stays valid and a verifier sees
the whole sequence. Any other change after the first seal (page content,
annotations) invalidates the certification, which ``ehub verify`` reports.

A seal that will come later (a higher-level department's, 跨层级) needs its
field reserved at the first sealing: ``seal_jointly(..., later=1)``.

Seals are placed right to left from :data:`signing.render.SEAL_BOX`, each over
the issuer block like a stamped seal, up to :data:`MAX_JOINT_SEALS`.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from signing.errors import UnsealableDocument
from signing.pades import Sealer
from signing.render import SEAL_BOX

MAX_JOINT_SEALS = 3
_STEP = 140  # points between the left edges of neighbouring seals


def joint_box(index: int) -> tuple[int, int, int, int]:
    """The visible box of the ``index``-th seal (0 = the certifying one, at SEAL_BOX)."""
    if not 0 <= index < MAX_JOINT_SEALS:
        raise UnsealableDocument(f"at most {MAX_JOINT_SEALS} seals fit on a license page")
    x1, y1, x2, y2 = SEAL_BOX
    return (x1 - index * _STEP, y1, x2 - index * _STEP, y2)


@dataclass(frozen=True, slots=True)
class JointSeal:
    """One department's part in a joint sealing."""

    sealer: Sealer
    reason: str
    location: str


def field_name(index: int) -> str:
    return f"EhubSeal{index + 1}"


def seal_jointly(
    pdf: bytes,
    seals: Sequence[JointSeal],
    *,
    later: int = 0,
    signing_time: datetime | None = None,
) -> bytes:
    """Apply ``seals`` in order: the first certifies and reserves the fields of the
    others and of ``later`` seals still to come (:func:`add_seal`)."""
    total = len(seals) + later
    if not seals:
        raise UnsealableDocument("a joint sealing needs at least one seal")
    if total > MAX_JOINT_SEALS:
        raise UnsealableDocument(f"at most {MAX_JOINT_SEALS} seals fit on a license page")
    first = seals[0]
    out = first.sealer.seal(
        pdf,
        field_name=field_name(0),
        reason=first.reason,
        location=first.location,
        signing_time=signing_time,
        certify=True,
        box=joint_box(0),
        reserve=[(field_name(i), joint_box(i)) for i in range(1, total)],
    )
    for i, part in enumerate(seals[1:], start=1):
        out = add_seal(out, part, index=i, signing_time=signing_time)
    return out


def add_seal(
    pdf: bytes, part: JointSeal, *, index: int, signing_time: datetime | None = None
) -> bytes:
    """Sign the reserved field of the ``index``-th seal (``index`` >= 1): a later
    department (a higher-level one, 跨层级) adds its seal to a document sealed
    earlier, without the other seals' keys."""
    if index < 1:
        raise UnsealableDocument("seal 0 certifies the document: use seal_jointly")
    joint_box(index)  # in range
    if field_name(index).encode() not in pdf or not _has_empty_field(pdf, field_name(index)):
        raise UnsealableDocument(
            f"the document has no empty signature field {field_name(index)}: the certifying "
            "seal must reserve it (seal_jointly(..., later=N)); a new field would void it"
        )
    return part.sealer.seal(
        pdf,
        field_name=field_name(index),
        reason=part.reason,
        location=part.location,
        signing_time=signing_time,
    )


def _has_empty_field(pdf: bytes, name: str) -> bool:
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.fields import enumerate_sig_fields

    reader = PdfFileReader(io.BytesIO(pdf), strict=False)
    return any(n == name and value is None for n, value, _ in enumerate_sig_fields(reader))
