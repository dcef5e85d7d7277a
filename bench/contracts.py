"""The contract phase of ``make bench``: what a won deal costs once it must become a contract.

A backfill of won deals that each name a rate card (so each makes a customer *and* a
contract), then a re-run: the figures are Metronome calls per new won opportunity and the
calls an unchanged one costs (target 0: the contract's dedupe state, like the customer's).
The stack is its own, so the other phases' figures (customers alone) stay comparable with
earlier runs.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.data import seed_won_accounts
from bench.expansions import edit_calls, seed_expansions
from worker.sandbox.stack import SandboxStack

CONTRACT_ACCOUNTS = int(os.environ.get("BENCH_CONTRACT_ACCOUNTS", "1000"))
#: Won expansion deals, each on one of the backfilled accounts' deals.
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
        progress(f"contracts: seeded {CONTRACT_ACCOUNTS} won deals with a rate card")
        stack.start_worker(base / "contracts-worker.log", concurrency=WORKER_PROCESSES)
        stack.wait_for_worker()
        backfill = timed_pass(stack, "contracts backfill")
        rerun = timed_pass(stack, "contracts re-run")
        contracts = len(stack.metronome.contracts())
        expansions = seed_expansions(
            stack.salesforce, stack.metronome, min(EXPANSIONS, CONTRACT_ACCOUNTS)
        )
        progress(f"contracts: seeded {expansions} expansion deals")
        expanded = timed_pass(stack, "expansions")
        expanded_rerun = timed_pass(stack, "expansions re-run")
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
        "expansions": expansions,
        "expansions_edited": expanded["outcomes"].get("contract_edited", 0),
        "expansion_metronome_calls_per_expansion": round(
            expanded["metronome_calls"] / max(1, expansions), 3
        ),
        "expansion_edit_calls": edit_calls(expanded["metronome_by_route"]),
        "expansion_rerun_metronome_calls": expanded_rerun["metronome_calls"],
    }
