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
from pydantic import BaseModel, Field
from starlette.types import Receive, Scope, Send

FaultKind = Literal["http500", "http503", "http429", "timeout", "reset", "slow", "lose_receipt"]


class FaultRequest(BaseModel):
    """Body of ``POST /admin/faults``."""

    kind: FaultKind
    rate: float = Field(1.0, ge=0.0, le=1.0)
    count: int | None = Field(None, ge=1, description="fire at most this many times, then clear")
    seed: int | None = None
    delay: float | None = Field(None, ge=0.0, description="seconds, for timeout and slow")


class FaultInjector:
    """The one active fault (or none); thread-safe, deterministic for a seed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fault: FaultRequest | None = None
        self._remaining: int | None = None
        self._rng = random.Random()
        self.fired = 0

    def set(self, fault: FaultRequest) -> None:
        with self._lock:
            self._fault, self._remaining, self.fired = fault, fault.count, 0
            self._rng = random.Random(fault.seed)

    def clear(self) -> None:
        with self._lock:
            self._fault = self._remaining = None

    def draw(self) -> FaultRequest | None:
        with self._lock:
            fault = self._fault
            if fault is None or self._rng.random() >= fault.rate:
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
            return {**self._fault.model_dump(), "remaining": self._remaining, "fired": self.fired}


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
