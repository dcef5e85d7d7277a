"""``crmsync plan``: the Metronome calls a sync would make, making none (reads only)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from mappings import MappingError
from mappings.ids import normalize_salesforce_ids
from worker.commands.bootstrap import runtime
from worker.queue.grouping import group_by_account

if TYPE_CHECKING:
    from worker.context import WorkerContext


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("plan", help="dry run: the calls a sync would make")
    parser.add_argument("account_ids", nargs="+", metavar="ACCOUNT_ID")
    parser.add_argument(
        "--json", action="store_true", help="print one JSON array, one object per account"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    normalize_salesforce_ids(args.account_ids)  # a malformed id stops here, before any login
    with runtime() as rt:
        # Imported once Redis answered: a command that cannot start says so in a fraction
        # of the time (the jobs, Celery and the Salesforce client are most of its start-up).
        from worker.context import build_context

        ctx = build_context(rt.settings, rt.redis.url, read_only=True)
        records = group_by_account(ctx.source.records_for_accounts(args.account_ids))
        plans = [plan_account(ctx, account_id, records) for account_id in args.account_ids]
    if args.json:
        print(json.dumps(plans, sort_keys=True))
    else:
        for plan in plans:
            if plan["status"] == "planned":
                print(f"{plan['account_id']}:")
                for line in [*plan["calls"], *plan["contracts"]]:
                    print(f"  {line}")
            elif plan["status"] == "not_found":
                print(f"{plan['account_id']}: {plan['reason']}")
            else:
                print(f"{plan['account_id']}: {plan['reason']}", file=sys.stderr)
    return 0 if all(plan["status"] == "planned" for plan in plans) else 1


def plan_account(
    ctx: WorkerContext, account_id: str, records: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """What a sync of ``account_id`` would call: ``status`` planned, not_found or invalid."""
    from worker.contracts.describe import describe_contracts  # see run()

    matches = [r for a, r in records.items() if a.startswith(account_id[:15])]
    if not matches:
        reason = "no won opportunity in Salesforce; nothing to sync"
        return {"account_id": account_id, "status": "not_found", "reason": reason}
    try:
        desired = ctx.mapping.map_record(matches[0])
    except MappingError as exc:
        return {"account_id": account_id, "status": "invalid", "reason": str(exc)}
    cached = ctx.store.account_state(desired.salesforce_account_id).customer_id
    found = ctx.engine.find_many(
        [desired], {desired.salesforce_account_id: cached} if cached else {}
    )
    actual = found.get(desired.salesforce_account_id)
    plan = ctx.engine.plan(desired, actual)
    customer_id = actual.id if actual is not None else None
    return {
        "account_id": account_id,
        "status": "planned",
        "customer_id": customer_id,
        "calls": list(plan.describe()),
        "contracts": list(describe_contracts(ctx, matches[0], desired, customer_id)),
    }
