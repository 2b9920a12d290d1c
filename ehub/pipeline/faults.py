"""Crash injection for the kill-and-rerun tests.

``EHUB_FAULT=<stage>:<n>`` makes ``<stage>`` end the process abruptly
(``os._exit``, like a SIGKILL: no cleanup, no rollback handlers) right after it
committed its n-th batch, or with ``<stage>:<n>:before`` just before committing
it. ``<stage>:<n>:hold`` stops the process (SIGSTOP) right after its n-th commit
instead, for a test to act on the world around it and continue it (SIGCONT).
Several specs are separated by commas. ``EHUB_FAULT=enospc:<stage>:<n>`` makes
the stage's n-th file write and every later one fail as on a full disk (``OSError`` ENOSPC). Inactive unless the
variable is set; never set it in production.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
from collections import Counter

log = logging.getLogger(__name__)

EXIT_CODE = 137


def crash_point(spec: str, stage: str, batch_no: int, when: str = "after") -> None:
    if not spec:
        return
    for one in spec.split(","):
        parts = one.split(":")
        if parts[0] != stage or len(parts) < 2 or int(parts[1]) != batch_no:
            continue
        wanted_when = parts[2] if len(parts) > 2 else "after"
        if wanted_when == "hold" and when == "after":
            log.error("fault injection: stopping process in %s after batch %d", stage, batch_no)
            os.kill(os.getpid(), signal.SIGSTOP)
        elif wanted_when == when:
            log.error("fault injection: killing process in %s at batch %d (%s)",
                      stage, batch_no, when)  # fmt: skip
            os._exit(EXIT_CODE)


_writes: Counter[str] = Counter()


def disk_full_point(spec: str, stage: str) -> None:
    """Raise ENOSPC from the n-th file write of ``stage`` on (``enospc:<stage>:<n>``)."""
    if not spec.startswith("enospc:"):
        return
    parts = spec.split(":")
    if len(parts) != 3 or parts[1] != stage:
        return
    _writes[stage] += 1
    if _writes[stage] >= int(parts[2]):
        raise OSError(errno.ENOSPC, "No space left on device (fault injection)")
