"""``crmsync status``: cursors and their lag, the sync lag, the last poll, outcomes, the circuit
breakers, the parked syncs, dead letters (open, and resolved by a later sync), open "needs
attention" items."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from typing import Any

from worker.commands.bootstrap import runtime
from worker.outages.breaker import APIS, breaker_state
from worker.outages.parking import Parking
from worker.state.consumers import consumers
from worker.state.keys import QUEUE
from worker.state.listener import ListenerState, listener_report
from worker.state.logins import LoginBackoff
from worker.state.store import SyncStore
from worker.telemetry.alerts import sync_lag


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("status", help="cursors, last poll, outcomes, dead letters")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--dead-letters", type=int, default=20, help="how many to list")
    parser.set_defaults(func=run)


def collect_status(
    store: SyncStore, dead_letter_limit: int = 20, listener: ListenerState | None = None
) -> dict[str, Any]:
    now = datetime.now(UTC)
    cursors: dict[str, Any] = {}
    for name, value in sorted(store.cursors().items()):
        lag = (now - datetime.fromisoformat(value)).total_seconds()
        cursors[name] = {"value": value, "lag_s": round(lag, 1)}
    letters = store.dead_letter_book.groups(limit=dead_letter_limit, with_snapshots=False)
    last_poll = store.last_poll()
    # What the lag alert and crmsync_sync_lag_seconds use (a cursor's age also grows in a
    # quiet org; this does not).
    behind = sync_lag(store.cursors(), last_poll, now)
    governed = store.governor_state()
    parking = Parking(store.client, store.keys)
    oldest = parking.oldest()
    return {
        "metronome_rate": governed.as_dict() if governed is not None else None,
        "listener": listener_report(listener) if listener is not None else None,
        "breakers": {api: breaker_state(store.client, store.keys, api).as_dict() for api in APIS},
        "salesforce_login": LoginBackoff(store.client, store.keys).state().as_dict(),
        "parked": {"count": parking.count(), "oldest": oldest.summary() if oldest else None},
        "cursors": cursors,
        "sync_lag": {"from": behind[0], "lag_s": round(behind[1], 1)} if behind else None,
        "attention": {"open": store.attention.open_count()},
        "last_poll": last_poll,
        "outcomes": store.outcomes(),
        "queued": store.queued_messages(QUEUE),
        "consumers": [c.as_dict() for c in consumers(store.client, store.keys)],
        "dead_letters": {
            "count": store.dead_letter_book.open_count(),
            "resolved": store.dead_letter_book.resolved_count(),
            "latest": [
                {
                    "id": d.entry_id,
                    "account_id": d.account_id,
                    "kind": d.kind,
                    "reason": d.reason,
                    "at": d.at,
                    "count": d.count,
                    "first_at": d.first_at,
                }
                for d in letters
            ],
        },
    }


def run(args: argparse.Namespace) -> int:
    # Read-only: joins a running crmsync's Redis, never starts one, needs no mapping.
    with runtime(needs_credentials=False, needs_mapping=False, needs_celery=False) as rt:
        listener = ListenerState.from_url(rt.redis.url, rt.settings.redis_prefix)
        try:
            status = collect_status(rt.store(), args.dead_letters, listener)
        finally:
            listener.close()
    if args.json:
        print(json.dumps(status, sort_keys=True))
        return 0
    print("cursors:")
    for name, cursor in status["cursors"].items() or {}:
        print(f"  {name:<14} {cursor['value']}  (lag {cursor['lag_s']:.0f}s)")
    if not status["cursors"]:
        print("  (none yet: no poll has finished)")
    lag = status["sync_lag"]
    threshold = rt.settings.alert_lag_threshold_s
    if lag is not None:
        since = "the last ok poll" if lag["from"] == "last_ok_poll" else f"cursor {lag['from']}"
        print(f"sync lag: {lag['lag_s']:.0f}s (since {since}; alert above {threshold:.0f}s)")
    last = status["last_poll"]
    print(
        f"last poll: {last.get('finished_at', 'never')} status={last.get('status', '-')} "
        f"rows={last.get('rows', 0)} enqueued={last.get('enqueued', 0)}"
    )
    if last.get("status") == "failed" and last.get("reason"):
        print(f"  {last['reason']}")
    if status["salesforce_login"]["line"]:
        print(status["salesforce_login"]["line"])
    print("outcomes: " + ", ".join(f"{k}={v}" for k, v in sorted(status["outcomes"].items())))
    print(f"queued messages: {status['queued']}")
    print(f"workers: {describe_consumers(status['consumers'])}")
    print(f"metronome rate: {describe_rate(status['metronome_rate'])}")
    print_listener(status["listener"])
    for api, breaker in status["breakers"].items():
        print(f"{api} breaker: {describe_breaker(breaker)}")
    print(f"parked syncs: {describe_parked(status['parked'])}")
    dead = status["dead_letters"]
    print(
        f"dead letters: {dead['count']} open ({dead['resolved']} resolved by a later sync; "
        "crmsync dead-letters list)"
    )
    for letter in dead["latest"]:
        times = f" x{letter['count']}" if letter["count"] > 1 else ""
        print(
            f"  {letter['at']} #{letter['id']} {letter['account_id']} [{letter['kind']}]{times} "
            f"{letter['reason']}"
        )
    print(f"needs attention: {status['attention']['open']} open (crmsync attention)")
    return 0


def print_listener(report: dict[str, Any] | None) -> None:
    """Per topic: last event and keepalive, stored replay id, event lag, reconnects."""
    if not report or not report["topics"]:
        print("listener: never ran (`crmsync listen`)")
        return
    who = f"active: {report['holder']}" if report["active"] else "no active listener"
    print(f"listener: {who}")
    for topic, row in report["topics"].items():
        lag = row["event_lag_s"]
        print(
            f"  {topic}: {row['state']}, last event {row.get('last_event_at', 'never')}, "
            f"last keepalive {row.get('last_keepalive_at', 'never')}, "
            f"lag {'-' if lag is None else f'{lag:.2f}s'}, reconnects {row['reconnects']}, "
            f"events {row['events']} ({row['skipped']} skipped), "
            f"replay id {row['stored_replay_id'] or 'none'}"
        )


def describe_consumers(found: list[dict[str, Any]]) -> str:
    """Each worker's main loop, turning or STALLED (alive but consuming nothing)."""
    if not found:
        return "none has started"
    return ", ".join(
        f"{c['node']} {'STALLED' if c['stalled'] else 'consuming'} "
        f"(loop ticked {c['seconds_since_tick']:.0f}s ago)"
        for c in found
    )


def describe_rate(rate: dict[str, Any] | None) -> str:
    """The shared rate governor in one line: the rate it allows now, and why if throttled."""
    if rate is None:
        return "no request governed yet"
    line = f"{rate['allowed_rps']:g} req/s allowed (max {rate['max_rps']:g})"
    if not rate["throttled"]:
        return line + ", not throttled"
    refused = ", ".join(f"{kind} {count}" for kind, count in sorted(rate["refused"].items()))
    line += f", THROTTLED after 429s ({refused}; last {rate['seconds_since_refused']} s ago)"
    if rate["held_s"] > 0:
        line += f", every call held for {rate['held_s']:g} s more"
    return line


def describe_breaker(breaker: dict[str, Any]) -> str:
    """One API's circuit breaker in one line: closed, or open since when, why, next probe."""
    if breaker["state"] == "closed":
        since = f" since {breaker['since']}" if breaker["since"] else ""
        return f"closed{since}"
    state = "OPEN (probing)" if breaker["state"] == "half_open" else "OPEN"
    return (
        f"{state} since {breaker['since']}, next probe in {breaker['probe_in_s']} s: "
        f"{breaker['reason']}"
    )


def describe_parked(parked: dict[str, Any]) -> str:
    """How many syncs wait for an API, and the oldest of them."""
    oldest = parked["oldest"]
    if not parked["count"] or oldest is None:
        return "0"
    return (
        f"{parked['count']}, oldest {oldest['account_id']} parked since {oldest['since']} "
        f"({oldest['attempts']} attempts, next in {oldest['next_in_s']} s): {oldest['reason']}"
    )
