"""``python -m bench.backfill``: the backfill phase of ``make bench`` alone, to iterate on it.

Prints the ceiling, the backfill's rate and their ratio (one JSON object last), measured in
the same run as ``make bench`` does. ``--profile DIR`` also records the worker's processes
with py-spy (``pip install py-spy``; a flame graph per process in DIR), which is how the
per-message costs in README "Performance" were found.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import ceiling
from bench.data import seed_won_accounts
from bench.passes import progress
from bench.procstat import children
from bench.run import UNLIMITED_RPS, WORKER_PROCESSES, backfill_phase
from worker.sandbox.stack import SandboxStack


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--accounts", type=int, default=3000)
    parser.add_argument("--profile", type=Path, default=None, help="py-spy flame graphs here")
    args = parser.parse_args(argv)
    create, _runs = ceiling.best("create")
    progress(f"ceiling create: {create.rps:.0f} req/s")
    with tempfile.TemporaryDirectory(prefix="crmsync-backfill-") as tmp:
        base = Path(tmp)
        stack = SandboxStack(
            data_dir=base / "data",
            extra_env={
                "CRMSYNC_CONCURRENCY": str(WORKER_PROCESSES),
                "METRONOME_MAX_RPS": str(UNLIMITED_RPS),  # as in make bench: no limit here
            },
        )
        with stack:
            assert stack.salesforce is not None  # noqa: S101
            seed_won_accounts(stack.salesforce, args.accounts)
            worker = stack.start_worker(
                base / "worker.log", concurrency=WORKER_PROCESSES, name="backfill"
            )
            stack.wait_for_worker()
            spies = []
            spy_bin = shutil.which("py-spy") or shutil.which(
                "py-spy", path=Path(sys.executable).parent
            )
            if args.profile is not None and spy_bin:
                args.profile.mkdir(parents=True, exist_ok=True)
                for pid in [worker.pid, *children(worker.pid)]:
                    spies.append(
                        subprocess.Popen(
                            [
                                spy_bin,
                                "record",
                                "-p",
                                str(pid),
                                "-r",
                                "200",
                                "--gil",
                                "-f",
                                "raw",
                                "-o",
                                str(args.profile / f"worker-{pid}.txt"),
                            ],
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL,
                        )
                    )
            phases = backfill_phase(stack, worker.pid)
            for spy in spies:
                spy.send_signal(2)
                spy.wait(timeout=60)
    result = phases["backfill"]
    accounts = max(1, result["outcomes"].get("created", 0))
    per_1000 = 1000 / accounts
    summary = {
        "ceiling_create_rps": round(create.rps, 1),
        "backfill_accounts": accounts,
        "backfill_accounts_per_s": round(accounts / result["seconds"], 1),
        "backfill_metronome_calls_per_account": round(result["metronome_calls"] / accounts, 3),
        "backfill_ratio_to_ceiling": round(
            result["metronome_calls"] / result["seconds"] / create.rps, 3
        ),
        "worker_cpu_s_per_1000_accounts": round(phases["worker_cpu_s"] * per_1000, 2),
        "bench_process_cpu_s_per_1000_accounts": round(phases["bench_process_cpu_s"] * per_1000, 2),
        "redis_cpu_s_per_1000_accounts": round(phases["redis_cpu_s"] * per_1000, 2),
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
