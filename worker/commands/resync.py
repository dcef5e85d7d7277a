"""``crmsync resync``: re-read accounts from Salesforce and sync them, hash bypassed."""

from __future__ import annotations

import argparse
import json
import sys

from tasks.resync import ResyncRequestError, run_resync
from worker.context import build_context
from worker.progress import terminal_total, wait_for_syncs
from worker.runtime import runtime


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
    parser.add_argument("--no-wait", action="store_true", help="enqueue and return")
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    with runtime() as rt:
        ctx = build_context(rt.settings, rt.redis.url)
        baseline = terminal_total(ctx.store)
        try:
            result = run_resync(
                ctx,
                account_ids=list(args.account_ids) or None,
                all_accounts=args.all,
                since=args.since,
                force=args.force,
            )
        except ResyncRequestError as exc:
            print(f"crmsync resync: {exc}", file=sys.stderr)
            return 2
        print(json.dumps({k: v for k, v in result.items() if k != "account_ids"}, sort_keys=True))
        if not args.no_wait and result["enqueued"]:
            finished = wait_for_syncs(
                ctx.store, baseline, int(result["enqueued"]), timeout_s=args.timeout, label="resync"
            )
            if not finished:
                print("timed out waiting for the workers (is `crmsync worker` running?)")
                return 1
        return 1 if result["not_found"] else 0
