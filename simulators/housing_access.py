"""Access control and fault injection of the housing REST simulator.

- :class:`TokenIssuer`: OAuth2-style client credentials → short-lived bearer
  tokens, plus one static token that never expires (unless a fault says so);
  tells a missing/unknown token from an expired one.
- :class:`Faults`: the ``POST /admin/faults`` state — the next N API requests
  answer an HTTP status, are delayed, or lose their connection; tokens can be
  expired on demand.
- :class:`Counters`: what ``GET /admin/stats`` reports.

Thread-safe (FastAPI runs sync work in a thread pool). Never imports the hub.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

TokenState = Literal["ok", "missing", "invalid", "expired"]


@dataclass(frozen=True)
class Grant:
    """One issued bearer token."""

    token: str
    expires_in: float
    """Seconds from issue."""


class TokenIssuer:
    """Issues and checks bearer tokens."""

    def __init__(self, *, client_id: str, client_secret: str, static_token: str, ttl: float):
        self.client_id = client_id
        self._secret = client_secret
        self._static = static_token
        self.ttl = ttl
        self._issued: dict[str, float] = {}  # token → monotonic expiry
        self._static_expired = False
        self._lock = threading.Lock()
        self.issued_count = 0

    def issue(self, client_id: str, client_secret: str) -> Grant | None:
        """A new token for the right credentials, else None."""
        ok = hmac.compare_digest(client_id.encode(), self.client_id.encode())
        ok &= hmac.compare_digest(client_secret.encode(), self._secret.encode())
        if not ok:
            return None
        now = time.monotonic()
        token = "hz-" + secrets.token_urlsafe(24)
        with self._lock:
            # Forget tokens that expired long ago; recent ones still answer "expired".
            self._issued = {t: e for t, e in self._issued.items() if e > now - 86_400}
            self._issued[token] = now + self.ttl
            self.issued_count += 1
        return Grant(token, self.ttl)

    def check(self, authorization: str | None) -> tuple[TokenState, str]:
        """(state, token) of an ``Authorization`` header."""
        scheme, _, value = (authorization or "").partition(" ")
        token = value.strip()
        if scheme.lower() != "bearer" or not token:
            return "missing", ""
        with self._lock:
            if hmac.compare_digest(token.encode(), self._static.encode()):
                return ("expired" if self._static_expired else "ok"), token
            expiry = self._issued.get(token)
        if expiry is None:
            return "invalid", token
        return ("ok" if time.monotonic() < expiry else "expired"), token

    def expire_all(self, *, include_static: bool) -> int:
        """Expire every issued token now (and the static one when asked); returns how many."""
        now = time.monotonic()
        with self._lock:
            live = [t for t, e in self._issued.items() if e > now]
            for t in live:
                self._issued[t] = now - 1
            if include_static:
                self._static_expired = True
        return len(live)

    def restore_static(self) -> None:
        with self._lock:
            self._static_expired = False


class FaultRequest(BaseModel):
    """Body of ``POST /admin/faults``; replaces the active fault.

    ``{"status": 503, "count": 3}`` — the next 3 API requests answer 503;
    ``{"latency_ms": 800}`` — every API request waits 0.8 s until cleared;
    ``{"reset": true, "count": 1}`` — the next request loses its connection;
    ``{"expire_tokens": true}`` — every issued token expires now (one-shot);
    with ``"include_static": true`` the static token answers "expired" too, until
    ``DELETE /admin/faults``.
    """

    status: int | None = Field(None, ge=400, le=599)
    latency_ms: int | None = Field(None, ge=0, le=600_000)
    reset: bool = False
    count: int | None = Field(None, ge=1, description="requests affected; none = until cleared")
    retry_after: int = Field(1, ge=0, description="Retry-After seconds sent with 429 and 503")
    expire_tokens: bool = False
    include_static: bool = False

    @model_validator(mode="after")
    def _one_kind(self) -> FaultRequest:
        if self.status is not None and self.reset:
            raise ValueError("status and reset exclude each other")
        if self.include_static and not self.expire_tokens:
            raise ValueError("include_static only goes with expire_tokens")
        return self

    @property
    def per_request(self) -> bool:
        return self.status is not None or self.latency_ms is not None or self.reset


class Faults:
    """The active per-request fault (or none)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fault: FaultRequest | None = None
        self._remaining: int | None = None
        self.fired = 0

    def set(self, fault: FaultRequest) -> None:
        with self._lock:
            if fault.per_request:
                self._fault, self._remaining = fault, fault.count

    def clear(self) -> None:
        with self._lock:
            self._fault = self._remaining = None

    def draw(self) -> FaultRequest | None:
        """The fault this request suffers, consuming one of its count."""
        with self._lock:
            fault = self._fault
            if fault is None:
                return None
            self.fired += 1
            if self._remaining is not None:
                self._remaining -= 1
                if self._remaining <= 0:
                    self._fault = self._remaining = None
            return fault

    def describe(self) -> dict[str, Any] | None:
        with self._lock:
            if self._fault is None:
                return None
            return {**self._fault.model_dump(exclude_defaults=True), "remaining": self._remaining}


class Counters:
    """Request counters of ``GET /admin/stats``."""

    NAMES = (
        "requests",
        "ok",
        "items_served",
        "tokens_issued",
        "token_rejected",
        "unauthorized",
        "expired",
        "rate_limited",
        "faults",
        "bad_requests",
    )

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values = dict.fromkeys(self.NAMES, 0)

    def bump(self, name: str, by: int = 1) -> None:
        with self._lock:
            self._values[name] += by

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._values)
