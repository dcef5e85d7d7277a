"""How long ``crmsync`` takes to start, next to a bare interpreter measured in the same run.

Compose and Kubernetes run ``crmsync check --quick`` as a health check every few seconds, and
an operator types ``crmsync --help``: start-up is paid each time. Each command runs ``RUNS``
times, interleaved with ``python -c pass`` so a noisy machine slows both alike; the median of
each, and the difference (what crmsync itself costs), are printed as one JSON object. The
health check runs against a real redis-server (it PINGs Redis), with the default mapping.

    python -m bench.cli_startup            # or: make bench-cli
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from worker.settings import child_environment
from worker.state.server import RedisServer

RUNS = int(os.environ.get("BENCH_CLI_RUNS", "15"))

COMMANDS: dict[str, list[str]] = {
    "bare_interpreter": [sys.executable, "-c", "pass"],
    "crmsync_help": [sys.executable, "-m", "worker.cli", "--help"],
    "crmsync_version": [sys.executable, "-m", "worker.cli", "status", "--version"],
    "health_check": [sys.executable, "-m", "worker.cli", "check", "--quick", "--skip-worker"],
}


def _once(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - started


def measure(env: dict[str, str], runs: int = RUNS) -> dict[str, object]:
    samples: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for argv in COMMANDS.values():  # warm the file cache once, unmeasured
        _once(argv, env)
    for _ in range(runs):
        for name, argv in COMMANDS.items():
            samples[name].append(_once(argv, env))
    medians = {name: round(statistics.median(values), 3) for name, values in samples.items()}
    bare = medians["bare_interpreter"]
    return {
        "runs": runs,
        "median_s": medians,
        "over_bare_interpreter_s": {
            name: round(value - bare, 3)
            for name, value in medians.items()
            if name != "bare_interpreter"
        },
    }


def run() -> dict[str, float]:
    """The figures ``make bench`` reports (seconds, medians of this run)."""
    measured = measure_with_redis()
    medians = measured["median_s"]
    assert isinstance(medians, dict)  # noqa: S101 - measure() builds it
    return {
        "cli_bare_interpreter_s": medians["bare_interpreter"],
        "cli_help_s": medians["crmsync_help"],
        "cli_health_check_s": medians["health_check"],
    }


def main() -> None:
    print(json.dumps({"cli_startup": measure_with_redis()}, sort_keys=True))


def measure_with_redis() -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="crmsync-cli-bench-") as tmp:
        server = RedisServer(data_dir=Path(tmp) / "redis").start()
        try:
            env = child_environment(
                {
                    "REDIS_URL": server.url,
                    "CRMSYNC_DATA_DIR": str(Path(tmp) / "data"),
                    "METRONOME_BEARER_TOKEN": "bench-token",
                    "SALESFORCE_USERNAME": "bench@example.test",
                    "SALESFORCE_PASSWORD": "bench-password",
                    "SALESFORCE_SECURITY_TOKEN": "bench-token",
                }
            )
            return measure(env)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
