"""The contract phase of ``make bench``: what a won deal costs once it must become a contract.

A backfill of won deals that each name a rate card (so each makes a customer *and* a
contract; some sold seats, so their contract subscribes), then a re-run: the figures are
Metronome calls per new won opportunity and the calls an unchanged one costs (target 0: the
contract's dedupe state, like the customer's). Then expansions of those deals
(bench/expansions.py), a pass per kind -- a discount and a fee, then seats added to the
subscription the contract has -- and a re-run: calls per expansion of each kind and overall
(target <= 1.1: the edit), and 0 on the re-run.
The stack is its own, so the other phases' figures (customers alone) stay comparable with
earlier runs.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.data import seed_won_accounts
from bench.expansions import (
    GET_ROUTE,
    edit_calls,
    route_calls,
    seed_expansions,
    seed_parent_seats,
    seed_products,
    won_deals,
)
from worker.sandbox.stack import SandboxStack

CONTRACT_ACCOUNTS = int(os.environ.get("BENCH_CONTRACT_ACCOUNTS", "1000"))
#: Won expansion deals, each on one of the backfilled accounts' deals: half add a discount and
#: a fee, half add seats to a deal that sold seats.
EXPANSIONS = int(os.environ.get("BENCH_EXPANSIONS", "200"))
WORKER_PROCESSES = 4

TimedPass = Callable[[SandboxStack, str], dict[str, Any]]


def phase(base: Path, timed_pass: TimedPass, progress: Callable[[str], None]) -> dict[str, Any]:
    stack = SandboxStack(
        data_dir=base / "contracts-data",
        # The governor far above the emulator (no limit here): this phase counts calls.
        extra_env={"CRMSYNC_CONCURRENCY": str(WORKER_PROCESSES), "METRONOME_MAX_RPS": "10000"},
    )
    with stack:
        assert stack.salesforce is not None and stack.metronome is not None  # noqa: S101
        seed_won_accounts(stack.salesforce, CONTRACT_ACCOUNTS, rate_card="standard")
        products = seed_products(stack.salesforce, stack.metronome)
        won = won_deals(stack.salesforce)[: min(EXPANSIONS, CONTRACT_ACCOUNTS)]
        priced, seated = won[: len(won) - len(won) // 2], won[len(won) - len(won) // 2 :]
        seed_parent_seats(stack.salesforce, products, seated)
        progress(
            f"contracts: seeded {CONTRACT_ACCOUNTS} won deals with a rate card, "
            f"{len(seated)} of them with seats"
        )
        stack.start_worker(base / "contracts-worker.log", concurrency=WORKER_PROCESSES)
        stack.wait_for_worker()
        backfill = timed_pass(stack, "contracts backfill")
        rerun = timed_pass(stack, "contracts re-run")
        contracts = len(stack.metronome.contracts())
        expanded = {
            seats: _expansion_pass(stack, timed_pass, progress, deals, products, seats=seats)
            for seats, deals in ((False, priced), (True, seated))
        }
        expanded_rerun = timed_pass(stack, "expansions re-run")
        # Seats were added to the subscription the contract had, not sold as a second one.
        seat_updates = sum(
            1 for e in stack.metronome.contract_edits() if e.get("update_subscriptions")
        )
    made = max(1, backfill["outcomes"].get("contract_created", 0))
    by_route = backfill["metronome_by_route"]
    contract_calls = sum(
        n for key, n in by_route.items() if "/contracts" in key or "BillingProvider" in key
    )
    return {
        "contract_won_opportunities": CONTRACT_ACCOUNTS,
        "contracts_created": backfill["outcomes"].get("contract_created", 0),
        "contracts_in_metronome": contracts,
        "contract_metronome_calls_per_won_opportunity": round(
            backfill["metronome_calls"] / made, 3
        ),
        "contract_step_calls_per_won_opportunity": round(contract_calls / made, 3),
        "contract_won_opportunities_per_s": round(made / backfill["seconds"], 1),
        "contract_rerun_metronome_calls": rerun["metronome_calls"],
        **expansion_figures(expanded[False], expanded[True]),
        "expansion_subscription_quantity_updates": seat_updates,
        "expansion_rerun_metronome_calls": expanded_rerun["metronome_calls"],
    }


def _expansion_pass(
    stack: SandboxStack,
    timed_pass: TimedPass,
    progress: Callable[[str], None],
    deals: list[dict[str, Any]],
    products: dict[str, str],
    *,
    seats: bool,
) -> dict[str, Any]:
    assert stack.salesforce is not None and stack.metronome is not None  # noqa: S101
    count = seed_expansions(
        stack.salesforce, stack.metronome, len(deals), deals=deals, seats=seats, products=products
    )
    kind = "seats" if seats else "discount, fee"
    progress(f"contracts: seeded {count} expansion deals ({kind})")
    return {"count": count, **timed_pass(stack, f"expansions ({kind})")}


def expansion_figures(priced: dict[str, Any], seated: dict[str, Any]) -> dict[str, Any]:
    """Calls per expansion by kind and overall, from one pass of each kind."""
    count = priced["count"] + seated["count"]
    calls = priced["metronome_calls"] + seated["metronome_calls"]
    return {
        "expansions": count,
        "expansions_edited": sum(p["outcomes"].get("contract_edited", 0) for p in (priced, seated)),
        "expansion_metronome_calls_per_expansion": round(calls / max(1, count), 3),
        "expansion_calls_per_discount_fee_expansion": round(
            priced["metronome_calls"] / max(1, priced["count"]), 3
        ),
        "expansion_calls_per_seat_expansion": round(
            seated["metronome_calls"] / max(1, seated["count"]), 3
        ),
        "expansion_edit_calls": sum(edit_calls(p["metronome_by_route"]) for p in (priced, seated)),
        "expansion_contract_reads": sum(
            route_calls(p["metronome_by_route"], GET_ROUTE) for p in (priced, seated)
        ),
    }
