"""``make chaos``: the whole system on one machine while the network, the API, Redis and the
workers fail; then a verdict on duplicates, lost closes and drift.

What runs: embedded redis-server, the Salesforce emulator seeded with N awkward accounts, the
Metronome emulator injecting 5xx / 429 / commit-then-drop / latency, ``--workers`` real
``crmsync worker`` processes, one ``crmsync beat`` polling every couple of seconds and (unless
``--listener false``) one ``crmsync listen`` beside it, whose change events are lost, delayed,
duplicated and stalled on schedule: the poll must still catch what they miss. During
the run (schedule in :mod:`bench.chaos_scenario`, from ``--seed``) workers are SIGKILLed and
respawned, Redis is restarted with its data and later FLUSHALLed, the Salesforce sessions are
expired, Metronome answers every call 5xx for minutes and Salesforce every call 503 for a
while (the outage phase), and deals are closed and accounts renamed. Then it waits for
convergence (queue, unacked set and parking empty, then a final poll and empty again) and
judges (:mod:`bench.chaos_verify`).

stderr: the configuration, the schedule and each event as it happens (JSON lines, so a failing
run can be replayed exactly). stdout: one JSON object. Exit 1 on any duplicate, missing or
drifted customer, or an unexpected dead letter.
"""

from __future__ import annotations

import argparse
import functools
import json
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import redis

from bench.chaos_broker import pending, redelivered_keys, retrying
from bench.chaos_liveness import Liveness, Probed
from bench.chaos_scenario import (
    CLOSE_EXISTING,
    CLOSE_NEW,
    EVENTS_DELAYED,
    EVENTS_DUPLICATED,
    EVENTS_LOST,
    EVENTS_ON_TIME,
    EVENTS_SINGLE,
    EXPIRE_SESSION,
    KILL,
    METRONOME_DOWN,
    METRONOME_UP,
    REDIS_FLUSH,
    REDIS_RESTART,
    RENAME,
    RESPAWN,
    SALESFORCE_DOWN,
    SALESFORCE_UP,
    STREAM_RESUME,
    STREAM_STALL,
    ChaosConfig,
    Event,
    schedule,
)
from bench.chaos_verify import (
    dead_letter_reasons,
    expected_state,
    judge,
    judge_contracts,
    judge_lifecycle,
)
from bench.expansions import seed_expansions
from tasks.parked import run_drain
from tasks.poll import run_poll
from worker.demo.seed import deal_terms
from worker.sandbox.billing import PROVIDERS, provider_fields
from worker.sandbox.metronome import MetronomeFaults
from worker.sandbox.stack import Launcher, SandboxStack, spawn_cli
from worker.state.keys import Keys


def say(what: str, **data: Any) -> None:
    print(json.dumps({"chaos": what, **data}, default=str), file=sys.stderr, flush=True)


@dataclass
class Outage:
    """What the Metronome outage did: the requests it saw, and how long after it ended the
    last sync parked by it was done.

    ``recovery_s`` follows the syncs parked when Metronome came back: done once none of those
    accounts is parked any more (its replay synced it). The run's normal faults (a 5xx in
    five, 429s, dropped answers) go on after the outage and park a sync now and then, so
    "the parking is empty" (``parking_empty_s``) also waits for those, and says more about
    the normal faults' backoff than about the recovery."""

    down_at: float | None = None
    up_at: float | None = None
    requests_at_down: int = 0
    requests: int | None = None
    #: Injected-fault counts of the normal faults, put aside while the outage's own ran.
    faults_before: dict[str, int] = field(default_factory=dict)
    parked_peak: int = 0
    #: The accounts parked when Metronome came back, and the wall clock then (the breaker
    #: stamps its state changes with Redis's clock, in epoch ms).
    parked_at_up: frozenset[str] = frozenset()
    up_wall_s: float = 0.0
    #: From the end of the outage to the breaker closing (a probe got through): the parked
    #: syncs are all sent at that moment.
    resumed_s: float | None = None
    recovery_s: float | None = None
    parking_empty_s: float | None = None

    def per_minute(self) -> float | None:
        if self.requests is None or self.down_at is None or self.up_at is None:
            return None
        minutes = max(1e-9, (self.up_at - self.down_at) / 60)
        return round(self.requests / minutes, 1)


@dataclass
class Run:
    """Mutable state of one run: the stack, the clock, and what was done to it."""

    config: ChaosConfig
    stack: SandboxStack
    base: Path
    started: float = field(default_factory=time.monotonic)
    rng: random.Random = field(default_factory=random.Random)
    unwon_opportunities: list[str] = field(default_factory=list)
    won_accounts: list[str] = field(default_factory=list)
    dead_letters: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    redelivered: set[str] = field(default_factory=set)
    done: dict[str, int] = field(default_factory=dict)
    spawned: int = 0
    liveness: Liveness | None = None
    outage: Outage = field(default_factory=Outage)

    def now(self) -> float:
        return time.monotonic() - self.started

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.stack.redis_url, decode_responses=True, socket_timeout=5)

    @functools.cached_property
    def keys(self) -> Keys:
        """The stack's Redis key names (its prefix is fixed for the run)."""
        return Keys(self.stack.settings().redis_prefix)


def start(config: ChaosConfig, base: Path, launcher: Launcher = spawn_cli) -> Run:
    faults = _faults(config)
    stack = SandboxStack(
        data_dir=base / "data",
        launcher=launcher,
        metronome_faults=faults,
        pubsub_keepalive_s=1.0,
        extra_env={
            "CRMSYNC_VISIBILITY_TIMEOUT_S": str(config.visibility_timeout_s),
            "CRMSYNC_POLL_INTERVAL_S": str(config.poll_interval_s),
            "CRMSYNC_OVERLAP_S": str(config.overlap_s),
            "CRMSYNC_CONCURRENCY": "1",
            "METRONOME_MAX_RPS": str(config.metronome_max_rps),
            "CRMSYNC_BREAKER_PROBE_S": str(config.breaker_probe_s),
            "CRMSYNC_PARK_BACKOFF_MAX_S": str(config.park_backoff_max_s),
        },
    ).start()
    run = Run(config, stack, base, rng=random.Random(config.seed + 1))
    run.liveness = Liveness(restart=lambda worker: restart_hung(run, worker))
    assert stack.salesforce is not None  # noqa: S101
    # ``accounts`` is the number of *won* accounts (the N); the rest stay open, for
    # the deals closed during the run.
    stack.salesforce.seed(seeded(config), config.seed, config.won_fraction)
    assert stack.metronome is not None  # noqa: S101
    # Expansions and renewals of a share of the won deals, synced with them under the faults.
    seed_expansions(stack.salesforce, stack.metronome, max(1, config.accounts // 10), renewals=True)
    _index_opportunities(run)
    for n in range(config.workers):
        spawn_worker(run, n)
    stack.wait_for_worker(timeout_s=120)
    return run


def seeded(config: ChaosConfig) -> int:
    return round(config.accounts / config.won_fraction)


def _index_opportunities(run: Run) -> None:
    sf = run.stack.salesforce
    assert sf is not None  # noqa: S101
    won: set[str] = set()
    open_by_account: dict[str, str] = {}
    for opportunity_id in sf.ids("Opportunity"):
        row = sf.get("Opportunity", opportunity_id)
        if row.get("StageName") == "Closed Won":
            won.add(str(row["AccountId"]))
        elif row.get("StageName") != "Closed Lost":
            open_by_account.setdefault(str(row["AccountId"]), opportunity_id)
    run.won_accounts = sorted(won)
    run.unwon_opportunities = [o for a, o in sorted(open_by_account.items()) if a not in won]


def spawn_worker(run: Run, number: int) -> None:
    run.spawned += 1
    name = f"chaos{run.spawned}"
    process = run.stack.start_worker(run.base / f"worker-{number}.log", concurrency=1, name=name)
    if run.liveness is not None:
        run.liveness.track(process, name)


def restart_hung(run: Run, worker: Probed) -> None:
    """What an orchestrator does with a worker that fails its liveness probe."""
    say("liveness_restart", worker=worker.name, pid=worker.process.pid, at_s=round(run.now(), 1))
    run.stack.kill_process(worker.process)
    spawn_worker(run, 200 + run.spawned)


def pause(run: Run, seconds: float) -> None:
    """Let time pass on the runner's clock while the liveness probe keeps running."""
    end = time.monotonic() + seconds
    while True:
        if run.liveness is not None:
            run.liveness.tick()
        watch_outage(run)
        left = end - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(left, 0.5))  # the runner's clock, not a test synchronisation


#: Changes per "events lost" fault that commit without emitting a change event.
SUPPRESSED_CHANGES = 2
EVENT_FAULTS = (
    EVENTS_DELAYED,
    EVENTS_ON_TIME,
    EVENTS_DUPLICATED,
    EVENTS_SINGLE,
    STREAM_STALL,
    STREAM_RESUME,
)


def event_fault(kind: str, config: ChaosConfig) -> dict[str, Any]:
    """The Pub/Sub emulator's fault fields one scheduled change-event fault sets."""
    changes: dict[str, dict[str, Any]] = {
        EVENTS_DELAYED: {"delivery_delay_s": config.event_delay_s},
        EVENTS_ON_TIME: {"delivery_delay_s": 0.0},
        EVENTS_DUPLICATED: {"duplicate": True},
        EVENTS_SINGLE: {"duplicate": False},
        STREAM_STALL: {"stall": True},
        STREAM_RESUME: {"stall": False},
    }
    return changes[kind]


def parked_count(run: Run) -> int:
    return int(retrying(lambda: run.client().hlen(run.keys.parked_items)))


def parked_accounts(run: Run) -> frozenset[str]:
    items = retrying(lambda: run.client().hkeys(run.keys.parked_items))
    return frozenset(str(a) for a in items)


def breaker_closed_at_s(run: Run) -> float | None:
    """When Metronome's breaker last closed (epoch seconds), or None while it never did."""
    raw = retrying(lambda: run.client().hget(run.keys.breaker("metronome"), "closed_at"))
    return None if raw is None else float(raw) / 1000


def watch_outage(run: Run) -> None:
    """The parked syncs' peak during the outage, and when those parked at its end were done
    (and when the parking was first empty) after it."""
    outage = run.outage
    if outage.down_at is None or outage.parking_empty_s is not None:
        return
    parked = parked_accounts(run)
    outage.parked_peak = max(outage.parked_peak, len(parked))
    if outage.up_at is None:
        return
    since_up = round(run.now() - outage.up_at, 1)
    if outage.resumed_s is None:
        closed_at = breaker_closed_at_s(run)
        if closed_at is not None and closed_at >= outage.up_wall_s:
            outage.resumed_s = round(closed_at - outage.up_wall_s, 1)
            say("breaker_closed", resumed_s=outage.resumed_s)
    if outage.recovery_s is None and not parked & outage.parked_at_up:
        outage.recovery_s = since_up
        say(
            "recovered",
            recovery_s=since_up,
            parked_at_up=len(outage.parked_at_up),
            parked_peak=outage.parked_peak,
            parked_now=len(parked),
        )
    if not parked:
        outage.parking_empty_s = since_up
        say("parking_empty", parking_empty_s=since_up)


def _metronome_down(run: Run) -> dict[str, Any]:
    api = run.stack.metronome
    assert api is not None  # noqa: S101
    outage = run.outage
    outage.faults_before = api.faults_injected()
    outage.requests_at_down = api.total_requests()
    outage.down_at = run.now()
    api.set_faults(
        MetronomeFaults(server_error_rate=1.0, latency_s=run.config.latency_s, seed=run.config.seed)
    )
    return {"requests_so_far": outage.requests_at_down}


def _metronome_up(run: Run) -> dict[str, Any]:
    api = run.stack.metronome
    assert api is not None  # noqa: S101
    outage = run.outage
    outage.requests = api.total_requests() - outage.requests_at_down
    outage.up_at = run.now()
    outage.up_wall_s = time.time()
    outage.parked_at_up = parked_accounts(run)
    api.set_faults(_faults(run.config))
    return {"requests_during_outage": outage.requests, "per_minute": outage.per_minute()}


def _faults(config: ChaosConfig) -> MetronomeFaults:
    return MetronomeFaults(
        server_error_rate=config.server_error_rate,
        too_many_requests_rate=config.too_many_requests_rate,
        commit_then_drop_rate=config.commit_then_drop_rate,
        latency_s=config.latency_s,
        seed=config.seed,
    )


def apply(run: Run, event: Event) -> dict[str, Any]:
    """Do one scheduled thing; returns what was done (printed, so a run can be replayed)."""
    stack, sf = run.stack, run.stack.salesforce
    assert sf is not None  # noqa: S101
    if event.kind == METRONOME_DOWN:
        return _metronome_down(run)
    if event.kind == METRONOME_UP:
        return _metronome_up(run)
    if event.kind == SALESFORCE_DOWN:
        sf.set_faults(server_error_rate=1.0)
        return {}
    if event.kind == SALESFORCE_UP:
        sf.set_faults()
        return {}
    if event.kind == KILL:
        victims = [p for p in stack.workers if p.poll() is None]
        victim = victims[run.rng.randrange(len(victims))]
        stack.kill_process(victim)
        if run.liveness is not None:
            run.liveness.forget(victim)
        return {"pid": victim.pid}
    if event.kind == RESPAWN:
        spawn_worker(run, 100 + event.index)
        return {}
    if event.kind == REDIS_RESTART:
        stack.restart_redis()
        return {"port": stack.redis.port if stack.redis else None}
    if event.kind == REDIS_FLUSH:
        _snapshot_dead_letters(run)
        run.redelivered |= retrying(lambda: _redeliveries(run))
        retrying(lambda: run.client().flushall())
        return {}
    if event.kind == EXPIRE_SESSION:
        sf.expire_sessions()
        return {}
    if event.kind == EVENTS_LOST:
        sf.suppress_events(SUPPRESSED_CHANGES)  # committed, but no event: the poll's to find
        return {"suppressed_changes": SUPPRESSED_CHANGES}
    if event.kind in EVENT_FAULTS:
        change = event_fault(event.kind, run.config)
        sf.set_pubsub_faults(replace(sf.pubsub.faults, **change))
        return change
    if event.kind == CLOSE_NEW:
        n = 10_000 + event.index
        account = sf.insert(
            "Account",
            {
                "Name": f"Chaos Close {run.config.seed}-{event.index}",
                "Billing_Email__c": f"chaos-{event.index}@close.example",
                **provider_fields(PROVIDERS[event.index % len(PROVIDERS)], n),
            },
        )
        sf.insert(
            "Opportunity",
            {
                "AccountId": account,
                "Name": "Chaos deal",
                "StageName": "Closed Won",
                "CloseDate": "2026-11-24",
                "Amount": 1000,
                **deal_terms(event.index),
            },
        )
        return {"account_id": account}
    if event.kind == CLOSE_EXISTING and run.unwon_opportunities:
        opportunity = run.unwon_opportunities.pop(run.rng.randrange(len(run.unwon_opportunities)))
        sf.update(
            "Opportunity", opportunity, {"StageName": "Closed Won", **deal_terms(event.index)}
        )
        return {"opportunity_id": opportunity}
    if event.kind == RENAME and run.won_accounts:
        account = run.won_accounts[run.rng.randrange(len(run.won_accounts))]
        name = str(sf.get("Account", account)["Name"])
        sf.update("Account", account, {"Name": f"{name[:200]} (renamed {event.index})"})
        return {"account_id": account}
    return {"skipped": True}


def _snapshot_dead_letters(run: Run) -> None:
    """Dead letters die with FLUSHALL; keep them so the verdict sees every one. Every attempt
    (the dead-letter stream), not only the open groups: a dead letter a later sync resolved
    still happened, and the verdict must judge it."""
    ctx = run.stack.context()
    book = ctx.store.dead_letter_book
    try:
        for letter in retrying(lambda: book.occurrences_since(count=1_000_000)):
            run.dead_letters[letter.entry_id] = (letter.account_id, letter.kind, letter.reason)
    finally:
        ctx.close()


def wait_quiet(run: Run, deadline: float, quiet_checks: int = 3) -> bool:
    """True once nothing is queued, reserved or parked for ``quiet_checks`` seconds in a row.

    A parked sync is work not done yet: with the queue empty (beat may be stopped already)
    the runner drains the parking itself, as beat's drain would."""
    quiet = 0
    while run.now() < deadline:
        queued = retrying(lambda: pending(run.client()))
        parked = parked_count(run)
        if parked and not queued:
            retrying(lambda: _drain_once(run))
        busy = queued + parked
        quiet = quiet + 1 if busy == 0 else 0
        if quiet >= quiet_checks:
            return True
        pause(run, 1.0)
    return False


def final_poll(run: Run, deadline: float) -> dict[str, Any]:
    """One poll in this process once beat is stopped: what a late close would still need."""
    while run.now() < deadline:
        summary = retrying(lambda: _poll_once(run))
        if summary.get("status") == "ok":
            return summary
        pause(run, 1.0)
    return {"status": "timed_out"}


def _drain_once(run: Run) -> dict[str, Any]:
    ctx = run.stack.context()
    try:
        return run_drain(ctx)
    finally:
        ctx.close()


def _poll_once(run: Run) -> dict[str, Any]:
    ctx = run.stack.context()
    try:
        return run_poll(ctx)
    finally:
        ctx.close()


def verdict(run: Run) -> dict[str, Any]:
    stack = run.stack
    assert stack.metronome is not None  # noqa: S101
    _snapshot_dead_letters(run)
    ctx = stack.context()
    try:
        won_rows = list(ctx.source.all_records())
        expected = expected_state(won_rows, ctx.mapping.map_record)
        contracts = judge_contracts(
            won_rows, ctx.mapping.map_record, ctx.mapping.map_contract, stack.metronome.contracts()
        )
        lifecycle = judge_lifecycle(
            won_rows,
            ctx.mapping.map_record,
            map_expansion=ctx.mapping.map_expansion,
            map_contract=ctx.mapping.map_contract,
            edits=stack.metronome.contract_edits(),
            contracts=stack.metronome.contracts(),
        )
    finally:
        ctx.close()
    letters = list(run.dead_letters.values())
    result = judge(
        expected, stack.metronome.customers(), stack.metronome.billing_configurations(), letters
    )
    lettered = {account for account, _kind, _reason in letters}
    unreported = sorted(set(expected.unmappable) - lettered)
    distinct = {(a, k, r) for a, k, r in letters}
    redeliveries = len(run.redelivered | retrying(lambda: _redeliveries(run)))
    calls = sum(
        n for key, n in stack.metronome.request_counts().items() if key.split(" ")[1][:3] == "/v1"
    )
    return {
        "accounts": len(expected.desired) + len(expected.unmappable),
        "seeded_accounts": seeded(run.config),
        "customers": len(stack.metronome.customers()),
        "duplicates": result.duplicates,
        "missing": result.missing,
        "drifted": result.drifted,
        "contracts": len(stack.metronome.contracts()),
        "contracts_expected": contracts.expected,
        "duplicate_contracts": contracts.duplicates,
        "missing_contracts": contracts.missing,
        "edits_expected": lifecycle.edits_expected,
        "duplicate_edits": lifecycle.duplicate_edits,
        "missing_edits": lifecycle.missing_edits,
        "renewals_expected": lifecycle.renewals_expected,
        "duplicate_renewals": lifecycle.duplicate_renewals,
        "unattributed": result.unattributed,
        "dead_lettered": len(lettered),
        "dead_letter_reasons": dead_letter_reasons({(a, k, "") for a, k, _ in distinct}),
        "dead_letters_unexpected": len(result.unexpected_dead_letters),
        "unmappable_not_dead_lettered": len(unreported),
        "metronome_calls": calls,
        "redelivered_messages": redeliveries,
        "liveness_restarts": len(run.liveness.restarts) if run.liveness else 0,
        "faults_injected": {**_normal_faults(run), **run.done},
        # The outage phase: requests Metronome saw while down, per minute, and how long after
        # it came back the last sync it parked was done (Outage explains the two figures).
        "outage_requests": run.outage.requests,
        "outage_requests_per_min": run.outage.per_minute(),
        "resumed_s": run.outage.resumed_s,
        "recovery_s": run.outage.recovery_s,
        "parked_at_recovery": len(run.outage.parked_at_up),
        "parking_empty_s": run.outage.parking_empty_s,
        "parked_peak": run.outage.parked_peak,
        "parked_at_end": parked_count(run),
        "examples": {
            **result.examples,
            **contracts.examples,
            **lifecycle.examples,
            **(
                {"unexpected_dead_letters": result.unexpected_dead_letters[:5]}
                if result.unexpected_dead_letters
                else {}
            ),
            **({"unmappable_not_dead_lettered": unreported[:5]} if unreported else {}),
        },
        "ok": (
            result.ok
            and not unreported
            and not contracts.duplicates
            and not contracts.missing
            and not lifecycle.duplicate_edits
            and not lifecycle.missing_edits
            and not lifecycle.duplicate_renewals
            and parked_count(run) == 0
            and (run.outage.down_at is None or run.outage.recovery_s is not None)
        ),
    }


def listener_summary(run: Run) -> dict[str, Any]:
    """What the listener did beside the poll: events, skipped, reconnects, syncs by event."""
    from worker.state.listener import ListenerState, listener_report

    state = ListenerState.from_url(run.stack.redis_url)
    try:
        report = retrying(lambda: listener_report(state, with_replay_ids=False))
    finally:
        state.close()
    ctx = run.stack.context()
    try:
        reasons = [e.get("reason") for e in retrying(lambda: ctx.store.ledger(100_000))]
    finally:
        ctx.close()
    assert run.stack.salesforce is not None  # noqa: S101
    served = run.stack.salesforce.pubsub_counts()
    topics = report["topics"].values()
    return {
        "active": report["active"],
        # Counted by the emulator: Redis (the listener's own counts) is flushed mid-run.
        "events_delivered": served.get("events_delivered", 0),
        "subscribes": served.get("Subscribe", 0),
        "keepalives": served.get("keepalives", 0),
        # The rest since the FLUSHALL.
        "events": sum(t["events"] for t in topics),
        "skipped": sum(t["skipped"] for t in topics),
        "reconnects": sum(t["reconnects"] for t in topics),
        "changes_by_event": reasons.count("event"),
        "changes_by_poll": reasons.count("poll"),
    }


def _normal_faults(run: Run) -> dict[str, int]:
    """The emulator's injected-fault counts of the normal faults (20 % 5xx...), the outage's
    100 % 5xx left out (they are ``outage_requests``)."""
    assert run.stack.metronome is not None  # noqa: S101
    now = run.stack.metronome.faults_injected()
    if run.outage.down_at is None:
        return now
    before = run.outage.faults_before
    return {k: before.get(k, 0) + now.get(k, 0) for k in {*before, *now}}


def _redeliveries(run: Run) -> set[str]:
    """Messages delivered more than once (the killed workers' ones, above all): evidence that
    the broker gave them back, rather than a later poll re-reading the account."""
    return redelivered_keys(run.client(), run.stack.settings().redis_prefix)


def run_chaos(
    config: ChaosConfig, workdir: Path | None = None, launcher: Launcher = spawn_cli
) -> dict[str, Any]:
    """Run the scenario; returns the summary (``ok`` says whether every check held).
    ``launcher`` starts its workers, beat and listener (the test suite's is prewarmed)."""
    say("config", **config.public())
    events = schedule(config)
    say("schedule", events=[e.public() for e in events])
    with tempfile.TemporaryDirectory(prefix="crmsync-chaos-") as tmp:
        base = workdir or Path(tmp)
        base.mkdir(parents=True, exist_ok=True)
        booting = time.monotonic()
        run = start(config, base, launcher)
        say("started", seconds=round(time.monotonic() - booting, 1))
        try:
            run.stack.start_beat(base / "beat.log")
            if config.listener:
                run.stack.start_listener(
                    base / "listener.log",
                    env={
                        "CRMSYNC_LISTENER_KEEPALIVE_TIMEOUT_S": str(
                            config.listener_keepalive_timeout_s
                        ),
                        "CRMSYNC_LISTENER_LEASE_S": "5",
                    },
                )
            run.started = time.monotonic()
            for event in events:
                wait = event.at - run.now()
                if wait > 0:
                    pause(run, wait)
                detail = apply(run, event)
                run.done[event.kind] = run.done.get(event.kind, 0) + 1
                say("event", **event.public(), done_at_s=round(run.now(), 3), **detail)
            deadline = run.now() + config.timeout_s
            converged = wait_quiet(run, deadline)
            run.stack.stop_beats()
            summary_poll = final_poll(run, deadline)
            converged = converged and wait_quiet(run, deadline)
            say(
                "final_poll",
                enqueued=summary_poll.get("enqueued"),
                status=summary_poll.get("status"),
            )
            result = verdict(run)
            if config.listener:
                result["listener"] = listener_summary(run)
            result["converged"] = converged
            result["ok"] = bool(result["ok"] and converged)
            result["seed"] = config.seed
            result["seconds"] = round(run.now(), 1)
            result["logs"] = str(base) if workdir else None
            return result
        finally:
            stopping = time.monotonic()
            run.stack.stop()
            say("stopped", seconds=round(time.monotonic() - stopping, 1))


def failover_phase(config: ChaosConfig, workdir: Path | None) -> dict[str, Any]:
    """Three Redis failovers under a fixed REDIS_URL, on a stack of their own
    (bench/chaos_failover.py); ``failover_ok`` also needs each resumption within 30 s."""
    from bench.chaos_failover import FailoverConfig, run_failover_phase

    phase = FailoverConfig(accounts=config.failover_accounts, workers=min(config.workers, 2))
    with tempfile.TemporaryDirectory(prefix="crmsync-failover-") as tmp:
        base = (workdir / "failover") if workdir else Path(tmp)
        base.mkdir(parents=True, exist_ok=True)
        result = run_failover_phase(phase, base)
    resumed = result["failover_resumed_s"]
    result["failover_ok"] = bool(
        result["failover_ok"]
        and result["failover_converged"]
        and resumed is not None
        and resumed <= FAILOVER_RESUME_S
    )
    say("failover_phase", **result)
    return result


#: The promise: every process consumes again within 30 s of a failover.
FAILOVER_RESUME_S = 30.0


def _flag(text: str) -> bool:
    return text.strip().lower() in ("1", "true", "yes", "on")


def parse_args(argv: list[str] | None) -> tuple[ChaosConfig, Path | None]:
    defaults = ChaosConfig()
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__)
    parser.add_argument("--short", action="store_true", help="the make-test size (~100 accounts)")
    parser.add_argument("--workdir", type=Path, default=None, help="keep logs here")
    for name, value in defaults.public().items():
        kind: Any = _flag if isinstance(value, bool) else type(value)
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, default=None)
    args = parser.parse_args(argv)
    config = defaults.short() if args.short else defaults
    overrides = {
        name: getattr(args, name) for name in defaults.public() if getattr(args, name) is not None
    }
    config = replace(config, **overrides)
    if args.short and "respawn_after_s" not in overrides:
        config = replace(config, respawn_after_s=float(config.visibility_timeout_s) + 1.0)
    if "respawn_after_restart" in overrides:
        config = replace(config, respawn_after_restart=overrides["respawn_after_restart"])
    return config, args.workdir


def main(argv: list[str] | None = None) -> int:
    config, workdir = parse_args(argv)
    result = run_chaos(config, workdir)
    if config.failover_accounts:
        result.update(failover_phase(config, workdir))
        result["ok"] = bool(result["ok"] and result["failover_ok"])
    print(json.dumps(result, sort_keys=False))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
