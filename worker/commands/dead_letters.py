"""``crmsync dead-letters``: list them (grouped by what to fix), or redrive them (re-enqueue the
latest stored snapshot). A group stays open until a later sync of its account (or its deal's
contract) succeeds; see worker/state/dead_letters.py."""

from __future__ import annotations

import argparse
import json

from mappings.ids import normalize_salesforce_id
from worker.commands.bootstrap import runtime
from worker.commands.errors import UsageError
from worker.state.dead_letters import DeadLetter

#: Every kind of dead letter the tasks write (tests/commands/test_cli.py keeps this in step with
#: tasks/), so ``--kind`` can refuse a typo instead of matching nothing, silently.
DEAD_LETTER_KINDS: tuple[str, ...] = (
    "mapping",
    "contract",
    "permanent",
    "transient_exhausted",
    "lock_busy",
    "redelivered",
    "malformed_message",
    "task_failed",
    "unknown_task",
    "rejected_message",
)


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("dead-letters", help="list or redrive dead-lettered records")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser(
        "list", help="open dead letters, one per account (or deal) and kind, with counts"
    )
    listing.add_argument("--account", metavar="ID", help="only this account's (or deal's)")
    _kind_option(listing)
    listing.add_argument(
        "--all", action="store_true", help="resolved ones too (when, and by which sync)"
    )
    listing.add_argument("--json", action="store_true", help="print one JSON array ([] if none)")
    listing.set_defaults(func=run_list)
    redrive = actions.add_parser(
        "redrive", help="re-enqueue open dead letters (all, or the given ids) with force"
    )
    redrive.add_argument("entry_ids", nargs="*", metavar="ID")
    redrive.add_argument("--account", metavar="ID", help="only this account's (or deal's)")
    _kind_option(redrive)
    redrive.set_defaults(func=run_redrive)


def _kind_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--kind", help="only dead letters of this kind: " + ", ".join(DEAD_LETTER_KINDS)
    )


def _check(args: argparse.Namespace) -> str | None:
    """Refuse an unknown kind or a malformed id before Redis is even asked (exit 2)."""
    if args.kind is not None and args.kind not in DEAD_LETTER_KINDS:
        raise UsageError(
            f"dead-letters {args.action}: unknown kind {args.kind!r}; known kinds: "
            + ", ".join(DEAD_LETTER_KINDS)
        )
    return normalize_salesforce_id(args.account) if args.account else None


def describe(letter: DeadLetter) -> str:
    """One line: id, last seen, what to fix, how often since when, the latest reason."""
    what = letter.account_id
    if letter.opportunity_id:
        what += f" opportunity {letter.opportunity_id}"
    seen = f"x{letter.count} since {letter.first_at}" if letter.count > 1 else "once"
    state = ""
    if not letter.open:
        state = f" RESOLVED {letter.resolved_at} by {letter.resolved_by} ({letter.resolved_how})"
    return f"#{letter.entry_id} {letter.at} {what} [{letter.kind}] {seen}{state}: {letter.reason}"


def run_list(args: argparse.Namespace) -> int:
    account = _check(args)
    # Read-only: joins a running crmsync's Redis, never starts one, needs no mapping.
    with runtime(needs_credentials=False, needs_mapping=False, needs_celery=False) as rt:
        letters = rt.store().dead_letter_book.groups(
            include_resolved=args.all, account_id=account, kind=args.kind, with_snapshots=False
        )
    if args.json:
        print(json.dumps([letter.as_dict() for letter in letters], sort_keys=True))
        return 0
    for letter in letters:
        print(describe(letter))
    if not letters:
        print("no dead letters" + ("" if args.all else " open"))
    return 0


def run_redrive(args: argparse.Namespace) -> int:
    from tasks.sync import sync_account

    account = _check(args)
    with runtime() as rt:
        book = rt.store().dead_letter_book
        wanted = set(args.entry_ids)
        unknown = wanted - {d.entry_id for d in book.groups(with_snapshots=False)}
        if unknown:
            raise UsageError(
                "dead-letters redrive: no open dead letter "
                + ", ".join(sorted(unknown))
                + "; `crmsync dead-letters list` shows the open ones"
            )
        redriven = skipped = 0
        for letter in book.groups(account_id=account, kind=args.kind):
            if wanted and letter.entry_id not in wanted:
                continue
            if letter.snapshot is None or letter.account_id in ("", "-"):
                skipped += 1
                continue
            # The group stays open: the redriven sync resolves it if it succeeds, or counts
            # one more attempt in it if it fails again.
            sync_account.apply_async(
                args=[letter.account_id, letter.snapshot],
                kwargs={"force": True, "reason": "redrive"},
            )
            redriven += 1
        print(f"redriven {redriven}, skipped {skipped} (no usable snapshot)")
    return 0
