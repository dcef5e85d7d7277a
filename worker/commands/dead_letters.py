"""``crmsync dead-letters``: list them, or redrive them (re-enqueue the stored snapshot)."""

from __future__ import annotations

import argparse

from worker.cli_errors import UsageError
from worker.runtime import runtime

#: Every kind of dead letter the tasks write (tests/unit/test_cli.py keeps this in step with
#: tasks/), so ``redrive --kind`` can refuse a typo instead of redriving nothing, silently.
DEAD_LETTER_KINDS: tuple[str, ...] = (
    "mapping",
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
    listing = actions.add_parser("list", help="print every dead letter with its reason")
    listing.set_defaults(func=run_list)
    redrive = actions.add_parser(
        "redrive", help="re-enqueue dead letters (all, or the given entry ids) with force"
    )
    redrive.add_argument("entry_ids", nargs="*", metavar="ENTRY_ID")
    redrive.add_argument(
        "--kind", help="only dead letters of this kind: " + ", ".join(DEAD_LETTER_KINDS)
    )
    redrive.set_defaults(func=run_redrive)


def run_list(args: argparse.Namespace) -> int:
    # Read-only: joins a running crmsync's Redis, never starts one, needs no mapping.
    with runtime(needs_credentials=False, needs_mapping=False) as rt:
        for letter in rt.store().dead_letters(100_000):
            print(
                f"{letter.entry_id} {letter.at} {letter.account_id} [{letter.kind}] {letter.reason}"
            )
    return 0


def run_redrive(args: argparse.Namespace) -> int:
    from tasks.sync import sync_account

    if args.kind is not None and args.kind not in DEAD_LETTER_KINDS:
        raise UsageError(
            f"dead-letters redrive: unknown kind {args.kind!r}; known kinds: "
            + ", ".join(DEAD_LETTER_KINDS)
        )
    with runtime() as rt:
        store = rt.store()
        wanted = set(args.entry_ids)
        redriven = skipped = 0
        for letter in store.dead_letters(100_000):
            if wanted and letter.entry_id not in wanted:
                continue
            if args.kind and letter.kind != args.kind:
                continue
            if letter.snapshot is None or letter.account_id in ("", "-"):
                skipped += 1
                continue
            sync_account.apply_async(
                args=[letter.account_id, letter.snapshot],
                kwargs={"force": True, "reason": "redrive"},
            )
            store.delete_dead_letter(letter.entry_id)
            redriven += 1
        print(f"redriven {redriven}, skipped {skipped} (no usable snapshot)")
    return 0
