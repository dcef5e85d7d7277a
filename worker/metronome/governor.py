"""The rate governor: every Metronome request of the deployment takes its turn from one
limiter in Redis, and that limiter slows down when Metronome says 429.

Why: Metronome publishes no rate for the customer and contract endpoints, and a 429's
``X-Metronome-Rate-Limit-Type: client`` names a limit on the whole API client: every worker
process and container spends one budget. When each process retried on its own, a 429 became
more 429s and re-reads (one account cost 7 to 24 calls at 50 req/s, issue #15). So:

- **One budget.** A GCRA limiter (the "theoretical arrival time" of the next request: one
  number) in one Lua script (``worker/state/rate.lua``, run by :mod:`worker.state.rate`),
  one round trip per request, on Redis's clock. A caller reserves the next slot and sleeps
  until it. Slots are never reserved more than HORIZON_S ahead, so a hold announced by a
  429 reaches the requests not yet sent; a thread whose reserved slot falls inside a hold, or
  was reserved before a decrease, that this process has learnt of since gives it back and
  asks again.
- **It adapts (AIMD).** A ``client`` 429 multiplies the shared rate by DECREASE -- once per
  round trip: a 429 for a request sent before the last decrease says nothing about the new
  rate -- and holds every process back for the ``Retry-After`` / ``Retry-After-Ms`` it
  carried (HOLD_WITHOUT_RETRY_AFTER_S when none: Metronome does not promise one). Then the rate
  climbs back by INCREASE_SHARE of the ceiling per second, up to METRONOME_MAX_RPS, and never
  falls below FLOOR_SHARE of it: below that, the API's own ``Retry-After`` holds pace us, and
  the log says the ceiling is set too high.
- A ``customer`` 429 is one customer's limit: that call waits what was asked, nobody else.
- **Redis away.** A request waits and asks again (with backoff) for up to REDIS_WAIT_S, logged
  and counted in ``crmsync_metronome_governor_redis_errors_total``; then it raises
  :class:`GovernorUnavailable` (a ``redis.ConnectionError``), which ends the sync the way any
  Redis outage does: the task retries later. A request never goes out ungoverned because
  Redis is away. Only a gateway built without Redis at all (tests, ``crmsync check``'s single
  call) is :class:`Ungoverned`, which says so in the log and counts every request it lets
  through.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import redis

from worker.state.keys import GOVERNOR_TTL_S
from worker.state.rate import GovernorState, SharedRate, rate_state
from worker.telemetry.metrics import (
    record_governor_redis_error,
    record_governor_wait,
    record_metronome_refusal,
    record_ungoverned_request,
)

if TYPE_CHECKING:
    from worker.settings import Settings
    from worker.state.keys import Keys

log = logging.getLogger(__name__)

#: The rate never falls below this share of METRONOME_MAX_RPS. A floor, because a 429 does not
#: say how far over the limit we are and a run of them (an outage answered with 429s) would
#: otherwise starve every sync; below it, the holds the API asks for still pace everyone.
FLOOR_SHARE = 0.2
#: A client 429 multiplies the rate by this: a real overshoot is corrected in a few round
#: trips (0.8**6 ≈ 0.26), and while the rate climbs back the deployment still uses about 90 %
#: of the limit it found.
DECREASE = 0.8
#: The rate climbs back by this share of the ceiling per second without a 429 (additive
#: increase): one decrease is undone in about 10 s, the floor in 40 s.
INCREASE_SHARE = 0.02
#: After a quiet spell, this many seconds' worth of requests may go back to back (GCRA's
#: tolerance): small, so a deployment starting up does not hit the API with a wall of calls.
BURST_S = 0.1
#: The furthest ahead a slot is reserved. Longer means fewer Redis round trips for threads at
#: the back of the queue; shorter means fewer reserved requests that a 429's hold would find
#: already on their way.
HORIZON_S = 0.5
#: The hold after a client 429 that named no wait.
HOLD_WITHOUT_RETRY_AFTER_S = 1.0
#: The longest hold honoured (seconds): longer asks go back to the task as a retry.
MAX_HOLD_S = 30.0
#: At most one "429s at the floor" warning per process this often (seconds).
FLOOR_WARNING_EVERY_S = 60.0
#: How long a request waits for Redis to come back before the sync gives up on it.
REDIS_WAIT_S = 30.0

LIMIT_TYPES = ("client", "customer")

__all__ = [
    "Governor",
    "GovernorState",
    "GovernorUnavailable",
    "Grant",
    "Policy",
    "RateGovernor",
    "Ungoverned",
    "governor_state",
    "limit_type_of",
]


class GovernorUnavailable(redis.ConnectionError):
    """Redis stayed unreachable for longer than a request may wait for its turn. A Redis
    error on purpose: the sync treats it as the Redis outage it is (the task retries)."""


@dataclass(frozen=True, slots=True)
class Grant:
    """A turn to send one request: its slot on the governor's clock (ms; 0 when ungoverned),
    when that slot was reserved, how long the caller waited for it, and the shared rate it was
    paced at (0: ungoverned)."""

    slot_ms: float
    waited_s: float
    rate: float = 0.0
    reserved_ms: float = 0.0


class Governor(Protocol):
    """What the gateway needs: a turn before each request, and word of each 429."""

    def acquire(self) -> Grant: ...

    def refused(
        self, grant: Grant, retry_after_s: float | None, limit_type: str | None
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class Policy:
    """The limiter's numbers; everything but ``max_rps`` has a reasoned default above."""

    max_rps: float
    floor_share: float = FLOOR_SHARE
    decrease: float = DECREASE
    increase_share: float = INCREASE_SHARE
    burst_s: float = BURST_S
    horizon_s: float = HORIZON_S
    hold_without_retry_after_s: float = HOLD_WITHOUT_RETRY_AFTER_S
    redis_wait_s: float = REDIS_WAIT_S

    def limits(self) -> list[str]:
        """ARGV[3:8] of the script: max, min, increase, burst, horizon, ttl."""
        return [
            repr(self.max_rps),
            repr(self.max_rps * self.floor_share),
            repr(self.max_rps * self.increase_share),
            repr(self.burst_s * 1000),
            repr(self.horizon_s * 1000),
            str(GOVERNOR_TTL_S * 1000),
        ]


def limit_type_of(raw: str | None) -> str:
    """``X-Metronome-Rate-Limit-Type`` as one of client, customer, unknown."""
    value = (raw or "").strip().lower()
    return value if value in LIMIT_TYPES else "unknown"


class RateGovernor:
    """The shared limiter, for every thread of one process (thread-safe)."""

    def __init__(
        self,
        client: redis.Redis,
        key: str,
        policy: Policy,
        *,
        sleep: Callable[[float], None] = time.sleep,
        server_now_ms: Callable[[], float] | None = None,
    ) -> None:
        self._rate = SharedRate(client, key)
        self._policy = policy
        self._limits = policy.limits()
        self._sleep = sleep
        #: Tests pin the governor's clock; production uses Redis's (TIME).
        self._server_now_ms = server_now_ms
        self._lock = threading.Lock()
        #: The end of the latest hold this process learnt of (server ms): a thread whose
        #: reserved slot falls inside it asks for a new one.
        self._hold_until_ms = 0.0
        #: The latest decrease of the shared rate this process learnt of (server ms): a slot
        #: reserved before it was paced at the old rate, and is given back.
        self._cut_ms = 0.0
        self._redis_away = False
        self._floor_warned_at = -FLOOR_WARNING_EVERY_S
        #: Redis errors met by this process (the tests wait on it instead of sleeping).
        self.redis_errors = 0

    @classmethod
    def from_settings(cls, settings: Settings, client: redis.Redis, keys: Keys) -> RateGovernor:
        return cls(client, keys.governor, Policy(max_rps=settings.metronome_max_rps))

    @property
    def policy(self) -> Policy:
        return self._policy

    def acquire(self) -> Grant:
        """Block until this thread may send one request; one Redis round trip when the queue
        is shorter than HORIZON_S, a few more for a thread further back."""
        started = time.monotonic()
        while True:
            reply = self._run("acquire")
            granted, wait_ms, rate, hold_until_ms, slot_ms, now_ms, cut_ms = reply
            self._learn(hold_until_ms, cut_ms)
            if not granted:
                # Come back when the slot we were shown is half a horizon away.
                self._sleep(max(0.01, (wait_ms / 1000) - self._policy.horizon_s / 2))
                continue
            if wait_ms > 0:
                self._sleep(wait_ms / 1000)
            with self._lock:
                # A 429 came back while we slept: a slot inside its hold, or reserved at the
                # rate it just lowered, is given back and taken again.
                stale = slot_ms < self._hold_until_ms or now_ms < self._cut_ms
            if stale:
                continue
            waited = time.monotonic() - started
            record_governor_wait(waited)
            return Grant(slot_ms=slot_ms, waited_s=waited, rate=rate, reserved_ms=now_ms)

    def refused(self, grant: Grant, retry_after_s: float | None, limit_type: str | None) -> None:
        """A request sent on ``grant`` was answered 429: lower the shared rate and hold
        everyone back (``client``), or make only this caller wait (``customer``)."""
        kind = limit_type_of(limit_type)
        record_metronome_refusal(kind)
        asked = None if retry_after_s is None else min(max(0.0, retry_after_s), MAX_HOLD_S)
        try:
            rate, hold_until_ms, cut_ms = self._run(
                "refused",
                kind,
                repr(-1.0 if asked is None else asked * 1000),
                repr(self._policy.hold_without_retry_after_s * 1000),
                repr(self._policy.decrease),
                repr(grant.reserved_ms),
            )
        except GovernorUnavailable:
            # Redis is away: the next acquire waits for it anyway; wait what the API asked.
            self._sleep(asked if asked is not None else self._policy.hold_without_retry_after_s)
            return
        self._learn(hold_until_ms, cut_ms)
        if kind == "customer":
            self._sleep(asked if asked is not None else self._policy.hold_without_retry_after_s)
            return
        with self._lock:
            at_floor = rate <= self._policy.max_rps * self._policy.floor_share
            warn = at_floor and time.monotonic() - self._floor_warned_at >= FLOOR_WARNING_EVERY_S
            if warn:
                self._floor_warned_at = time.monotonic()
        if warn:
            log.warning(
                "Metronome keeps answering 429 at the governor's floor (%.1f req/s); "
                "METRONOME_MAX_RPS=%g may be far above what this API client is allowed",
                rate,
                self._policy.max_rps,
            )

    def _learn(self, hold_until_ms: float, cut_ms: float) -> None:
        with self._lock:
            self._hold_until_ms = max(self._hold_until_ms, hold_until_ms)
            self._cut_ms = max(self._cut_ms, cut_ms)

    def state(self) -> GovernorState | None:
        return self._rate.state(self._server_now_ms)

    # -- one round trip, waiting for Redis when it is away -------------------------------

    def _run(self, op: str, *extra: str) -> list[float]:
        now = "" if self._server_now_ms is None else repr(self._server_now_ms())
        deadline: float | None = None
        delay = 0.05
        while True:
            try:
                reply = self._rate.run(op, now, *self._limits, *extra)
            except (redis.ConnectionError, redis.TimeoutError, redis.ReadOnlyError) as exc:
                moment = time.monotonic()
                deadline = deadline if deadline is not None else moment + self._policy.redis_wait_s
                self._note_redis_error(exc)
                if moment >= deadline:
                    raise GovernorUnavailable(
                        f"rate governor: Redis unreachable for {self._policy.redis_wait_s:g} s "
                        f"({type(exc).__name__}); the Metronome call was not sent"
                    ) from exc
                self._sleep(min(delay, deadline - moment))
                delay = min(delay * 2, 2.0)
                continue
            if self._redis_away:
                self._redis_away = False
                log.info("rate governor: Redis is back; Metronome calls are governed again")
            return reply

    def _note_redis_error(self, exc: Exception) -> None:
        record_governor_redis_error()
        with self._lock:
            self.redis_errors += 1
            first = not self._redis_away
            self._redis_away = True
        if first:
            log.warning(
                "rate governor: Redis unreachable (%s); Metronome calls wait for it (up to "
                "%g s each), none is sent ungoverned",
                type(exc).__name__,
                self._policy.redis_wait_s,
            )


class Ungoverned:
    """No shared budget: for a gateway built without Redis (unit tests, tools, ``crmsync
    check``'s single call). It says so -- once in the log, and every request it lets through
    in ``crmsync_metronome_ungoverned_requests_total`` -- and still waits what a 429 asked for
    (unless ``immediate``: tests' retries skip their waits)."""

    _announced = False

    def __init__(self, *, immediate: bool = False) -> None:
        self._immediate = immediate
        self._hold_until = 0.0
        self._lock = threading.Lock()

    def acquire(self) -> Grant:
        if not Ungoverned._announced:
            Ungoverned._announced = True
            log.info("Metronome calls from this process are not rate-governed (no Redis given)")
        record_ungoverned_request()
        with self._lock:
            wait = self._hold_until - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        return Grant(slot_ms=0.0, waited_s=max(0.0, wait))

    def refused(self, grant: Grant, retry_after_s: float | None, limit_type: str | None) -> None:
        record_metronome_refusal(limit_type_of(limit_type))
        if self._immediate:
            return
        wait = HOLD_WITHOUT_RETRY_AFTER_S if retry_after_s is None else retry_after_s
        with self._lock:
            self._hold_until = max(self._hold_until, time.monotonic() + min(wait, MAX_HOLD_S))


def governor_state(client: redis.Redis, keys: Keys) -> GovernorState | None:
    """For readers without a governor of their own (``crmsync status``, the metrics)."""
    return rate_state(client, keys)
