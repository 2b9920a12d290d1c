"""The source protocol every department connector implements.

A source reads a department system incrementally in bounded batches:

- ``read(cursor)`` yields :class:`SourceBatch` objects, each holding at most
  ``batch_size`` records and the opaque cursor *just after* its last record.
  ``cursor`` is the watermark the hub stored after the last committed batch
  (``None`` on the first run); a connector resumes exactly after it.
- The hub writes a batch's records to its store and the batch's cursor as the
  new watermark in one transaction, and only then calls ``commit(batch)``:
  that is where a connector makes its own side effects (move a file to the
  processed folder, commit Kafka offsets). A crash between the two leaves the
  effect undone; the next run reads from the stored watermark, so nothing is
  lost, and the hub stores a record read twice once (its key is source key +
  payload hash), so nothing is duplicated.
- ``close()`` releases connections; it is safe to call twice.

Records are plain JSON-able dicts (``payload``) with a stable ``key`` (the
department's record key) and a ``version`` (what identifies this state of the
record at the source: an update time, an event offset, a file name + row).

Connectors never import Airflow; connection settings come in typed specs.
Failures of the whole source (unreachable, bad credentials, malformed file,
hostile XML) raise :class:`ehub.errors.SourceUnavailable` (transient) or
:class:`ehub.errors.SourceRejected` (terminal) naming the source and what to do.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """One department record as read."""

    key: str
    """Stable record key at the source (primary key, license number, event key)."""
    version: str
    """This state of the record at the source (update time, offset, file:row)."""
    payload: dict[str, Any]
    """Field name → JSON-able value, exactly as the department names them."""


@dataclass(frozen=True, slots=True)
class SourceBatch:
    """At most ``batch_size`` records and the cursor just after the last of them."""

    records: list[SourceRecord]
    cursor: str
    """Opaque watermark to store once the batch is committed to the hub store."""
    context: dict[str, Any] = field(default_factory=dict)
    """Connector-private data ``commit`` needs (e.g. offsets, the file to move)."""


class Source(Protocol):
    """What the extract stage needs from a department connector."""

    name: str

    def read(self, cursor: str | None) -> Iterator[SourceBatch]: ...

    def commit(self, batch: SourceBatch) -> None: ...

    def close(self) -> None: ...
