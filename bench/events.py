"""Change events: close → customer latency with ``crmsync listen``, its calls, a quiet hour.

A stack of its own (so the other phases' figures are untouched): embedded Redis, both
emulators over real HTTP (the Salesforce one also serving Pub/Sub over gRPC), a real
``crmsync worker`` (4 processes), a real ``crmsync listen`` and, for the latency, a real
``crmsync beat`` at the default poll interval (60 s): the poll runs as in production, the
events just come first.

1. **Calls per close**: deals closed through simple-salesforce (the rep's three writes), no
   beat, CLOSE_GAP_S apart (longer than the listener's coalescing window, so each close is its
   own burst: the worst case; closes within one window share one query); once every sync is
   recorded, the Salesforce *queries* (the reps' own writes are not crmsync's) and every
   Metronome request, per close. Counted by the emulators.
2. **Latency**: ``bench.latency.measure`` (50 closes; a watcher asks Metronome for the
   account's identity alias every 50 ms), with the beat on.
3. **Quiet hour**, computed, not waited: the Salesforce calls of one quiet poll with and
   without the re-opened/deleted streams (every CRMSYNC_EVENTS_INTERVAL_S), times the polls of
   an hour at the default interval, plus what the listener spends while idle, measured over a
   window with keepalives every second (an hour has 13 at Salesforce's 270 s) and scaled.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import latency
from bench.data import account_fields, seed_won_accounts
from tasks.poll import run_poll
from worker.ops.progress import terminal_total, wait_for_syncs
from worker.sandbox.salesforce.client import build_sandbox_salesforce
from worker.sandbox.stack import SANDBOX_METRONOME_TOKEN, SandboxStack
from worker.settings import Settings
from worker.state.listener import ListenerState

POLL_INTERVAL_S = Settings.model_fields["poll_interval_s"].default
EVENTS_INTERVAL_S = Settings.model_fields["events_interval_s"].default
TOPICS = ("/data/OpportunityChangeEvent", "/data/AccountChangeEvent")
CALL_CLOSES = 20
CLOSE_GAP_S = 0.5
QUIET_WINDOW_S = 10.0
EXISTING_ACCOUNTS = 200
HOUR_S = 3600.0

Progress = Callable[[str], None]


def _queries(stack: SandboxStack) -> int:
    """Salesforce SOQL requests (query + queryMore) the emulator answered."""
    assert stack.salesforce is not None  # noqa: S101
    counts = stack.salesforce.request_counts()
    return sum(v for k, v in counts.items() if k.split(" ")[0] in ("query", "query_more"))


def _wait(probe: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not probe():
        if time.monotonic() > deadline:
            raise RuntimeError(f"events bench: {what} did not happen in {timeout_s:.0f}s")
        time.sleep(0.05)  # polling a condition, not a synchronisation by delay


def _close(stack: SandboxStack, n: int) -> None:
    assert stack.salesforce is not None  # noqa: S101
    sf = build_sandbox_salesforce(stack.salesforce.url, stack.credentials)
    created = sf.Account.create(account_fields(n, prefix="Evented"))  # type: ignore[operator]
    deal = sf.Opportunity.create(  # type: ignore[operator]
        {
            "AccountId": created["id"],
            "Name": "New logo",
            "StageName": "Negotiation/Review",
            "CloseDate": "2026-11-30",
        }
    )
    sf.Opportunity.update(deal["id"], {"StageName": "Closed Won"})  # type: ignore[operator]


def calls_per_close(stack: SandboxStack, progress: Progress) -> dict[str, float]:
    assert stack.metronome is not None  # noqa: S101
    ctx = stack.context()
    try:
        baseline = terminal_total(ctx.store)
        queries0, metronome0 = _queries(stack), stack.metronome.total_requests()
        for n in range(CALL_CLOSES):
            _close(stack, 800_000 + n)
            time.sleep(CLOSE_GAP_S)  # spacing the closes, not waiting for anything
        if not wait_for_syncs(ctx.store, baseline, CALL_CLOSES, timeout_s=120, label="events"):
            raise RuntimeError("events bench: the closes were not synced by event in 120 s")
        queries, metronome = (
            _queries(stack) - queries0,
            stack.metronome.total_requests() - metronome0,
        )
    finally:
        ctx.close()
    result = {
        "salesforce_per_close": round(queries / CALL_CLOSES, 2),
        "metronome_per_close": round(metronome / CALL_CLOSES, 2),
    }
    progress(f"events: {CALL_CLOSES} closes by event: {result}")
    return result


def quiet_hour(stack: SandboxStack, progress: Progress) -> dict[str, float]:
    """Salesforce calls in an hour with no change, listener on, poll at its default."""
    ctx = stack.context()
    try:
        ctx.store.client.delete(ctx.store.keys.events_check)
        before = _queries(stack)
        run_poll(ctx)  # the poll that also reads the re-opened and deleted streams
        with_streams = _queries(stack) - before
        before = _queries(stack)
        run_poll(ctx)  # the ordinary quiet poll (the streams are not due again yet)
        plain = _queries(stack) - before
    finally:
        ctx.close()
    before, started = _queries(stack), time.monotonic()
    time.sleep(QUIET_WINDOW_S)  # the measured window itself (keepalives flow), not a wait
    listener_calls = (_queries(stack) - before) * HOUR_S / (time.monotonic() - started)
    polls = HOUR_S / POLL_INTERVAL_S
    streamed = HOUR_S / EVENTS_INTERVAL_S if EVENTS_INTERVAL_S else polls
    poll_calls = polls * plain + streamed * (with_streams - plain)
    result = {
        "quiet_poll_calls": plain,
        "quiet_poll_with_streams_calls": with_streams,
        "listener_calls_per_quiet_hour": round(listener_calls, 1),
        "quiet_hour_salesforce_calls": round(poll_calls + listener_calls, 1),
    }
    progress(f"events: quiet hour: {result}")
    return result


def run(base: Path, progress: Progress, *, closes: int = 50) -> dict[str, Any]:
    stack = SandboxStack(
        data_dir=base / "events-data",
        pubsub_keepalive_s=1.0,
        extra_env={
            "CRMSYNC_POLL_INTERVAL_S": str(int(POLL_INTERVAL_S)),
            "CRMSYNC_CONCURRENCY": "4",
        },
    )
    with stack:
        assert stack.salesforce is not None and stack.metronome is not None  # noqa: S101
        seed_won_accounts(stack.salesforce, EXISTING_ACCOUNTS)
        stack.start_worker(base / "events-worker.log", concurrency=4, name="events")
        stack.wait_for_worker()
        ctx = stack.context()
        try:
            run_poll(ctx)  # the existing customers exist before the listener starts
            _wait(lambda: terminal_total(ctx.store) >= EXISTING_ACCOUNTS, 300, "the backfill")
        finally:
            ctx.close()
        state = ListenerState.from_url(stack.redis_url)
        try:
            stack.start_listener(base / "events-listener.log")
            _wait(
                lambda: all(state.topic_stats(t).get("state") == "subscribed" for t in TOPICS),
                120,
                "the listener's subscriptions",
            )
            counts = calls_per_close(stack, progress)
            stack.start_beat(base / "events-beat.log")
            try:
                sf = build_sandbox_salesforce(stack.salesforce.url, stack.credentials)
                progress(f"events: latency, {closes} closes, beat every {POLL_INTERVAL_S:g}s")
                measured = latency.measure(
                    sf, stack.metronome.url, SANDBOX_METRONOME_TOKEN, closes=closes
                )
            finally:
                stack.stop_beats()
            quiet = quiet_hour(stack, progress)
        finally:
            state.close()
    result = {
        "event_latency_p50_s": round(measured.percentile(50), 2),
        "event_latency_p99_s": round(measured.percentile(99), 2),
        "event_latency_samples": len(measured.seconds),
        "event_latency_missing": measured.missing,
        "event_salesforce_calls_per_close": counts["salesforce_per_close"],
        "event_metronome_calls_per_close": counts["metronome_per_close"],
        "quiet_hour_salesforce_calls": quiet["quiet_hour_salesforce_calls"],
        "quiet_hour_listener_salesforce_calls": quiet["listener_calls_per_quiet_hour"],
    }
    progress(f"events: {result}")
    return result


if __name__ == "__main__":
    import json
    import os
    import sys
    import tempfile

    def _progress(message: str) -> None:
        print(f"[events] {message}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="crmsync-bench-events-") as tmp:
        figures = run(Path(tmp), _progress, closes=int(os.environ.get("BENCH_CLOSES", "50")))
    print(json.dumps(figures))
