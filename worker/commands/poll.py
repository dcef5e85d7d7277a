"""``crmsync poll``: one poll now, in this process; prints what it enqueued."""

from __future__ import annotations

import argparse
import json
import sys

from worker.commands.bootstrap import runtime


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("poll", help="poll Salesforce once now and print the result")
    parser.add_argument(
        "--wait",
        action="store_true",
        help="also wait until the workers finished those syncs, and print their outcomes",
    )
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    with runtime() as rt:
        # Imported once Redis answered: a command that cannot start says so in a fraction
        # of the time (the jobs, Celery and the Salesforce client are most of its start-up).
        from tasks.poll import run_poll
        from worker.context import build_context
        from worker.ops.progress import SyncWatch, wait_for_syncs

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
        if args.json:
            print(json.dumps(summary, indent=2, sort_keys=True))
        else:
            print(describe_poll(summary))
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


def describe_poll(summary: dict[str, object]) -> str:
    """The poll in a few lines (``--json`` prints all of it)."""
    lines = [
        f"poll {summary.get('status')}: {summary.get('rows', 0)} rows, "
        f"{summary.get('enqueued', 0)} accounts enqueued"
    ]
    syncs = summary.get("syncs")
    if isinstance(syncs, dict):
        outcomes = syncs.get("outcomes") or {}
        if isinstance(outcomes, dict) and outcomes:
            lines.append("syncs: " + ", ".join(f"{k}={v}" for k, v in sorted(outcomes.items())))
        letters = syncs.get("dead_letters") or []
        if isinstance(letters, list) and letters:
            lines.append(f"dead letters: {len(letters)} (crmsync dead-letters list)")
    cursors = summary.get("cursors")
    if isinstance(cursors, dict) and cursors:
        lines.append("cursors: " + ", ".join(f"{k}={v}" for k, v in sorted(cursors.items())))
    return "\n".join(lines)
