"""Records posted to the hub (API sources): the states of a post in flight.

A post is stored as a raw record ``receiving`` (the normalize stage leaves it
alone), and a new license version it makes is stored ``sealing`` (the seal
stage leaves it alone) while the request seals it itself. A request that dies
(process killed, machine lost) leaves them so; :func:`reclaim`, run by the API
source's DAG, hands them to the ordinary stages once they are older than the
spec's ``api.reclaim_after_s``, so nothing posted is lost.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, update

from ehub.sources.spec import SourceSpec
from ehub.store.db import Store, utcnow
from ehub.store.models import LicenseRow, RawRecord

log = logging.getLogger(__name__)

RECEIVING = "receiving"
SEALING = "sealing"


def reclaim(store: Store, spec: SourceSpec) -> dict[str, int]:
    """Hand posts whose processing died to the pipeline: raw records still
    ``receiving`` become ``pending`` (normalize stage), licenses still ``sealing``
    become ``normalized`` (seal stage), once older than ``api.reclaim_after_s``."""
    cutoff = utcnow() - timedelta(seconds=spec.inbox.reclaim_after_s)
    with store.session() as s:
        raws = cast(CursorResult[Any], s.execute(
            update(RawRecord)
            .where(RawRecord.source_id == spec.id, RawRecord.state == RECEIVING,
                   RawRecord.extracted_at < cutoff)
            .values(state="pending")
        )).rowcount  # fmt: skip
        lics = cast(CursorResult[Any], s.execute(
            update(LicenseRow)
            .where(LicenseRow.source_id == spec.id, LicenseRow.state == SEALING,
                   LicenseRow.state_at < cutoff)
            .values(state="normalized", state_reason=None, state_at=utcnow())
        )).rowcount  # fmt: skip
    if raws or lics:
        log.warning("%s: %d posted records and %d licenses reclaimed from dead requests",
                    spec.id, raws, lics)  # fmt: skip
    return {"raw_reclaimed": raws, "licenses_reclaimed": lics}
