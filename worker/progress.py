"""Waiting for enqueued syncs to finish, with a progress bar on a terminal.

Completion is read from the outcome counters (worker.keys ``outcomes``): every sync ends in
exactly one terminal outcome, so "terminal outcomes grew by N" means N syncs finished.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from worker.store import SyncStore

TERMINAL_OUTCOMES = ("created", "updated", "in_sync", "unchanged", "dead_lettered")


def terminal_total(store: SyncStore) -> int:
    counts = store.outcomes()
    return sum(counts.get(name, 0) for name in TERMINAL_OUTCOMES)


def wait_for_syncs(
    store: SyncStore,
    baseline: int,
    expected: int,
    *,
    timeout_s: float = 600.0,
    label: str = "syncing",
    stream: TextIO | None = None,
) -> bool:
    """True once ``expected`` syncs finished after ``baseline``; False on timeout."""
    out = stream if stream is not None else sys.stderr
    show = out.isatty()
    deadline = time.monotonic() + timeout_s
    done = 0
    while True:
        done = terminal_total(store) - baseline
        if show:
            out.write("\r" + bar(label, min(done, expected), expected))
            out.flush()
        if done >= expected:
            break
        if time.monotonic() > deadline:
            if show:
                out.write("\n")
            return False
        time.sleep(0.1)  # a UI refresh interval, not a synchronisation
    if show:
        out.write("\n")
    return True


def bar(label: str, done: int, total: int, width: int = 30) -> str:
    filled = width if total == 0 else int(width * done / total)
    return f"{label:<10} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}"
