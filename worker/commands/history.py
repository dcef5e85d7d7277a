"""``crmsync history ID``: what crmsync did to one account or deal, newest first, and why it has
no customer (or contract) when it has none. Reads Redis only, unless the answer lies in
Salesforce ("never seen by a poll") and credentials are configured: then a few small queries
say whether the deal is won, merged away, refused or rolled up by the mapping."""

from __future__ import annotations

import argparse
import json
from datetime import datetime

from mappings.ids import normalize_salesforce_id
from worker.commands.bootstrap import Runtime, runtime
from worker.commands.errors import UsageError
from worker.ops.history import History, build_history, parse_since
from worker.salesforce.cursors import parse_salesforce_datetime


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "history", help="one account's (or deal's) syncs, dead letters and attention items"
    )
    parser.add_argument("record_id", metavar="ACCOUNT_ID|OPPORTUNITY_ID")
    parser.add_argument("--since", help="only newer than this: 24h, 7d, or an ISO date")
    parser.add_argument("--limit", type=int, default=50, help="timeline rows (default 50)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--offline", action="store_true", help="never ask Salesforce, even when configured"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    record_id = normalize_salesforce_id(args.record_id)  # a malformed id stops here (exit 2)
    try:
        since = parse_since(args.since) if args.since else None
    except ValueError as exc:
        raise UsageError(f"history: {exc}") from None
    if args.limit < 1:
        raise UsageError("history: --limit must be at least 1")
    # Read-only: joins a running crmsync's Redis, never starts one.
    with runtime(needs_credentials=False, needs_mapping=False, needs_celery=False) as rt:
        store = rt.store()
        history = build_history(store, record_id, since=since, limit=args.limit)
        if history.needs_explaining and not args.offline:
            _ask_salesforce(rt, history, store.cursors().get("opportunities"))
    if args.json:
        print(json.dumps(history.as_dict(), sort_keys=True))
    else:
        print_history(history, since=args.since)
    return 0


def _ask_salesforce(rt: Runtime, history: History, cursor_text: str | None) -> None:
    """Why a record was never seen: Salesforce's answer, when credentials are configured."""
    if not rt.settings.salesforce_configured:
        history.explanation = [
            "Salesforce is not configured here, so crmsync cannot say whether it has a won "
            "deal; run this where SALESFORCE_* is set, or `crmsync plan ID`"
        ]
        return
    from worker.context import build_source, load_configured_mapping
    from worker.salesforce.explain import explain_account, explain_opportunity

    mapping = load_configured_mapping(rt.settings)
    source = build_source(rt.settings, mapping)
    cursor: datetime | None = parse_salesforce_datetime(cursor_text) if cursor_text else None
    explain = explain_opportunity if history.kind == "opportunity" else explain_account
    found = explain(source, mapping, history.record_id, cursor)
    history.finding = found.finding
    history.explanation = found.lines


def print_history(history: History, *, since: str | None = None) -> None:
    print(f"{history.kind} {history.record_id}: {history.verdict}")
    for line in history.explanation:
        print(f"  why: {line}")
    if history.kind == "opportunity" and history.account_id:
        print(f"  account: {history.account_id} (crmsync history {history.account_id})")
    for letter in history.dead_letters:
        state = (
            "open"
            if letter.open
            else f"resolved {letter.resolved_at} by {letter.resolved_by} ({letter.resolved_how})"
        )
        on = f" opportunity {letter.opportunity_id}" if letter.opportunity_id else ""
        print(
            f"  dead letter #{letter.entry_id} [{letter.kind}]{on} x{letter.count} "
            f"{letter.first_at}..{letter.at}, {state}: {letter.reason}"
        )
    for item in history.attention:
        state = "open" if item.open else f"acknowledged {item.acked_at} by {item.acked_by}"
        print(f"  needs attention #{item.id} {item.event} {item.record_id}, {state}")
        if item.open:
            print(f"    to do: {item.what_to_do} (then `crmsync attention ack {item.id}`)")
    for parked in history.parked:
        print(f"  parked since {parked.since}: {parked.reason}; retrying at {parked.retry_at}")
    if not history.timeline:
        print("no ledger entries" + (f" since {since}" if since else ""))
        return
    print(f"{'when':<20}  {'trigger':<8} {'outcome':<20} {'calls':>5}  task / detail")
    for event in history.timeline:
        calls = "" if event.calls is None else str(event.calls)
        print(
            f"{event.at:<20}  {event.trigger or '-':<8} {event.outcome:<20} {calls:>5}  "
            f"{event.task_id or '-'}"
        )
        print(f"{'':<22}{event.detail}")
