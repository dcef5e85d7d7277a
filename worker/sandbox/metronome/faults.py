"""Fault injection for the Metronome emulator: what the worker must survive unattended.

Each fault stands for a real failure mode: 429 (Metronome's rate limits, with
``X-Metronome-Rate-Limit-Type``), 5xx (an internal error that Metronome caches under the
request's ``Idempotency-Key``), latency, and "commit then drop" (the write happened but the
client only sees a broken connection: the case idempotency keys exist for). Faults apply
to every API endpoint (``/v1`` and ``/v2``: contract create included), or only to the
routes ``MetronomeFaults.routes`` names, and never to ``/_sandbox``, so inspection stays
reliable. "Commit then drop" applies to POSTs only.
"""

from __future__ import annotations

import math
import random
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class MetronomeFaults:
    """Per-run fault settings; rates are probabilities per ``/v1`` request."""

    server_error_rate: float = 0
    too_many_requests_rate: float = 0
    commit_then_drop_rate: float = 0
    latency_s: float = 0
    rate_limit_rps: float | None = None
    seed: int = 0
    #: "METHOD /template" keys (as in ``request_counts``, without the status) the faults are
    #: limited to, e.g. ``("POST /v1/contracts/create",)`` to drop contract creates while
    #: customers sync cleanly; empty means every API route.
    routes: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MetronomeFaults:
        known = {name: data[name] for name in cls.__dataclass_fields__ if name in data}
        if "routes" in known:
            if not isinstance(known["routes"], list | tuple):
                raise TypeError("routes must be an array of 'METHOD /template' strings")
            known["routes"] = tuple(str(route) for route in known["routes"])
        return cls(**known)

    def applies_to(self, route: str) -> bool:
        return not self.routes or route in self.routes


class TokenBucket:
    """Requests per second with a one-second burst: how Metronome's client limit behaves."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate)
        self.tokens = self.capacity
        self.stamp = time.monotonic()

    def take(self) -> float:
        """Take a token; 0 if allowed, else the seconds until one is available."""
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


@dataclass(frozen=True, slots=True)
class Throttle:
    """A 429 to send: ``Retry-After`` in whole seconds (the standard) and in milliseconds."""

    retry_after_s: float

    def headers(self) -> list[tuple[str, str]]:
        return [
            ("X-Metronome-Rate-Limit-Type", "client"),
            ("Retry-After", str(max(1, math.ceil(self.retry_after_s)))),
            ("Retry-After-Ms", str(max(1, math.ceil(self.retry_after_s * 1000)))),
        ]


class FaultInjector:
    """Rolls the dice for one request at a time (seeded, so a run is reproducible)."""

    def __init__(self, faults: MetronomeFaults) -> None:
        self.faults = faults
        self._random = random.Random(faults.seed)  # noqa: S311 - fault dice, not secrets
        self._bucket = TokenBucket(faults.rate_limit_rps) if faults.rate_limit_rps else None
        self.injected: Counter[str] = Counter()

    def throttle(self) -> Throttle | None:
        if self._bucket is not None:
            wait = self._bucket.take()
            if wait > 0:
                self.injected["rate_limited"] += 1
                return Throttle(wait)
        if self._roll(self.faults.too_many_requests_rate):
            self.injected["too_many_requests"] += 1
            return Throttle(0.05)
        return None

    def latency(self) -> float:
        if self.faults.latency_s > 0:
            self.injected["latency"] += 1
        return self.faults.latency_s

    def server_error(self) -> bool:
        hit = self._roll(self.faults.server_error_rate)
        if hit:
            self.injected["server_error"] += 1
        return hit

    def commit_then_drop(self) -> bool:
        hit = self._roll(self.faults.commit_then_drop_rate)
        if hit:
            self.injected["commit_then_drop"] += 1
        return hit

    def _roll(self, rate: float) -> bool:
        return rate > 0 and self._random.random() < rate
