"""Errors of the connectors package.

Connectors translate vendor errors (SQLAlchemy, httpx, kafka-python) into the
core tree of :mod:`ehub.errors` at their boundary, so callers handle one
hierarchy: ``SourceUnavailable`` / ``SourceRejected`` for department systems,
``DestinationUnavailable`` / ``DestinationRejected`` for platforms,
``BrokerUnavailable`` for the message bus. This module re-exports them.
"""

from ehub.errors import (
    BrokerUnavailable,
    DestinationError,
    DestinationRejected,
    DestinationUnavailable,
    SourceError,
    SourceRejected,
    SourceUnavailable,
)

__all__ = [
    "BrokerUnavailable",
    "DestinationError",
    "DestinationRejected",
    "DestinationUnavailable",
    "SourceError",
    "SourceRejected",
    "SourceUnavailable",
]
