"""``crmsync dead-letters``: list them, or redrive them (re-enqueue the stored snapshot)."""

from __future__ import annotations

import argparse

from worker.context import build_context
from worker.runtime import runtime


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("dead-letters", help="list or redrive dead-lettered records")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="print every dead letter with its reason")
    listing.set_defaults(func=run_list)
    redrive = actions.add_parser(
        "redrive", help="re-enqueue dead letters (all, or the given entry ids) with force"
    )
    redrive.add_argument("entry_ids", nargs="*", metavar="ENTRY_ID")
    redrive.add_argument("--kind", help="only dead letters of this kind (e.g. transient_exhausted)")
    redrive.set_defaults(func=run_redrive)


def run_list(args: argparse.Namespace) -> int:
    with runtime(needs_credentials=False) as rt:
        for letter in build_context(rt.settings, rt.redis.url).store.dead_letters(100_000):
            print(
                f"{letter.entry_id} {letter.at} {letter.account_id} [{letter.kind}] {letter.reason}"
            )
    return 0


def run_redrive(args: argparse.Namespace) -> int:
    from tasks.sync import sync_account

    with runtime() as rt:
        store = build_context(rt.settings, rt.redis.url).store
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
