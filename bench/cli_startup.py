"""How long ``crmsync`` takes to start, next to a bare interpreter measured in the same run.

Compose and Kubernetes run ``crmsync check --quick --skip-worker`` (listener, beat) as a health
check every 30-60 s, and an operator types ``crmsync --help``: start-up is paid each time.
Each command runs ``RUNS`` times, interleaved with ``python -c pass`` (the venv's own
interpreter, so what every process of it pays) so a noisy machine slows both alike; the
median of each, and the difference (what crmsync itself costs), are printed as one JSON
object. The health check runs against a real redis-server (it reaches Redis every time),
with the default mapping, in an empty working directory, twice:

- ``health_check_stamped``: the common case, a stamp of the validated settings and mapping
  in the cache directory (worker/commands/check_stamp.py; the unmeasured warm-up run
  writes it), Redis reached with the standard library (worker/commands/quick_check.py);
- ``health_check_cold``: no usable cache directory (``XDG_CACHE_HOME`` names a file), so
  every run validates with pydantic and the mapping models and reaches Redis with redis-py:
  the first check of a new container, and every check where nothing can be cached.

    python -m bench.cli_startup            # or: make bench-cli
"""

from __future__ import annotations

import compileall
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from worker.settings import child_environment
from worker.state.server import RedisServer

RUNS = int(os.environ.get("BENCH_CLI_RUNS", "15"))
CLI = [sys.executable, "-m", "worker.cli"]
QUICK_CHECK = [*CLI, "check", "--quick", "--skip-worker"]

#: name -> (argv, whether the run may use the stamp cache)
COMMANDS: dict[str, tuple[list[str], bool]] = {
    "bare_interpreter": ([sys.executable, "-c", "pass"], True),
    "crmsync_help": ([*CLI, "--help"], True),
    "crmsync_version": ([*CLI, "status", "--version"], True),
    "health_check_stamped": (QUICK_CHECK, True),
    "health_check_cold": (QUICK_CHECK, False),
}


def _once(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """Wall time and CPU time (user + system, of the child) of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:  # a failing check is not a start-up figure
        raise RuntimeError(f"{' '.join(argv[2:])} failed: {done.stdout}{done.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed, cpu


def compile_sources() -> None:
    """Write the ``.pyc`` files of crmsync's own packages, as an install does (pip compiles a
    wheel's modules; ``make demo`` and ``make test`` run compileall). Where
    PYTHONDONTWRITEBYTECODE is set no run writes them, and each would compile every module it
    imports from source again: not the start-up of an installed crmsync."""
    for package in ("worker", "tasks", "mappings"):
        spec = importlib.util.find_spec(package)
        for directory in (spec.submodule_search_locations or []) if spec else []:
            compileall.compile_dir(directory, quiet=1)


def measure(env: dict[str, str], cwd: Path, runs: int = RUNS) -> dict[str, object]:
    """Medians of wall time (what a health check's timeout sees) and of CPU time (what it
    costs the node; steadier than wall time on a machine shared with other jobs)."""
    uncached = {**env, "XDG_CACHE_HOME": str(cwd / "not-a-directory")}
    (cwd / "not-a-directory").write_text("")  # a cache directory cannot be made under a file
    walls: dict[str, list[float]] = {name: [] for name in COMMANDS}
    cpus: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for argv, cached in COMMANDS.values():  # warm the file cache (and stamp) once, unmeasured
        _once(argv, env if cached else uncached, cwd)
    for _ in range(runs):
        for name, (argv, cached) in COMMANDS.items():
            wall, cpu = _once(argv, env if cached else uncached, cwd)
            walls[name].append(wall)
            cpus[name].append(cpu)
    medians = {name: round(statistics.median(values), 3) for name, values in walls.items()}
    bare = medians["bare_interpreter"]
    return {
        "runs": runs,
        "median_s": medians,
        "over_bare_interpreter_s": {
            name: round(value - bare, 3)
            for name, value in medians.items()
            if name != "bare_interpreter"
        },
        "median_cpu_s": {name: round(statistics.median(v), 3) for name, v in cpus.items()},
    }


def run() -> dict[str, float]:
    """The figures ``make bench`` reports (seconds, medians of this run)."""
    measured = measure_with_redis()
    medians = measured["median_s"]
    assert isinstance(medians, dict)  # noqa: S101 - measure() builds it
    return {
        "cli_bare_interpreter_s": medians["bare_interpreter"],
        "cli_help_s": medians["crmsync_help"],
        "cli_health_check_s": medians["health_check_stamped"],
        "cli_health_check_cold_s": medians["health_check_cold"],
    }


def main() -> None:
    print(json.dumps({"cli_startup": measure_with_redis()}, sort_keys=True))


def measure_with_redis() -> dict[str, object]:
    compile_sources()
    with tempfile.TemporaryDirectory(prefix="crmsync-cli-bench-") as tmp:
        server = RedisServer(data_dir=Path(tmp) / "redis").start()
        try:
            env = child_environment(
                {
                    "REDIS_URL": server.url,
                    "CRMSYNC_DATA_DIR": str(Path(tmp) / "data"),
                    "XDG_CACHE_HOME": str(Path(tmp) / "cache"),
                    "METRONOME_BEARER_TOKEN": "bench-token",
                    "SALESFORCE_USERNAME": "bench@example.test",
                    "SALESFORCE_PASSWORD": "bench-password",
                    "SALESFORCE_SECURITY_TOKEN": "bench-token",
                }
            )
            workdir = Path(tmp) / "workdir"  # no .env: what a container's health check sees
            workdir.mkdir()
            return measure(env, workdir)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
