"""``crmsync parked``: the syncs waiting for an API to come back -- list them, or retry them now.

They drain by themselves (README "Reliability"); ``retry-now`` is for an operator who fixed
something (a firewall rule, a token) and does not want to wait for the next backoff: it makes
the parked syncs due now, lets Metronome's breaker probe at once if it is open, and asks a
worker to drain. Both only touch Redis and the queue: no credentials, no mapping, and
``list`` never starts an embedded Redis (read-only, like ``status``).
"""

from __future__ import annotations

import argparse
import json
import time

from mappings.ids import normalize_salesforce_ids
from worker.commands.bootstrap import runtime
from worker.outages.breaker import METRONOME, CircuitBreaker, Policy, breaker_state
from worker.outages.parking import Parking
from worker.queue.names import DRAIN
from worker.state.metronome_token import TokenRefusals


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "parked", help="syncs waiting for Metronome to come back: list them, or retry them now"
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser(
        "list", help="every parked sync (or the given accounts), oldest first"
    )
    listing.add_argument("account_ids", nargs="*", metavar="ACCOUNT_ID")
    listing.add_argument("--json", action="store_true", help="print one JSON object")
    listing.set_defaults(func=run_list)
    retry = actions.add_parser(
        "retry-now",
        help="make parked syncs (all, or the given accounts) due now and drain them at once",
    )
    retry.add_argument("account_ids", nargs="*", metavar="ACCOUNT_ID")
    retry.set_defaults(func=run_retry_now)


def run_list(args: argparse.Namespace) -> int:
    wanted = set(normalize_salesforce_ids(args.account_ids))
    # Read-only: joins a running crmsync's Redis, never starts one, needs no mapping.
    with runtime(needs_credentials=False, needs_mapping=False, needs_celery=False) as rt:
        store = rt.store()
        now = time.time()
        items = [
            item.summary(now)
            for item in Parking(store.client, store.keys).items(limit=1_000_000)
            if not wanted or item.account_id in wanted
        ]
        breaker = breaker_state(store.client, store.keys, METRONOME).as_dict()
    if args.json:
        print(json.dumps({"count": len(items), "metronome_breaker": breaker, "parked": items}))
        return 0
    print(f"{len(items)} parked; Metronome breaker {breaker['state']}")
    for item in items:
        print(
            f"{item['account_id']} since {item['since']} attempts={item['attempts']} "
            f"next_in={item['next_in_s']}s {item['reason']}"
        )
    return 0


def run_retry_now(args: argparse.Namespace) -> int:
    """Prints one JSON object; exit 1 when a given account was not parked."""
    wanted = normalize_salesforce_ids(args.account_ids)
    with runtime(needs_credentials=False, needs_mapping=False) as rt:
        store = rt.store()
        parking = Parking(store.client, store.keys)
        due = parking.make_due(wanted or None)
        # An open breaker would only send one probe at its next turn: it probes at once.
        settings = rt.settings
        policy = Policy(failures=settings.breaker_failures, probe_s=settings.breaker_probe_s)
        CircuitBreaker(store.client, store.keys, METRONOME, policy).probe_now()
        TokenRefusals(store.client, store.keys).probe_now()  # likewise a refused token
        from worker.app import declare_queue  # Celery: only this sub-command needs it

        declare_queue()
        rt.app.send_task(DRAIN)
    missing = [i for i in wanted if i not in due]
    print(json.dumps({"due_now": len(due), "not_parked": missing, "drain": "requested"}))
    return 1 if missing else 0
