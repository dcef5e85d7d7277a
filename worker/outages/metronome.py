"""Metronome's circuit breaker: what counts as a failure, who probes, and the gate every
request passes (the shared state and its transitions: ``worker/outages/breaker.py``).

- **A failure is a sync** that ended in a transient Metronome error after the gateway's and
  the engine's own retries (5xx, no answer, a timeout, 429s beyond the governed resends, an
  unreadable answer), not a single request: a sync is what an outage denies. So an outage of
  writes only (reads still answer) opens the breaker too, and the chaos run's scattered 5xx,
  which the engine's re-reads absorb, do not. The threshold counts *different* accounts: one
  account whose sync always fails cannot open it for everyone. A success is a sync that made
  calls and ended well (or was refused for good: a 4xx means Metronome is up).
- **Admission** comes before a sync takes its account lock (``tasks/sync.py``): closed, go;
  open, the sync parks at once, with zero calls; the first sync asking once a probe is due is
  the probe (a parked sync the drain sends, or any other).
- **The gate** is checked by the gateway before every request (``gateway._governed``), so the
  syncs already running when the breaker opens stop at their next call instead of running
  out their retries against a dead API: they raise :class:`BreakerOpenError` and park. The
  probe's own thread passes (a thread-local flag). The poll's batched find meets the gate too
  and is skipped (it is only a hint): a poll never fails or waits on Metronome.

The gate reads the shared state at most every GATE_CACHE_S per process (a Redis round trip per
request would double the governor's); a process may send requests for that long after another
opened the breaker: the bound is CRMSYNC_CONCURRENCY x CRMSYNC_SYNC_THREADS requests per
process, once.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from worker.metronome.errors import TransientError
from worker.outages.breaker import (
    GO,
    METRONOME,
    Admission,
    BreakerState,
    CircuitBreaker,
    Policy,
    iso,
)

if TYPE_CHECKING:
    import redis

    from worker.settings import Settings
    from worker.state.keys import Keys

#: How long a process trusts the breaker state it read last (seconds).
GATE_CACHE_S = 0.25


class BreakerOpenError(TransientError):
    """Metronome's circuit breaker is open: the call was not sent. Transient (the sync parks
    and is replayed after recovery), never counted as another failure, never retried here."""


class MetronomeBreaker:
    """The breaker as the gateway and the syncs of one process use it (thread-safe)."""

    def __init__(self, breaker: CircuitBreaker, *, cache_s: float = GATE_CACHE_S) -> None:
        self._breaker = breaker
        self._cache_s = cache_s
        self._lock = threading.Lock()
        self._cached: BreakerState | None = None
        self._cached_at = -1e9
        self._local = threading.local()

    @classmethod
    def from_settings(cls, settings: Settings, client: redis.Redis, keys: Keys) -> MetronomeBreaker:
        policy = Policy(failures=settings.breaker_failures, probe_s=settings.breaker_probe_s)
        return cls(CircuitBreaker(client, keys, METRONOME, policy))

    @property
    def shared(self) -> CircuitBreaker:
        return self._breaker

    # -- syncs -------------------------------------------------------------------------------

    def admit(self) -> Admission:
        """Go, be the probe, or wait (park). No round trip while it is known closed."""
        known = self._known()
        if known is not None and not known.is_open:
            return Admission(GO, known.state)
        admission = self._breaker.admit()
        if admission.decision == GO:
            self._forget()  # it closed meanwhile: read it again on the next gate
        return admission

    @contextlib.contextmanager
    def probing(self, admission: Admission) -> Iterator[None]:
        """Run the body as the probe when ``admission`` made this sync the probe: its requests
        pass the gate; a probe that reported nothing (it made no call) gives its turn back."""
        if not admission.probe:
            yield
            return
        self._local.probe = True
        self._local.reported = False
        try:
            yield
        finally:
            reported = bool(getattr(self._local, "reported", False))
            self._local.probe = False
            if not reported:
                self._breaker.release(admission.token)

    def succeeded(self) -> bool:
        """A sync that called Metronome ended well; True when it closed the breaker."""
        probe = self._is_probe()
        # Only a state read within GATE_CACHE_S may skip the round trip: a failure counted
        # since (by this process or another) must be reset by this success, or failures
        # separated by successes would add up to an open breaker (seen in the chaos run).
        known = self._known()
        if not probe and known is not None and not known.is_open and known.failures == 0:
            return False  # nothing to reset: no round trip on the hot path
        closed = self._breaker.succeeded(probe=probe)
        self._reported()
        self._forget()
        return closed

    def failed(self, reason: str, *, account: str = "") -> str:
        """A sync of ``account`` ended in a transient Metronome error; returns opened,
        reopened, counted or open (``worker.outages.breaker.CircuitBreaker.failed``: the threshold
        counts different accounts)."""
        outcome = self._breaker.failed(reason, probe=self._is_probe(), subject=account)
        self._reported()
        self._forget()
        return outcome

    # -- the gateway -------------------------------------------------------------------------

    def gate(self) -> None:
        """Before each request: raise BreakerOpenError while the breaker is open (the probe's
        thread excepted)."""
        if self._is_probe():
            return
        state = self._known()
        if state is None:
            state = self._refresh()
        if state.is_open:
            raise BreakerOpenError(describe_open(state))

    def state(self) -> BreakerState:
        return self._refresh()

    # -- the cache -----------------------------------------------------------------------

    def _known(self) -> BreakerState | None:
        """The state read within the last GATE_CACHE_S, or None."""
        with self._lock:
            fresh = time.monotonic() - self._cached_at < self._cache_s
            return self._cached if fresh else None

    def _refresh(self) -> BreakerState:
        state = self._breaker.state()
        with self._lock:
            self._cached, self._cached_at = state, time.monotonic()
        return state

    def _forget(self) -> None:
        with self._lock:
            self._cached_at = -1e9

    def _is_probe(self) -> bool:
        return bool(getattr(self._local, "probe", False))

    def _reported(self) -> None:
        if self._is_probe():
            self._local.reported = True


def describe_open(state: BreakerState) -> str:
    """Why a call was not sent, for the log line of the sync it parks."""
    since = iso(state.opened_at_ms or state.since_ms) or "?"
    return (
        f"Metronome circuit breaker open since {since} (last failure: {state.reason or 'unknown'})"
    )
