"""``crmsync poll``: one poll now, in this process; prints what it enqueued."""

from __future__ import annotations

import argparse
import json

from tasks.poll import run_poll
from worker.context import build_context
from worker.progress import terminal_total, wait_for_syncs
from worker.runtime import runtime


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("poll", help="poll Salesforce once now and print the result")
    parser.add_argument(
        "--wait", action="store_true", help="also wait until the workers finished those syncs"
    )
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    with runtime() as rt:
        ctx = build_context(rt.settings, rt.redis.url)
        baseline = terminal_total(ctx.store)
        summary = run_poll(ctx)
        print(json.dumps(summary, indent=2, sort_keys=True))
        expected = int(summary.get("enqueued", 0))
        if (
            args.wait
            and expected
            and not wait_for_syncs(ctx.store, baseline, expected, timeout_s=args.timeout)
        ):
            print("timed out waiting for the workers (is `crmsync worker` running?)")
            return 1
        return 0 if summary.get("status") in ("ok", "skipped") else 1
