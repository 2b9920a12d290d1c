"""Client of the provincial e-license platform.

One method, :meth:`ProvincialClient.send_licenses`, posts a batch of license
versions, each with its idempotency key, and returns one :class:`Receipt` per
item. A repeated key is answered by the platform with the original receipt, so
re-sending after a crash or a lost answer never inserts twice.

Error translation at the boundary: connection errors, timeouts, 5xx and 429
become :class:`DestinationUnavailable` (retry later, ``retry_after`` honoured);
401/403/other 4xx become :class:`DestinationRejected`. The token is never logged.
Tests inject an ``httpx`` transport (``httpx.MockTransport`` or an ASGI app).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from connectors.errors import DestinationRejected, DestinationUnavailable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutboundLicense:
    """One license version to deliver."""

    idempotency_key: str
    license: dict[str, Any]
    document_b64: str
    document_sha256: str
    document_format: str = "pdf"


@dataclass(frozen=True)
class Receipt:
    """The platform's answer for one item."""

    idempotency_key: str
    accepted: bool
    receipt_id: str | None
    error_code: str | None
    message: str | None
    duplicate: bool
    raw: dict[str, Any]
    transient: bool = False
    """Not processed this time (the platform said: send it again, same key)."""


class PlatformUnavailable(DestinationUnavailable):
    """Transient platform failure; ``retry_after`` seconds when the platform said so."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ProvincialClient:
    """HTTP client of the provincial platform's license interface."""

    destination = "provincial"

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        verify: bool | str = True,
    ) -> None:
        self._client = httpx.Client(
            base_url=base_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
            transport=transport,
            verify=verify,
        )
        self.base_url = base_url

    def send_licenses(self, items: Sequence[OutboundLicense]) -> list[Receipt]:
        body = {
            "items": [
                {
                    "idempotency_key": it.idempotency_key,
                    "license": it.license,
                    "document": {
                        "format": it.document_format,
                        "sha256": it.document_sha256,
                        "content_b64": it.document_b64,
                    },
                }
                for it in items
            ]
        }
        try:
            resp = self._client.post("/api/v1/licenses/batch", json=body)
        except httpx.TimeoutException as exc:
            raise PlatformUnavailable(
                f"provincial platform {self.base_url} timed out after sending "
                f"{len(items)} items; they will be re-sent with the same idempotency keys"
            ) from exc
        except httpx.TransportError as exc:
            raise PlatformUnavailable(
                f"provincial platform {self.base_url} is unreachable ({exc.__class__.__name__}: "
                f"{exc}); check that it is running (dev: `ehub dev up`)"
            ) from exc
        log.info("provincial: POST batch of %d -> HTTP %d", len(items), resp.status_code)
        if resp.status_code == 429 or resp.status_code >= 500:
            retry_after = _retry_after(resp)
            raise PlatformUnavailable(
                f"provincial platform answered HTTP {resp.status_code}"
                + (f" (retry after {retry_after:g}s)" if retry_after is not None else ""),
                retry_after=retry_after,
            )
        if resp.status_code != 200:
            raise DestinationRejected(
                f"provincial platform refused the batch: HTTP {resp.status_code} {resp.text[:300]}"
            )
        try:
            receipts = resp.json()["receipts"]
            by_key = {r["idempotency_key"]: r for r in receipts}
        except (ValueError, KeyError, TypeError) as exc:
            raise PlatformUnavailable(
                "provincial platform sent a malformed receipt list; the batch counts as "
                "not delivered and will be re-sent with the same keys"
            ) from exc
        out: list[Receipt] = []
        for it in items:
            r = by_key.get(it.idempotency_key)
            if r is None:
                raise PlatformUnavailable(
                    f"provincial platform returned no receipt for key {it.idempotency_key}; "
                    "the batch will be re-sent with the same keys"
                )
            out.append(
                Receipt(
                    idempotency_key=it.idempotency_key,
                    accepted=r.get("status") == "accepted",
                    receipt_id=r.get("receipt_id"),
                    error_code=r.get("error_code"),
                    message=r.get("message"),
                    duplicate=bool(r.get("duplicate", False)),
                    raw=r,
                    transient=r.get("status") not in ("accepted", "rejected"),
                )
            )
        return out

    def reconciliation(self, day: str) -> PlatformDay:
        """The platform's report of the versions it received on ``day`` (+08:00)."""
        try:
            resp = self._client.get(f"/api/v1/reconciliation/{day}")
        except httpx.TransportError as exc:
            raise PlatformUnavailable(
                f"provincial platform {self.base_url}: reconciliation report for {day} "
                f"unavailable ({exc.__class__.__name__}: {exc})"
            ) from exc
        if resp.status_code == 429 or resp.status_code >= 500:
            raise PlatformUnavailable(
                f"provincial platform answered HTTP {resp.status_code} to the reconciliation "
                f"report for {day}",
                retry_after=_retry_after(resp),
            )
        if resp.status_code != 200:
            raise DestinationRejected(
                f"provincial platform refused the reconciliation report for {day}: "
                f"HTTP {resp.status_code} {resp.text[:300]}"
            )
        try:
            body = resp.json()
            items = [(str(i["identifier"]), int(i["version"]), str(i["receipt_id"]))
                     for i in body["items"]]  # fmt: skip
            return PlatformDay(day, int(body["count"]), str(body["digest"]), items)
        except (ValueError, KeyError, TypeError) as exc:
            raise PlatformUnavailable(
                f"provincial platform sent a malformed reconciliation report for {day}"
            ) from exc

    def held_versions(self, identifier: str) -> set[int]:
        """Versions of ``identifier`` the platform holds (any day)."""
        resp = self._client.get(f"/api/v1/licenses/{identifier}")
        if resp.status_code == 404:
            return set()
        if resp.status_code != 200:
            raise PlatformUnavailable(
                f"provincial platform answered HTTP {resp.status_code} for {identifier}"
            )
        return {int(v["version"]) for v in resp.json()["versions"]}

    def close(self) -> None:
        self._client.close()


@dataclass(frozen=True)
class PlatformDay:
    """A platform's reconciliation report of one day."""

    day: str
    count: int
    digest: str
    items: list[tuple[str, int, str]]
    """(identifier, version, receipt id) received that day."""


def _retry_after(resp: httpx.Response) -> float | None:
    value = resp.headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
