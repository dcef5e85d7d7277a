"""The latency regime of ``make bench``: a backfill against Metronome's real-world limits.

Production is bound by Metronome's rate limit and its latency, not by this machine's CPU. So
the Metronome emulator here answers every call 100 ms late and refuses (429, with
``Retry-After-Ms``) past a token bucket of ``limit`` requests per second, and a backfill of
new won accounts runs through the default deployment: one ``crmsync worker`` with the default
settings (CRMSYNC_CONCURRENCY processes x CRMSYNC_SYNC_THREADS threads, METRONOME_MAX_RPS).
A second run uses 4 such workers on the same limit (scaled out: one budget in Redis must still
hold), a third a limit of 200 req/s with METRONOME_MAX_RPS set to it, as an operator whose
limit is higher would, and a fourth a ceiling twice the real limit (METRONOME_MAX_RPS=100
against 50): the rate the deployment keeps must come from the API's 429s alone.

Figures, all counted by the emulator: *useful* requests are those not answered 429; the
achieved rate is useful requests per second of backfill (poll start to last outcome); the
ratio is that rate over the limit; calls per account count 429s too.

``python -m bench.ratelimit [--accounts N] [--limit RPS] [--workers N] [--max-rps RPS]`` runs
one such backfill alone and prints its JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from bench.data import seed_won_accounts
from bench.passes import progress, timed_pass
from worker.app import app
from worker.commands.worker import preload_metronome_sdk
from worker.sandbox.metronome import MetronomeFaults
from worker.sandbox.stack import SandboxStack
from worker.settings import Settings

ACCOUNTS = int(os.environ.get("BENCH_RATELIMIT_ACCOUNTS", "2000"))
LATENCY_S = 0.1
LIMIT_RPS = 50.0
HIGH_LIMIT_RPS = 200.0
SCALED_WORKERS = 4
#: METRONOME_MAX_RPS of the run whose ceiling is set too high.
OVERSHOOT_MAX_RPS = 100.0
#: The JSON key prefixes of the runs: the default deployment, scaled out, 200 req/s, and the
#: ceiling twice too high.
PREFIXES = ("ratelimit", "ratelimit_4workers", "ratelimit200", "ratelimit_overshoot")
#: The default deployment: one worker with the settings' default processes.
DEFAULT_PROCESSES = int(Settings.model_fields["concurrency"].default)


def wait_for_workers(count: int, timeout_s: float = 120.0) -> None:
    """Until ``count`` workers answer a remote-control ping: a scaled run must not start
    with one worker while the others are still importing."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if len(app.control.ping(timeout=1.0) or []) >= count:
            return
    raise RuntimeError(f"{count} workers did not answer in {timeout_s:.0f} s")


def backfill(
    base: Path,
    *,
    accounts: int = ACCOUNTS,
    limit_rps: float = LIMIT_RPS,
    workers: int = 1,
    max_rps: float | None = None,
    name: str = "ratelimit",
) -> dict[str, Any]:
    """One backfill of ``accounts`` new won accounts; the emulator's counts and the time."""
    env = {} if max_rps is None else {"METRONOME_MAX_RPS": repr(max_rps)}
    stack = SandboxStack(
        data_dir=base / name / "data",
        metronome_faults=MetronomeFaults(latency_s=LATENCY_S, rate_limit_rps=limit_rps),
        extra_env=env,
    )
    with stack:
        assert stack.salesforce is not None  # noqa: S101
        seed_won_accounts(stack.salesforce, accounts)
        for number in range(workers):
            stack.start_worker(
                base / name / f"worker-{number}.log",
                concurrency=DEFAULT_PROCESSES,
                name=f"{name}-{number}",
            )
        wait_for_workers(workers)
        # The poll runs in this process here, in a worker child in production, where the SDK
        # was imported before the fork (worker/commands/worker.py): import it before timing.
        preload_metronome_sdk()
        progress(
            f"{name}: {accounts} accounts, limit {limit_rps:g} req/s, {LATENCY_S * 1000:.0f} ms "
            f"latency, {workers} worker(s) x {DEFAULT_PROCESSES} processes"
        )
        result = timed_pass(stack, name)
        ctx = stack.context()
        try:
            from worker.metronome.governor import governor_state

            governed = governor_state(ctx.store.client, ctx.store.keys)
        finally:
            ctx.close()
    result["governor"] = governed.as_dict() if governed is not None else None
    return result


def figures(prefix: str, limit_rps: float, run: dict[str, Any]) -> dict[str, Any]:
    """The JSON keys of one run (``prefix``_...)."""
    total = run["metronome_calls"]
    refused = sum(n for route, n in run["metronome_by_route"].items() if route.endswith(" 429"))
    useful = total - refused
    created = max(1, run["outcomes"].get("created", 0))
    seconds = run["seconds"]
    achieved = useful / seconds
    return {
        f"{prefix}_rps": limit_rps,
        f"{prefix}_accounts": run["outcomes"].get("created", 0),
        f"{prefix}_achieved_rps": round(achieved, 1),
        f"{prefix}_ratio": round(achieved / limit_rps, 3),
        f"{prefix}_429_share": round(refused / max(1, total), 4),
        f"{prefix}_calls_per_account": round(total / created, 3),
        f"{prefix}_accounts_per_s": round(created / seconds, 1),
    }


def phases(base: Path) -> dict[str, Any]:
    """The four runs of ``make bench``'s latency regime, as JSON keys."""
    default = backfill(base, name="ratelimit")
    scaled = backfill(base, workers=SCALED_WORKERS, name="ratelimit-4workers")
    high = backfill(base, limit_rps=HIGH_LIMIT_RPS, max_rps=HIGH_LIMIT_RPS, name="ratelimit200")
    overshoot = backfill(base, max_rps=OVERSHOOT_MAX_RPS, name="ratelimit-overshoot")
    out = figures("ratelimit", LIMIT_RPS, default)
    out["latency_regime_accounts_per_s"] = out.pop("ratelimit_accounts_per_s")
    out.update(figures("ratelimit_4workers", LIMIT_RPS, scaled))
    out.update(figures("ratelimit200", HIGH_LIMIT_RPS, high))
    out.update(figures("ratelimit_overshoot", LIMIT_RPS, overshoot))
    return out


def main(argv: list[str] | None = None) -> int:
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--accounts", type=int, default=ACCOUNTS)
    parser.add_argument("--limit", type=float, default=LIMIT_RPS, help="emulator req/s")
    parser.add_argument("--workers", type=int, default=1, help="crmsync worker processes")
    parser.add_argument("--max-rps", type=float, default=None, help="METRONOME_MAX_RPS")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="crmsync-ratelimit-") as tmp:
        run = backfill(
            Path(tmp),
            accounts=args.accounts,
            limit_rps=args.limit,
            workers=args.workers,
            max_rps=args.max_rps,
        )
    print(json.dumps({**figures("ratelimit", args.limit, run), "run": run}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
