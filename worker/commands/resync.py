"""``crmsync resync``: re-read accounts from Salesforce and sync them, hash bypassed."""

from __future__ import annotations

import argparse
import json
from typing import Any

from worker.commands.bootstrap import runtime


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "resync", help="re-sync accounts by id, --all, or --since DATE (read fresh from Salesforce)"
    )
    parser.add_argument("account_ids", nargs="*", metavar="ACCOUNT_ID")
    parser.add_argument("--all", action="store_true", help="every account with a won deal")
    parser.add_argument("--since", help="accounts whose won deal or account changed since DATE")
    parser.add_argument(
        "--force",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="bypass the dedupe hash (default: on; --no-force skips unchanged accounts)",
    )
    wait = parser.add_mutually_exclusive_group()
    wait.add_argument(
        "--wait",
        dest="no_wait",
        action="store_false",
        help="wait for the syncs and print their outcomes (the default)",
    )
    wait.add_argument("--no-wait", action="store_true", help="enqueue and return")
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    # Both options share one destination; argparse would take the store_false option's
    # implicit default (True: never wait), so the default is set here, once.
    parser.set_defaults(func=run, no_wait=False)


def run(args: argparse.Namespace) -> int:
    """Prints what was enqueued and, after waiting, what the syncs did (``--json``: as one
    JSON object).

    Exit 1 when an id had no won deal, a sync was dead-lettered, or the wait timed out; a
    malformed id or selector is a ResyncRequestError (exit 2, worker/commands/errors.py).
    """
    from mappings.ids import normalize_salesforce_ids

    # A mistyped id is the operator's line before anything starts (Redis, Salesforce), with
    # the hint every command gives for one (InvalidSalesforceId, exit 2).
    normalize_salesforce_ids(args.account_ids)
    with runtime() as rt:
        # Imported once Redis answered: a command that cannot start says so in a fraction
        # of the time (the jobs, Celery and the Salesforce client are most of its start-up).
        from tasks.resync import run_resync
        from worker.context import build_context
        from worker.ops.progress import SyncWatch, wait_for_syncs

        ctx = build_context(rt.settings, rt.redis.url)
        watch = SyncWatch.start(ctx.store)
        result = run_resync(
            ctx,
            account_ids=list(args.account_ids) or None,
            all_accounts=args.all,
            since=args.since,
            force=args.force,
        )
        enqueued = int(result["enqueued"])
        report = {k: v for k, v in result.items() if k != "account_ids"}
        if args.no_wait or not enqueued:
            _print(report, args.json)
            return 1 if result["not_found"] else 0
        finished = wait_for_syncs(
            ctx.store, watch.baseline, enqueued, timeout_s=args.timeout, label="resync"
        )
        # account_ids is capped at 1,000: beyond that, count every new dead letter.
        ids = result["account_ids"] if len(result["account_ids"]) == enqueued else None
        report |= watch.report(ids) | {"finished": finished}
        _print(report, args.json)
        if not finished:
            print("timed out waiting for the workers (is `crmsync worker` running?)")
        failed = result["not_found"] or report["dead_letters"] or not finished
        return 1 if failed else 0


def _print(report: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(report, sort_keys=True))
        return
    print(f"resync: {report.get('enqueued', 0)} accounts enqueued")
    if report.get("not_found"):
        print("no won deal in Salesforce: " + ", ".join(str(i) for i in report["not_found"]))
    outcomes = report.get("outcomes")
    if isinstance(outcomes, dict) and outcomes:
        print("syncs: " + ", ".join(f"{k}={v}" for k, v in sorted(outcomes.items())))
    letters = report.get("dead_letters")
    if isinstance(letters, list) and letters:
        print(f"dead letters: {len(letters)} (crmsync dead-letters list)")
        for letter in letters:
            print(f"  {letter.get('account_id')} [{letter.get('kind')}] {letter.get('reason')}")
