"""Fault injection and rate limiting of the provincial platform simulator.

Deterministic for a seed: the injector draws from its own ``random.Random``.
Thread-safe: FastAPI runs sync endpoints in a thread pool.
"""

from __future__ import annotations

import math
import random
import threading
import time
from typing import Any, Literal

from fastapi import Response
from pydantic import BaseModel, Field, model_validator
from starlette.types import Receive, Scope, Send

FaultKind = Literal[
    "http500", "http503", "http429", "timeout", "reset", "slow", "lose_receipt", "partial"
]


class FaultRequest(BaseModel):
    """Body of ``POST /admin/faults``."""

    kind: FaultKind
    rate: float = Field(1.0, ge=0.0, le=1.0)
    count: int | None = Field(None, ge=1, description="fire at most this many times, then clear")
    seed: int | None = None
    delay: float | None = Field(None, ge=0.0, description="seconds, for timeout and slow")


class FaultMix(BaseModel):
    """Body of ``POST /admin/faults/mix``: several faults at once, each firing at its
    own rate of the requests (one draw per request; the rates must add up to ≤ 1)."""

    faults: list[FaultRequest] = Field(min_length=1)
    seed: int | None = None

    @model_validator(mode="after")
    def _rates_fit(self) -> FaultMix:
        if sum(f.rate for f in self.faults) > 1.0 + 1e-9:
            raise ValueError("the rates of a fault mix add up to more than 1")
        return self


class FaultInjector:
    """The active faults (none, one, or a mix); thread-safe, deterministic for a seed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[FaultRequest] = []
        self._remaining: int | None = None
        self._rng = random.Random()
        self.fired = 0
        self.fired_by_kind: dict[str, int] = {}

    def set(self, fault: FaultRequest) -> None:
        with self._lock:
            self._faults, self._remaining, self.fired = [fault], fault.count, 0
            self.fired_by_kind = {}
            self._rng = random.Random(fault.seed)

    def set_mix(self, mix: FaultMix) -> None:
        with self._lock:
            self._faults, self._remaining, self.fired = list(mix.faults), None, 0
            self.fired_by_kind = {}
            self._rng = random.Random(mix.seed)

    def clear(self) -> None:
        with self._lock:
            self._faults, self._remaining = [], None

    def draw(self) -> FaultRequest | None:
        with self._lock:
            # One draw per request: each fault of a mix fires at its own rate (rates add up).
            u, acc = self._rng.random(), 0.0
            for fault in self._faults:
                acc += fault.rate
                if u < acc:
                    break
            else:
                return None
            self.fired += 1
            self.fired_by_kind[fault.kind] = self.fired_by_kind.get(fault.kind, 0) + 1
            if self._remaining is not None:
                self._remaining -= 1
                if self._remaining <= 0:
                    self._faults, self._remaining = [], None
            return fault

    def describe(self) -> dict[str, Any] | None:
        with self._lock:
            if not self._faults:
                return None
            if len(self._faults) > 1:
                return {"mix": [f.model_dump() for f in self._faults], "fired": self.fired,
                        "fired_by_kind": dict(self.fired_by_kind)}  # fmt: skip
            return {**self._faults[0].model_dump(), "remaining": self._remaining,
                    "fired": self.fired, "fired_by_kind": dict(self.fired_by_kind)}  # fmt: skip


class RateLimiter:
    """Token bucket per bearer token: ``rate`` requests/s, burst of ``rate``."""

    def __init__(self, rate: float | None) -> None:
        self.rate = rate
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, token: str) -> int | None:
        """None when the request may pass, else whole seconds to wait (≥ 1)."""
        if self.rate is None:
            return None
        now = time.monotonic()
        capacity = max(1.0, self.rate)
        with self._lock:
            tokens, last = self._buckets.get(token, (capacity, now))
            tokens = min(capacity, tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[token] = (tokens - 1.0, now)
                return None
            self._buckets[token] = (tokens, now)
            return max(1, math.ceil((1.0 - tokens) / self.rate))


class DroppedConnection(Response):
    """Starts a response and returns without finishing it: the server drops the connection."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"4096")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"receipts": [', "more_body": True})
