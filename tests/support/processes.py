"""Real processes for integration tests: redis-server and `crmsync worker`.

Readiness is established by asking (PING, crmsync.ping), never by sleeping.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

from celery import Celery

from worker.sandbox.stack import stop_processes
from worker.settings import child_environment

REPO_ROOT = Path(__file__).resolve().parents[2]

PLACEHOLDER_CREDENTIALS = {
    "METRONOME_BEARER_TOKEN": "placeholder-token",
    "SALESFORCE_USERNAME": "placeholder@example.test",
    "SALESFORCE_PASSWORD": "placeholder-password",
    "SALESFORCE_SECURITY_TOKEN": "placeholder-token",
}


def crmsync_env(extra: Mapping[str, str]) -> dict[str, str]:
    """A clean environment for a crmsync child: no inherited crmsync/Salesforce settings."""
    return child_environment(extra)


def run_cli(
    env: Mapping[str, str], *args: str, timeout_s: float = 180
) -> subprocess.CompletedProcess[str]:
    """``python -m worker.cli ARGS`` as an operator runs it, on ``env`` alone (a stack's
    ``env()``): output captured as text, the exit code left to the caller."""
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", *args],
        cwd=REPO_ROOT,
        env=crmsync_env(env),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


@contextlib.contextmanager
def worker_process(
    env: Mapping[str, str],
    log_path: Path,
    *,
    pool: str = "solo",
    concurrency: int = 1,
    extra_args: tuple[str, ...] = (),
) -> Iterator[subprocess.Popen[bytes]]:
    """`crmsync worker` as a child process; stopped with SIGTERM (a warm shutdown).

    The worker refuses to start without credentials; tests that only need the broker give it
    placeholder ones (nothing here contacts Salesforce or Metronome).
    """
    env = {**PLACEHOLDER_CREDENTIALS, **env}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "worker.cli",
                "worker",
                f"--pool={pool}",
                f"--concurrency={concurrency}",
                "--loglevel=INFO",
                *extra_args,
            ],
            cwd=REPO_ROOT,
            env=crmsync_env(env),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield process
        finally:
            stop_processes([process], grace_s=30)


def wait_for_worker(app: Celery, timeout: float = 60.0) -> dict[str, object]:
    """Block until a worker answers crmsync.ping (the round trip itself is the readiness)."""
    from tasks.health import ping

    result = ping.apply_async()
    answer: dict[str, object] = result.get(timeout=timeout)
    return answer
