"""``make bench``: speed and economy of a sync, measured side by side in one run.

Everything that is compared is measured in the same run on the same machine, and the headline
figures are ratios (to the emulator's ceiling, to a naive script), so they hold on a noisy
2-core machine where absolute rates do not. Progress goes to stderr; stdout gets a table and,
last, one JSON object with stable keys (README "Performance").

Phases: ceiling → backfill → re-run → full re-read → naive script → latency → 100k poll →
the latency regime (bench/ratelimit.py: 100 ms per call and a rate limit, as in production).
The phases before it measure the code's CPU economy against an emulator without a limit, so
their deployment's rate governor is given a ceiling (METRONOME_MAX_RPS) above what two cores
can make. Then contracts (bench/contracts.py: a backfill of deals that each make a customer
and a contract) →
change events (bench/events.py, a stack of its own) → CLI start-up (bench/cli_startup.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import ceiling, cli_startup, contracts, events, latency, memory, ratelimit
from bench.data import seed_won_accounts
from bench.passes import progress, timed_pass
from bench.procstat import cpu_seconds, tree_usage
from worker.sandbox.metronome import MetronomeEmulator
from worker.sandbox.salesforce.client import build_sandbox_salesforce
from worker.sandbox.stack import SANDBOX_METRONOME_TOKEN, SandboxStack
from worker.settings import child_environment

BACKFILL_ACCOUNTS = int(os.environ.get("BENCH_ACCOUNTS", "10000"))
POLL_ROWS = int(os.environ.get("BENCH_POLL_ROWS", "100000"))
LATENCY_CLOSES = int(os.environ.get("BENCH_CLOSES", "50"))
POLL_INTERVAL_S = 5.0
WORKER_PROCESSES = 4
#: METRONOME_MAX_RPS for the phases without a rate limit: far above the ~1,000 req/s two
#: cores make, so the governor paces nothing there (it still takes its turn per request).
UNLIMITED_RPS = 10_000


def naive_pass(stack: SandboxStack, target: MetronomeEmulator) -> dict[str, Any]:
    assert stack.salesforce is not None  # noqa: S101
    m0, s0 = target.total_requests(), stack.salesforce.api_calls()
    done = subprocess.run(
        [sys.executable, "-m", "bench.naive", stack.salesforce.url, target.url, "naive-token"],
        capture_output=True,
        check=True,
    )
    report: dict[str, Any] = json.loads(done.stdout)
    report["metronome_calls"] = target.total_requests() - m0
    report["salesforce_calls"] = stack.salesforce.api_calls() - s0
    report["calls"] = report["metronome_calls"] + report["salesforce_calls"]
    progress(f"naive: {json.dumps(report)}")
    return report


def backfill_phase(stack: SandboxStack, worker_pid: int) -> dict[str, Any]:
    """The backfill pass, and the CPU every process spent on it: the worker tree, this
    process (both emulators on threads, and the poll) and redis-server."""
    assert stack.redis is not None and stack.redis.process is not None  # noqa: S101
    redis_pid = stack.redis.process.pid
    before = tree_usage(worker_pid)
    redis0, own0 = cpu_seconds(redis_pid, include_reaped=False), os.times()
    backfill = timed_pass(stack, "backfill")
    after = tree_usage(worker_pid)
    redis1, own1 = cpu_seconds(redis_pid, include_reaped=False), os.times()
    return {
        "backfill": backfill,
        "worker_cpu_s": after.cpu_s - before.cpu_s,
        "worker_peak_rss_mb": after.peak_rss_mb,
        "bench_process_cpu_s": own1.user + own1.system - own0.user - own0.system,
        "redis_cpu_s": redis1 - redis0,
    }


def run_stack_phases(base: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    stack = SandboxStack(
        data_dir=base / "data",
        extra_env={
            "CRMSYNC_POLL_INTERVAL_S": str(int(POLL_INTERVAL_S)),
            "CRMSYNC_CONCURRENCY": str(WORKER_PROCESSES),
            "METRONOME_MAX_RPS": str(UNLIMITED_RPS),
        },
    )
    with stack:
        assert stack.salesforce is not None and stack.metronome is not None  # noqa: S101
        started = time.monotonic()
        seed_won_accounts(stack.salesforce, BACKFILL_ACCOUNTS)
        progress(f"seeded {BACKFILL_ACCOUNTS} won accounts in {time.monotonic() - started:.1f}s")
        worker = stack.start_worker(base / "worker.log", concurrency=WORKER_PROCESSES, name="bench")
        stack.wait_for_worker()
        out.update(backfill_phase(stack, worker.pid))
        out["rerun"] = timed_pass(stack, "re-run")
        # Worst case for the re-run: every row read again (cursor lost, or all rows inside
        # the look-back overlap). The hash dedupe must still make it free for Metronome.
        ctx = stack.context()
        ctx.store.client.delete(ctx.store.keys.cursors)
        ctx.close()
        out["full_reread"] = timed_pass(stack, "full re-read")
        with MetronomeEmulator(token="naive-token") as naive_target:  # noqa: S106
            out["naive_first"] = naive_pass(stack, naive_target)
            out["naive_rerun"] = naive_pass(stack, naive_target)
        out["latency"] = latency_phase(stack, base)
    return out


def latency_phase(stack: SandboxStack, base: Path) -> dict[str, Any]:
    assert stack.salesforce is not None and stack.metronome is not None  # noqa: S101
    env = child_environment(stack.env())
    ctx = stack.context()
    beat = latency.start_beat(env, base / "beat.log")
    try:
        latency.wait_for_first_poll(ctx.store.last_poll)
        sf = build_sandbox_salesforce(stack.salesforce.url, stack.credentials)
        progress(f"latency: {LATENCY_CLOSES} closes, beat every {POLL_INTERVAL_S:g}s")
        result = latency.measure(
            sf, stack.metronome.url, SANDBOX_METRONOME_TOKEN, closes=LATENCY_CLOSES
        )
    finally:
        beat.terminate()
        beat.wait(timeout=30)
        ctx.close()
    summary = {
        "samples": len(result.seconds),
        "missing": result.missing,
        "p50_s": result.percentile(50),
        "p99_s": result.percentile(99),
        "max_s": max(result.seconds, default=float("nan")),
    }
    progress(f"latency: {json.dumps(summary)}")
    return summary


def figures(
    ceil_create: float, ceil_list: float, phases: dict[str, Any], poll: dict[str, Any]
) -> dict[str, Any]:
    backfill, rerun = phases["backfill"], phases["rerun"]
    accounts = max(1, backfill["outcomes"].get("created", 0))
    backfill_rps = backfill["metronome_calls"] / backfill["seconds"]
    ours_rerun = rerun["metronome_calls"] + rerun["salesforce_calls"]
    naive_first, naive_rerun = phases["naive_first"], phases["naive_rerun"]
    return {
        "ceiling_create_rps": round(ceil_create, 1),
        "ceiling_list_rps": round(ceil_list, 1),
        "backfill_accounts_per_s": round(accounts / backfill["seconds"], 1),
        "backfill_metronome_calls_per_account": round(backfill["metronome_calls"] / accounts, 3),
        "backfill_salesforce_calls": backfill["salesforce_calls"],
        "backfill_request_rate_rps": round(backfill_rps, 1),
        "backfill_ratio_to_ceiling": round(backfill_rps / ceil_create, 3),
        "rerun_metronome_calls": rerun["metronome_calls"],
        "rerun_salesforce_calls": rerun["salesforce_calls"],
        "full_reread_metronome_calls": phases["full_reread"]["metronome_calls"],
        "full_reread_salesforce_calls": phases["full_reread"]["salesforce_calls"],
        "full_reread_s": round(phases["full_reread"]["seconds"], 2),
        "naive_first_calls": naive_first["calls"],
        "naive_first_s": naive_first["seconds"],
        "naive_rerun_calls": naive_rerun["calls"],
        "naive_rerun_s": naive_rerun["seconds"],
        "backfill_call_ratio_vs_naive": round(
            naive_first["calls"]
            / max(1, backfill["metronome_calls"] + backfill["salesforce_calls"]),
            3,
        ),
        "rerun_call_ratio_vs_naive": round(naive_rerun["calls"] / max(1, ours_rerun), 1),
        "latency_p50_s": round(phases["latency"]["p50_s"], 2),
        "latency_p99_s": round(phases["latency"]["p99_s"], 2),
        "latency_samples": phases["latency"]["samples"],
        "poll_interval_s": POLL_INTERVAL_S,
        "poll_100k_rows": poll["rows"],
        "poll_100k_peak_rss_mb": round(poll["peak_rss_mb"], 1),
        "poll_100k_s": round(poll["seconds"], 1),
        "worker_peak_rss_mb": round(max(phases["worker_peak_rss_mb"].values()), 1),
        "worker_cpu_s_per_1000_accounts": round(phases["worker_cpu_s"] / accounts * 1000, 2),
        "bench_process_cpu_s_per_1000_accounts": round(
            phases["bench_process_cpu_s"] / accounts * 1000, 2
        ),
        "redis_cpu_s_per_1000_accounts": round(phases["redis_cpu_s"] / accounts * 1000, 2),
    }


Target = tuple[str, Callable[[dict[str, Any]], bool]]


def _at_least(key: str, bound: float) -> Callable[[dict[str, Any]], bool]:
    return lambda f: bool(f[key] >= bound)


def _at_most(key: str, bound: float) -> Callable[[dict[str, Any]], bool]:
    return lambda f: bool(f[key] <= bound)


def ratelimit_targets() -> dict[str, Target]:
    """The issue's targets, for every run of the latency regime."""
    targets: dict[str, Target] = {}
    for prefix in ratelimit.PREFIXES:
        targets[f"{prefix}_ratio"] = (">= 0.90", _at_least(f"{prefix}_ratio", 0.9))
        targets[f"{prefix}_429_share"] = ("<= 0.02", _at_most(f"{prefix}_429_share", 0.02))
        targets[f"{prefix}_calls_per_account"] = (
            "<= 2.05",
            _at_most(f"{prefix}_calls_per_account", 2.05),
        )
    return targets


TARGETS: dict[str, Target] = {
    "rerun_metronome_calls": ("= 0", lambda f: f["rerun_metronome_calls"] == 0),
    "rerun_salesforce_calls": ("<= 1", lambda f: f["rerun_salesforce_calls"] <= 1),
    "backfill_metronome_calls_per_account": (
        "<= 2",
        lambda f: f["backfill_metronome_calls_per_account"] <= 2,
    ),
    "backfill_ratio_to_ceiling": (">= 0.70", lambda f: f["backfill_ratio_to_ceiling"] >= 0.7),
    "rerun_call_ratio_vs_naive": (">= 5", lambda f: f["rerun_call_ratio_vs_naive"] >= 5),
    "latency_p99_s": (
        "<= interval + 2",
        lambda f: f["latency_p99_s"] <= f["poll_interval_s"] + 2,
    ),
    "poll_100k_peak_rss_mb": ("<= 200", lambda f: f["poll_100k_peak_rss_mb"] <= 200),
    "contract_rerun_metronome_calls": ("= 0", lambda f: f["contract_rerun_metronome_calls"] == 0),
    "contract_metronome_calls_per_won_opportunity": (
        "<= 3.05",
        _at_most("contract_metronome_calls_per_won_opportunity", 3.05),
    ),
    "expansion_metronome_calls_per_expansion": (
        "<= 1.1",
        _at_most("expansion_metronome_calls_per_expansion", 1.1),
    ),
    "expansion_calls_per_discount_fee_expansion": (
        "<= 1.1",
        _at_most("expansion_calls_per_discount_fee_expansion", 1.1),
    ),
    "expansion_calls_per_seat_expansion": (
        "<= 1.1",
        _at_most("expansion_calls_per_seat_expansion", 1.1),
    ),
    "expansion_rerun_metronome_calls": (
        "= 0",
        lambda f: f["expansion_rerun_metronome_calls"] == 0,
    ),
    "event_latency_p99_s": ("<= 2", lambda f: f["event_latency_p99_s"] <= 2),
    # Start-up over a bare interpreter measured in the same run (a noisy machine slows both).
    "cli_help_s": (
        "<= bare + 0.3",
        lambda f: f["cli_help_s"] - f["cli_bare_interpreter_s"] <= 0.3,
    ),
    "cli_health_check_s": (
        "<= bare + 0.3",
        lambda f: f["cli_health_check_s"] - f["cli_bare_interpreter_s"] <= 0.3,
    ),
    **ratelimit_targets(),
}


def print_table(result: dict[str, Any]) -> None:
    print(f"{'figure':<40}{'value':>14}  target")
    print("-" * 70)
    for key, value in result.items():
        target = TARGETS.get(key)
        verdict = f"{target[0]} {'ok' if target[1](result) else 'MISSED'}" if target else ""
        print(f"{key:<40}{value!s:>14}  {verdict}")


def main() -> int:
    progress("ceiling: create")
    create, create_runs = ceiling.best("create")
    progress("ceiling: list")
    listing, list_runs = ceiling.best("list")
    for run in (*create_runs, *list_runs):
        progress(f"ceiling {run.operation} x{run.clients} clients: {run.rps:.0f} req/s")
    with tempfile.TemporaryDirectory(prefix="crmsync-bench-") as tmp:
        base = Path(tmp)
        phases = run_stack_phases(base)
        progress(f"poll of {POLL_ROWS} won opportunities (crmsync poll, child process)")
        poll = memory.poll_peak_rss(base, POLL_ROWS, progress)
        progress(f"poll: {json.dumps(poll)}")
        regime = ratelimit.phases(base)
        contract_figures = contracts.phase(base, timed_pass, progress)
        evented = events.run(base, progress, closes=LATENCY_CLOSES)
    progress("CLI start-up (crmsync --help, the health check, a bare interpreter)")
    startup = cli_startup.run()
    result = figures(create.rps, listing.rps, phases, poll)
    result.update(regime)
    result.update(contract_figures)
    result.update(evented)
    result.update(startup)
    print_table(result)
    print(json.dumps(result, sort_keys=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
