"""``crmsync poll``: one poll now, in this process; prints what it enqueued."""

from __future__ import annotations

import argparse
import json
import sys

from tasks.poll import run_poll
from worker.commands.bootstrap import runtime
from worker.context import build_context
from worker.ops.progress import SyncWatch, wait_for_syncs


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("poll", help="poll Salesforce once now and print the result")
    parser.add_argument(
        "--wait",
        action="store_true",
        help="also wait until the workers finished those syncs, and print their outcomes",
    )
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    with runtime() as rt:
        ctx = build_context(rt.settings, rt.redis.url)
        watch = SyncWatch.start(ctx.store)
        summary = run_poll(ctx, raise_outage=True)
        expected = int(summary.get("enqueued", 0))
        timed_out = False
        if args.wait and expected:
            timed_out = not wait_for_syncs(
                ctx.store, watch.baseline, expected, timeout_s=args.timeout
            )
            summary["syncs"] = watch.report()
        print(json.dumps(summary, indent=2, sort_keys=True))
        if timed_out:
            print("timed out waiting for the workers (is `crmsync worker` running?)")
            return 1
        status = summary.get("status")
        if status == "stopped_for_quota":
            print(
                "crmsync: the poll stopped at SALESFORCE_QUOTA_FRACTION of the org's daily API "
                "quota; cursors unchanged, polls resume when usage falls (rolling 24 h)",
                file=sys.stderr,
            )
        elif status not in ("ok", "skipped"):
            print(f"crmsync: the poll {status}: {summary.get('reason', '')}", file=sys.stderr)
        return 0 if status in ("ok", "skipped") else 1
