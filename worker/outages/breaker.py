"""Circuit breakers shared by every crmsync process: when an API keeps failing, stop sending it
work, let one probe through now and then, and resume the moment a probe succeeds.

Why: without one, a Metronome outage was hit as hard as a healthy Metronome (258 requests a
minute in the issue's 8-minute outage, 3,892 a minute when only writes failed), every sync
burnt its retries and became a dead letter, and each poll did it again (issue #16). A breaker
per process would open on one worker and not on the three others: the state lives in Redis,
one hash per API, and every transition is one Lua script (``breaker.lua``), on Redis's clock.

::

    closed ──(CRMSYNC_BREAKER_FAILURES consecutive failures, or a quota)──▶ open
      ▲                                                                  │
      │ the probe succeeded                   CRMSYNC_BREAKER_PROBE_S later, the first
      │                                       caller to ask is the probe (one at a time,
      └──────────────────────── half_open ◀──── across the deployment; its turn is a lease)
                                   │
                                   └─ the probe failed: open again, next probe a pause later

What is a failure, what is a probe and what waits is the caller's business: for Metronome a
*sync* that ended in a transient error (``worker/outages/metronome.py``: a sync, not a request,
so a write-only outage whose reads still work opens it too), for Salesforce a *poll*
(``worker/outages/salesforce.py``). Only the probe closes an open breaker: a call sent before it
opened proves nothing about now.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.resources import files
from typing import TYPE_CHECKING, Any

from worker.state.breakers import BreakerRecord

if TYPE_CHECKING:
    from collections.abc import Callable

    import redis

    from worker.state.keys import Keys

log = logging.getLogger(__name__)

METRONOME = "metronome"
SALESFORCE = "salesforce"
APIS = (METRONOME, SALESFORCE)

#: A probe holds its turn this long at most: a probe whose process died gives it back by
#: itself (a Metronome sync that fails takes seconds; a poll, about one query).
PROBE_LEASE_S = 120.0

_SCRIPT = files("worker.outages").joinpath("breaker.lua").read_text(encoding="utf-8")

GO = "go"
PROBE = "probe"
WAIT = "wait"


@dataclass(frozen=True, slots=True)
class Policy:
    """When a breaker opens (``failures`` in a row) and how often it probes."""

    failures: int
    probe_s: float
    probe_lease_s: float = PROBE_LEASE_S


@dataclass(frozen=True, slots=True)
class Admission:
    """The breaker's answer to "may I call the API now?"."""

    decision: str  # go | probe | wait
    state: str
    probe_at_ms: float = 0.0
    #: The probe's turn, to give back unused (``release``).
    token: str = ""

    @property
    def go(self) -> bool:
        return self.decision in (GO, PROBE)

    @property
    def probe(self) -> bool:
        return self.decision == PROBE


@dataclass(frozen=True, slots=True)
class BreakerState:
    """One breaker as Redis holds it (``crmsync status``, the metrics, the alerts)."""

    api: str
    state: str
    now_ms: float
    since_ms: float | None = None
    failures: int = 0
    probe_at_ms: float | None = None
    #: The running probe's lease end (while half-open).
    probe_until_ms: float | None = None
    reason: str | None = None
    opened_at_ms: float | None = None
    closed_at_ms: float | None = None
    opens: int = 0
    probes: int = 0

    @property
    def is_open(self) -> bool:
        """Open or half-open: calls wait (all but the one probe)."""
        return self.state != "closed"

    @property
    def probe_due(self) -> bool:
        """Open, its pause over, and no probe out (or the last one's lease ran out)."""
        return (
            self.is_open
            and self.now_ms >= (self.probe_at_ms or 0)
            and self.now_ms >= (self.probe_until_ms or 0)
        )

    def as_dict(self) -> dict[str, Any]:
        probe_in = None
        if self.is_open and self.probe_at_ms is not None:
            probe_in = round(max(0.0, (self.probe_at_ms - self.now_ms) / 1000), 1)
        return {
            "state": self.state,
            "since": iso(self.since_ms),
            "failures": self.failures,
            "reason": self.reason,
            "probe_in_s": probe_in,
            "opened_at": iso(self.opened_at_ms),
            "closed_at": iso(self.closed_at_ms),
            "opens": self.opens,
            "probes": self.probes,
        }


class CircuitBreaker:
    """One API's breaker, for every thread of one process (each call is one round trip)."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        api: str,
        policy: Policy,
        *,
        server_now_ms: Callable[[], float] | None = None,
    ) -> None:
        self._record = BreakerRecord(client, keys, api, _SCRIPT)
        self.api = api
        self.policy = policy
        #: Tests pin the breaker's clock; production uses Redis's (TIME).
        self._server_now_ms = server_now_ms

    def admit(self) -> Admission:
        """Go (closed), be the probe (open and one is due), or wait."""
        reply = self._run("admit", repr(self.policy.probe_lease_s * 1000))
        decision, state, probe_at = (_text(v) for v in reply[:3])
        token = _text(reply[3]) if len(reply) > 3 else ""
        if decision == PROBE:
            log.info("%s circuit breaker: this call is the probe", self.api)
        return Admission(decision, state, float(probe_at), token)

    def succeeded(self, *, probe: bool) -> bool:
        """A call worked; True when it was the probe and closed the breaker."""
        reply = self._run("success", "1" if probe else "0")
        closed = bool(reply) and _text(reply[0]) == "closed"
        if closed:
            log.warning("%s circuit breaker CLOSED: the probe succeeded; calls resume", self.api)
        return closed

    def failed(
        self,
        reason: str,
        *,
        probe: bool = False,
        force: bool = False,
        probe_after_s: float | None = None,
        subject: str = "",
    ) -> str:
        """A call failed for a transient reason: count it (open after ``failures`` in a row,
        of as many different ``subject``s when one is given: one account whose sync always
        fails must not open it for everyone), or, for the probe, stay open a pause longer.
        ``force`` opens at once (a quota). Returns what happened: opened, reopened, counted
        or open."""
        pause = self.policy.probe_s if probe_after_s is None else probe_after_s
        reply = self._run(
            "failure",
            str(self.policy.failures),
            repr(pause * 1000),
            reason[:500],
            "1" if probe else "0",
            "1" if force else "0",
            subject,
        )
        outcome, failures = _text(reply[0]), int(_text(reply[1]))
        if outcome == "opened":
            log.warning(
                "%s circuit breaker OPEN after %d consecutive failure(s): %s; calls wait, one "
                "probe every %g s",
                self.api,
                failures,
                reason[:300],
                pause,
            )
        elif outcome == "reopened":
            log.warning(
                "%s circuit breaker stays open: the probe failed (%s); next probe in %g s",
                self.api,
                reason[:300],
                pause,
            )
        return outcome

    def release(self, token: str) -> None:
        """Give back a probe's turn that made no call (the next caller may probe at once)."""
        if token:
            self._run("release", token)

    def probe_now(self) -> None:
        """An operator fixed something: an open breaker's next caller is the probe."""
        self._run("probe_now")

    def state(self) -> BreakerState:
        return parse_state(self.api, self._run("state"))

    def _run(self, op: str, *extra: str) -> list[Any]:
        now = "" if self._server_now_ms is None else repr(self._server_now_ms())
        return self._record.run(op, now, *extra)


def parse_state(api: str, reply: list[Any]) -> BreakerState:
    now = float(_text(reply[0]))
    fields = {_text(reply[i]): _text(reply[i + 1]) for i in range(1, len(reply) - 1, 2)}

    def number(name: str) -> float | None:
        value = fields.get(name)
        return float(value) if value not in (None, "") else None

    return BreakerState(
        api=api,
        state=fields.get("state", "closed"),
        now_ms=now,
        since_ms=number("since"),
        failures=int(number("failures") or 0),
        probe_at_ms=number("probe_at"),
        probe_until_ms=number("probe_until"),
        reason=fields.get("reason"),
        opened_at_ms=number("opened_at"),
        closed_at_ms=number("closed_at"),
        opens=int(number("opens") or 0),
        probes=int(number("probes") or 0),
    )


def breaker_state(client: redis.Redis, keys: Keys, api: str) -> BreakerState:
    """For readers without a breaker of their own (``crmsync status``, metrics, alerts)."""
    return parse_state(api, BreakerRecord(client, keys, api, _SCRIPT).run("state", ""))


def iso(ms: float | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
