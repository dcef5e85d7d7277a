"""Close → customer latency, the way a sales rep experiences it.

A deal is closed through simple-salesforce (account created, opportunity created open, then
moved to Closed Won: the rep's three edits); the clock starts when the last edit returns. A
watcher thread asks the Metronome emulator, through its public API, for a customer holding the
account's identity alias every WATCH_PERIOD_S; the clock stops when one answers. The polls come
from a real ``crmsync beat`` process (CRMSYNC_POLL_INTERVAL_S), run by the real workers: the
latency includes the schedule, the poll, the queue and the sync, as in production.

Closes are spread at irregular intervals over several poll periods, so they land at every
phase of the beat's cycle; the expected spread is uniform over one interval plus the work.
"""

from __future__ import annotations

import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import metronome
from simple_salesforce.api import Salesforce

from bench.data import account_fields
from mappings.ids import normalize_salesforce_id

WATCH_PERIOD_S = 0.05


@dataclass
class LatencyResult:
    seconds: list[float] = field(default_factory=list)
    missing: int = 0

    def percentile(self, q: float) -> float:
        """Nearest-rank percentile (p99 of 50 samples is the largest but none)."""
        ordered = sorted(self.seconds)
        if not ordered:
            return float("nan")
        rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
        return ordered[rank - 1]


def start_beat(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "worker.cli", "beat", "--loglevel=INFO"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def wait_for_first_poll(last_poll: Callable[[], dict[str, Any]], timeout_s: float = 120.0) -> None:
    """Until the beat just started has had its first poll done.

    In production beat runs for weeks: a close waits for the next tick, not for beat to boot.
    Closing deals while beat was still starting timed its start-up (Python, Celery, redbeat's
    lock) into the first closes' latency: 6 to 8 s samples where the steady state gives at
    most an interval plus the work."""
    before = last_poll().get("finished_at")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if last_poll().get("finished_at") not in (None, before):
            return
        time.sleep(WATCH_PERIOD_S)  # polling Redis for beat's first poll, not a fixed wait
    raise TimeoutError(f"beat's first poll did not finish within {timeout_s:.0f} s")


def close_deal(sf: Salesforce, n: int) -> str:
    created = sf.Account.create(account_fields(n, prefix="Latency"))  # type: ignore[operator]
    opportunity = sf.Opportunity.create(  # type: ignore[operator]
        {
            "AccountId": created["id"],
            "Name": "New logo",
            "StageName": "Negotiation/Review",
            "CloseDate": "2026-11-30",
        }
    )
    sf.Opportunity.update(opportunity["id"], {"StageName": "Closed Won"})  # type: ignore[operator]
    return normalize_salesforce_id(str(created["id"]))


def measure(
    sf: Salesforce,
    metronome_url: str,
    token: str,
    *,
    closes: int = 50,
    gap_s: tuple[float, float] = (0.1, 1.0),
    timeout_s: float = 60.0,
    seed: int = 8,
) -> LatencyResult:
    rng = random.Random(seed)
    pending: dict[str, float] = {}
    result = LatencyResult()
    lock = threading.Lock()
    finished = threading.Event()

    def watch() -> None:
        with httpx.Client(timeout=10) as http:
            client = metronome.Metronome(
                bearer_token=token, base_url=metronome_url, max_retries=2, http_client=http
            )
            while not finished.is_set():
                with lock:
                    waiting = list(pending.items())
                for account_id, closed_at in waiting:
                    page = client.v1.customers.list(ingest_alias=f"salesforce:{account_id}")
                    if page.data:
                        seen = time.monotonic()
                        with lock:
                            pending.pop(account_id, None)
                            result.seconds.append(seen - closed_at)
                    elif time.monotonic() - closed_at > timeout_s:
                        with lock:
                            pending.pop(account_id, None)
                            result.missing += 1
                finished.wait(WATCH_PERIOD_S)

    watcher = threading.Thread(target=watch, name="latency-watcher", daemon=True)
    watcher.start()
    for n in range(closes):
        account_id = close_deal(sf, 900_000 + n)
        with lock:
            pending[account_id] = time.monotonic()
        time.sleep(rng.uniform(*gap_s))  # spacing the closes, not waiting for anything
    deadline = time.monotonic() + timeout_s + 5
    while time.monotonic() < deadline:
        with lock:
            if not pending:
                break
        time.sleep(WATCH_PERIOD_S)
    finished.set()
    watcher.join(timeout=10)
    return result
