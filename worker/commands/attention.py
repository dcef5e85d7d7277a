"""``crmsync attention``: what crmsync saw and deliberately did not act on (re-opened deals,
merged or deleted accounts, a deal changed after its contract, a contract archived by a person,
a customer conflict), each with what to do; ``attention ack ID`` marks one handled, kept for
audit (worker/state/attention.py)."""

from __future__ import annotations

import argparse
import json

from worker.commands.bootstrap import runtime
from worker.commands.errors import UsageError
from worker.state.attention import AttentionItem, UnknownItem


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "attention", help="'needs attention' items, with what to do; ack one when handled"
    )
    parser.add_argument("--all", action="store_true", help="acknowledged items too")
    parser.add_argument("--json", action="store_true", help="print one JSON array ([] if none)")
    parser.set_defaults(func=run_list)
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    ack = actions.add_parser("ack", help="mark items handled (kept, with who and when)")
    ack.add_argument("item_ids", nargs="+", metavar="ID")
    ack.add_argument("--note", default="", help="what was done (kept with the item)")
    ack.add_argument("--by", default="", help="who handled it (default: $USER)")
    ack.set_defaults(func=run_ack)


def describe(item: AttentionItem) -> list[str]:
    seen = f"x{item.count} since {item.first_at}" if item.count > 1 else "once"
    account = (
        f" (account {item.account_id})"
        if item.account_id and item.account_id != item.record_id
        else ""
    )
    details = "; ".join(f"{k} {_plain(v)}" for k, v in sorted(item.details.items()))
    lines = [f"#{item.id} {item.last_at} {item.event} {item.record_id}{account} {seen}"]
    if details:
        lines.append(f"    {details}")
    if item.open:
        lines.append(f"    to do: {item.what_to_do}")
    else:
        note = f": {item.note}" if item.note else ""
        lines.append(f"    acknowledged {item.acked_at} by {item.acked_by}{note}")
    return lines


def _plain(value: object) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def run_list(args: argparse.Namespace) -> int:
    # Read-only: joins a running crmsync's Redis, never starts one, needs no mapping.
    with runtime(needs_credentials=False, needs_mapping=False, needs_celery=False) as rt:
        items = rt.store().attention.items(include_acked=args.all)
    if args.json:
        print(json.dumps([item.as_dict() for item in items], sort_keys=True))
        return 0
    for item in items:
        print("\n".join(describe(item)))
    if not items:
        print("nothing needs attention" if not args.all else "no attention items")
    return 0


def run_ack(args: argparse.Namespace) -> int:
    with runtime(needs_credentials=False, needs_mapping=False, needs_celery=False) as rt:
        book = rt.store().attention
        unknown = [i for i in args.item_ids if book.get(i) is None]
        if unknown:
            raise UsageError(
                f"attention ack: no item {', '.join(unknown)}; `crmsync attention --all` lists them"
            )
        for item_id in args.item_ids:
            try:
                done = book.acknowledge(item_id, by=args.by, note=args.note)
            except UnknownItem as exc:  # trimmed between the check and now
                raise UsageError(f"attention ack: {exc}") from None
            print(f"#{item_id} acknowledged" if done else f"#{item_id} was already acknowledged")
    return 0
