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
import msgspec

from connectors.errors import DestinationRejected, DestinationUnavailable
from connectors.tls import ClientTls

log = logging.getLogger(__name__)

#: Where each platform lists the versions it holds of one record, per kind.
HELD_PATHS = {
    "provincial": {"license": "/api/v1/licenses", "case": "/api/v1/cases"},
    "national": {"license": "/api/v1/catalog", "case": "/api/v1/cases", "seal": "/api/v1/seals"},
}


class EncodedBatch(list[dict[str, Any]]):
    """A batch's items with their request body, ``{"items": [...]}`` as JSON, encoded
    once by :func:`encode_batch` (the caller's thread: the sender thread, waiting for
    the platform, then holds the interpreter lock only briefly)."""

    body: bytes


_encoder = msgspec.json.Encoder()


def encode_batch(items: Sequence[dict[str, Any]]) -> EncodedBatch:
    """``items`` with their request body (UTF-8 JSON)."""
    batch = EncodedBatch(items)
    batch.body = _encoder.encode({"items": batch})
    return batch


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
        tls: ClientTls | None = None,
    ) -> None:
        """``tls``: the CA bundle and the hub's client certificate for a platform that
        requires mutual TLS (it replaces ``verify``); ``None``: httpx's defaults."""
        self._client = httpx.Client(
            base_url=base_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
            transport=transport,
            verify=tls.ssl_context() if tls is not None else verify,
        )
        self.base_url = base_url

    def send_licenses(self, items: Sequence[OutboundLicense]) -> list[Receipt]:
        """Post license versions with their sealed documents (``/api/v1/licenses/batch``)."""
        return self.send(
            "/api/v1/licenses/batch",
            [
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
            ],
        )

    def send(self, endpoint: str, items: Sequence[dict[str, Any]]) -> list[Receipt]:
        """Post one batch (``{"items": items}``, each with its ``idempotency_key``) to a
        batch endpoint of the contract; one :class:`Receipt` per item, in item order."""
        name = f"{self.destination} platform {self.base_url}"
        try:
            body = items.body if isinstance(items, EncodedBatch) else encode_batch(items).body
            resp = self._client.post(
                endpoint, content=body, headers={"Content-Type": "application/json"}
            )
        except httpx.TimeoutException as exc:
            raise PlatformUnavailable(
                f"{name} timed out after sending {len(items)} items to {endpoint}; they will "
                "be re-sent with the same idempotency keys"
            ) from exc
        except httpx.TransportError as exc:
            raise PlatformUnavailable(
                f"{name} is unreachable ({exc.__class__.__name__}: {exc}); check that it is "
                "running (dev: `ehub dev up`)"
            ) from exc
        log.info("%s: POST %s batch of %d -> HTTP %d", self.destination, endpoint, len(items),
                 resp.status_code)  # fmt: skip
        if resp.status_code == 429 or resp.status_code >= 500:
            retry_after = _retry_after(resp)
            raise PlatformUnavailable(
                f"{self.destination} platform answered HTTP {resp.status_code} to {endpoint}"
                + (f" (retry after {retry_after:g}s)" if retry_after is not None else ""),
                retry_after=retry_after,
            )
        if resp.status_code != 200:
            raise DestinationRejected(
                f"{self.destination} platform refused the batch to {endpoint}: "
                f"HTTP {resp.status_code} {resp.text[:300]}"
            )
        try:
            receipts = resp.json()["receipts"]
            by_key = {r["idempotency_key"]: r for r in receipts}
        except (ValueError, KeyError, TypeError) as exc:
            raise PlatformUnavailable(
                f"{self.destination} platform sent a malformed receipt list; the batch counts "
                "as not delivered and will be re-sent with the same keys"
            ) from exc
        out: list[Receipt] = []
        for it in items:
            key = it["idempotency_key"]
            r = by_key.get(key)
            if not isinstance(r, dict):
                raise PlatformUnavailable(
                    f"{self.destination} platform returned no receipt for key {key}; "
                    "the batch will be re-sent with the same keys"
                )
            out.append(
                Receipt(
                    idempotency_key=key,
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

    def _get(self, path: str, params: dict[str, Any], what: str) -> Any:
        """GET a JSON answer: PlatformUnavailable for a transport error, 429 or 5xx (with
        Retry-After), DestinationRejected for another refusal."""
        try:
            resp = self._client.get(path, params=params)
        except httpx.TransportError as exc:
            raise PlatformUnavailable(
                f"{what} unavailable ({exc.__class__.__name__}: {exc})"
            ) from exc
        if resp.status_code == 429 or resp.status_code >= 500:
            raise PlatformUnavailable(
                f"{what}: HTTP {resp.status_code}", retry_after=_retry_after(resp)
            )
        if resp.status_code != 200:
            raise DestinationRejected(f"{what} refused: HTTP {resp.status_code} {resp.text[:300]}")
        try:
            return resp.json()
        except ValueError as exc:
            raise PlatformUnavailable(f"{what}: malformed answer ({exc})") from exc

    def reconciliation(self, day: str, kind: str = "license") -> PlatformDay:
        """The platform's report of the ``kind`` versions it received on ``day`` (+08:00)."""
        what = (
            f"{self.destination} platform {self.base_url}: {kind} reconciliation report for {day}"
        )
        body = self._get(f"/api/v1/reconciliation/{day}", {"kind": kind}, what)
        try:
            items = [(str(i["identifier"]), int(i["version"]), str(i["receipt_id"]))
                     for i in body["items"]]  # fmt: skip
            return PlatformDay(day, int(body["count"]), str(body["digest"]), items)
        except (ValueError, KeyError, TypeError) as exc:
            raise PlatformUnavailable(f"{what} is malformed") from exc

    def held_versions(self, identifier: str, kind: str = "license") -> set[int]:
        """Versions of ``identifier`` the platform holds (any day)."""
        path = HELD_PATHS[self.destination][kind]
        resp = self._client.get(f"{path}/{identifier}")
        if resp.status_code == 404:
            return set()
        if resp.status_code != 200:
            raise PlatformUnavailable(
                f"{self.destination} platform answered HTTP {resp.status_code} for {identifier}"
            )
        return {int(v["version"]) for v in resp.json()["versions"]}

    def return_page(self, division: str, after: int, limit: int = 500) -> ReturnPage:
        """One page of the return interface (属地返还): the versions held whose division
        starts with ``division``, after cursor ``after``."""
        what = f"{self.destination} platform {self.base_url}: return interface for {division}"
        body = self._get(f"/api/v1/return/{division}", {"after": after, "limit": limit}, what)
        try:
            items = body["items"]
            if not isinstance(items, list):
                raise TypeError("items is not a list")
            return ReturnPage(items, int(body["next"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise PlatformUnavailable(f"{what}: malformed answer ({exc})") from exc

    def close(self) -> None:
        self._client.close()


@dataclass(frozen=True)
class ReturnPage:
    """A page of a platform's return interface: raw items (each checked by the hub
    one by one, so one bad item never loses the page) and the next cursor."""

    items: list[Any]
    next: int


class NationalClient(ProvincialClient):
    """Client of the national platform: the same batch protocol, its own endpoints
    (catalog entries, case records, seal registrations; see ``schemas/``)."""

    destination = "national"


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
