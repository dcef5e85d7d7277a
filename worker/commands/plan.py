"""``crmsync plan``: the Metronome calls a sync would make, making none (reads only)."""

from __future__ import annotations

import argparse
import sys

from mappings import MappingError
from mappings.ids import normalize_salesforce_id
from tasks.poll import group_by_account
from worker.commands.bootstrap import runtime
from worker.context import build_context
from worker.contracts.describe import describe_contracts


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("plan", help="dry run: the calls a sync would make")
    parser.add_argument("account_ids", nargs="+", metavar="ACCOUNT_ID")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    for account_id in args.account_ids:
        normalize_salesforce_id(account_id)  # a malformed id stops here, before any login
    with runtime() as rt:
        ctx = build_context(rt.settings, rt.redis.url)
        records = group_by_account(ctx.source.records_for_accounts(args.account_ids))
        status = 0
        for account_id in args.account_ids:
            matches = [r for a, r in records.items() if a.startswith(account_id[:15])]
            if not matches:
                print(f"{account_id}: no won opportunity in Salesforce; nothing to sync")
                status = 1
                continue
            try:
                desired = ctx.mapping.map_record(matches[0])
            except MappingError as exc:
                print(f"{account_id}: {exc}", file=sys.stderr)
                status = 1
                continue
            cached = ctx.store.account_state(desired.salesforce_account_id).customer_id
            found = ctx.engine.find_many(
                [desired], {desired.salesforce_account_id: cached} if cached else {}
            )
            actual = found.get(desired.salesforce_account_id)
            plan = ctx.engine.plan(desired, actual)
            print(f"{account_id}:")
            for line in plan.describe():
                print(f"  {line}")
            customer_id = actual.id if actual is not None else None
            for line in describe_contracts(ctx, matches[0], desired, customer_id):
                print(f"  {line}")
        return status
