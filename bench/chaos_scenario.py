"""The chaos scenario's settings and its schedule of failures, derived from one seed.

Pure (no I/O): the same ``ChaosConfig`` gives the same schedule, byte for byte, so a failing
run is replayed with ``--seed`` and the printed schedule says exactly what was done when.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, replace
from typing import Any

#: Event kinds, in the order a reader meets them in the issue.
KILL = "kill_worker"
RESPAWN = "respawn_worker"
REDIS_RESTART = "restart_redis"
REDIS_FLUSH = "flushall"
EXPIRE_SESSION = "expire_salesforce_sessions"
CLOSE_NEW = "close_new_account"
CLOSE_EXISTING = "close_existing_account"
RENAME = "rename_account"
#: Change-event trouble for the listener running beside the poll (each pair: on, then off).
EVENTS_LOST = "suppress_change_events"
EVENTS_DELAYED = "delay_change_events"
EVENTS_ON_TIME = "end_change_event_delay"
EVENTS_DUPLICATED = "duplicate_change_events"
EVENTS_SINGLE = "end_change_event_duplicates"
STREAM_STALL = "stall_event_streams"
STREAM_RESUME = "end_event_stream_stall"
#: The outage phase: Metronome answers every request 5xx for metronome_outage_s, Salesforce
#: for salesforce_outage_s (issue #16: nothing dead-lettered, everything synced after).
METRONOME_DOWN = "metronome_outage_start"
METRONOME_UP = "metronome_outage_end"
SALESFORCE_DOWN = "salesforce_outage_start"
SALESFORCE_UP = "salesforce_outage_end"


@dataclass(frozen=True, slots=True)
class ChaosConfig:
    accounts: int = 1000
    seed: int = 1
    workers: int = 4
    #: Share of seeded accounts with a won deal; the rest can be closed during the run.
    won_fraction: float = 0.9
    server_error_rate: float = 0.20
    too_many_requests_rate: float = 0.10
    commit_then_drop_rate: float = 0.05
    latency_s: float = 0.005
    #: METRONOME_MAX_RPS. The injected 429s come at random, whatever the rate, so they hold
    #: the governor at its floor (a fifth of this) for the whole run; at the default (50) the
    #: run took 9 minutes on 2 shared cores, near its timeout, for no more coverage.
    metronome_max_rps: float = 200.0
    kills: int = 2
    redis_restarts: int = 1
    flushes: int = 1
    session_expiries: int = 1
    new_closes: int = 40
    existing_closes: int = 20
    renames: int = 10
    #: Failures and closes happen between 2 s and this many seconds after the first poll.
    window_s: float = 40.0
    #: An orchestrator restarts a killed worker this long after the kill.
    respawn_after_s: float = 2.0
    #: Count the respawn delay from the later of the kill and the last Redis restart (the
    #: short run): a starting worker sweeps the unacked set at once, so the messages orphaned
    #: by both come back then, not at kombu's next periodic sweep (about 100 s).
    respawn_after_restart: bool = False
    #: 100 % 5xx on every Metronome call for this long, starting in the first half of the
    #: window (0: no outage); closes and renames go on meanwhile.
    metronome_outage_s: float = 180.0
    #: Every Salesforce data call answers 503 for this long (0: none).
    salesforce_outage_s: float = 30.0
    #: The breaker's probe interval and the parking's backoff cap, compressed (the defaults
    #: are 30 s and 300 s): the run reports how many requests the outage saw per minute and
    #: how long after recovery the last parked sync was done.
    breaker_probe_s: float = 10.0
    park_backoff_max_s: float = 20.0
    visibility_timeout_s: int = 30
    poll_interval_s: float = 2.0
    #: Small on purpose: a long look-back would re-enqueue a killed worker's account on the
    #: next poll and hide whether the broker really redelivers the lost message.
    overlap_s: float = 1.0
    timeout_s: float = 900.0
    #: Run ``crmsync listen`` beside the poll, with its own failures: changes that emit no
    #: event, events delivered late or twice, and a silent stream it must tear down.
    listener: bool = True
    events_lost: int = 3
    event_delay_s: float = 3.0
    event_trouble_s: float = 5.0
    #: Longer than the listener's keepalive bound, so the stall is detected and resubscribed.
    stall_s: float = 6.0
    listener_keepalive_timeout_s: float = 3.0
    #: The failover phase after the main run (bench/chaos_failover.py): won accounts it
    #: backfills through three Redis failovers; 0 skips it.
    failover_accounts: int = 300

    def public(self) -> dict[str, Any]:
        return asdict(self)

    def short(self) -> ChaosConfig:
        """The ``make test`` version: same fault kinds, ~100 accounts, one kill.

        The replacement worker starts after the visibility timeout: its start-up sweep restores
        the killed worker's message at once, instead of kombu's periodic sweep (about 100 s).
        """
        return replace(
            self,
            accounts=100,
            kills=1,
            new_closes=8,
            existing_closes=4,
            renames=3,
            window_s=12.0,
            respawn_after_s=float(self.visibility_timeout_s) + 1.0,
            respawn_after_restart=True,
            metronome_outage_s=15.0,
            salesforce_outage_s=6.0,
            breaker_probe_s=2.0,
            park_backoff_max_s=2.0,
            timeout_s=240.0,
            failover_accounts=0,  # tests/failover/ covers failovers in `make test`
        )


@dataclass(frozen=True, slots=True)
class Event:
    at: float
    kind: str
    index: int = 0

    def public(self) -> dict[str, Any]:
        return {"at_s": round(self.at, 3), "kind": self.kind, "index": self.index}


def schedule(config: ChaosConfig) -> list[Event]:
    """Every failure and every sales edit of the run, at seeded times within the window.

    Infrastructure failures are kept at least 3 s apart, so each one's effect (a restart takes
    about a second) is separate and attributable in the log.
    """
    rng = random.Random(config.seed)  # a reproducible schedule, not a secret
    lo, hi = 2.0, max(3.0, config.window_s)
    events: list[Event] = []
    infra = (
        [KILL] * config.kills
        + [REDIS_RESTART] * config.redis_restarts
        + [REDIS_FLUSH] * config.flushes
        + [EXPIRE_SESSION] * config.session_expiries
    )
    rng.shuffle(infra)
    taken: list[float] = []
    kills: list[tuple[float, int]] = []
    restarts: list[float] = []
    for number, kind in enumerate(infra):
        at = _spaced(rng, lo, hi, taken)
        taken.append(at)
        events.append(Event(at, kind, number))
        if kind == KILL:
            kills.append((at, number))
        elif kind == REDIS_RESTART:
            restarts.append(at)
    for at, number in kills:
        start = max([at, *restarts]) if config.respawn_after_restart else at
        events.append(Event(start + config.respawn_after_s, RESPAWN, number))
    if config.listener:
        events.extend(Event(rng.uniform(lo, hi), EVENTS_LOST, n) for n in range(config.events_lost))
        for on, off, lasts in (
            (EVENTS_DELAYED, EVENTS_ON_TIME, config.event_trouble_s),
            (EVENTS_DUPLICATED, EVENTS_SINGLE, config.event_trouble_s),
            (STREAM_STALL, STREAM_RESUME, config.stall_s),
        ):
            at = rng.uniform(lo, max(lo, hi - lasts))  # over within the window
            events += [Event(at, on), Event(at + lasts, off)]
    for kind, count in (
        (CLOSE_NEW, config.new_closes),
        (CLOSE_EXISTING, config.existing_closes),
        (RENAME, config.renames),
    ):
        events.extend(Event(rng.uniform(lo, hi), kind, n) for n in range(count))
    events.extend(_outages(config, lo, hi))
    return sorted(events, key=lambda e: (e.at, e.kind, e.index))


def _outages(config: ChaosConfig, lo: float, hi: float) -> list[Event]:
    """The outage phase, from a generator of its own: the other events keep the times they
    had before outages were added (a seed replays the same failures)."""
    rng = random.Random(config.seed + 101)  # a reproducible schedule, not a secret
    events: list[Event] = []
    if config.metronome_outage_s > 0:
        start = rng.uniform(lo, max(lo + 1.0, hi / 2))
        events += [
            Event(start, METRONOME_DOWN),
            Event(start + config.metronome_outage_s, METRONOME_UP),
        ]
    if config.salesforce_outage_s > 0:
        start = rng.uniform(lo, hi)
        events += [
            Event(start, SALESFORCE_DOWN),
            Event(start + config.salesforce_outage_s, SALESFORCE_UP),
        ]
    return events


def _spaced(rng: random.Random, lo: float, hi: float, taken: list[float]) -> float:
    for _ in range(50):
        at = rng.uniform(lo, hi)
        if all(abs(at - t) >= 3.0 for t in taken):
            return at
    return rng.uniform(lo, hi)
