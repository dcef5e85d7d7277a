"""Waiting for enqueued syncs to finish, with a progress bar on a terminal.

Completion is read from the outcome counters (worker.state.keys ``outcomes``): every sync ends in
exactly one terminal outcome, so "terminal outcomes grew by N" means N syncs finished.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, TextIO

from worker.state.store import SyncStore

#: "parked" ends a sync for now (worker/outages/parking.py): its replay later counts once more.
TERMINAL_OUTCOMES = ("created", "updated", "in_sync", "unchanged", "dead_lettered", "parked")


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


@dataclass
class SyncWatch:
    """What the syncs a command enqueued came to: outcome counts and their dead letters.

    Taken from the outcome counters and the dead-letter stream (one entry per attempt, so a
    record that dead-letters again into its open group is reported too), before and after, so
    it needs nothing from the tasks; syncs other processes finish meanwhile (a beat's poll)
    are counted too, which the report's ``outcomes`` says by being totals over the wait.
    """

    store: SyncStore
    outcomes_before: dict[str, int]
    dead_before: str  # the newest dead-letter attempt's stream id at the start

    @classmethod
    def start(cls, store: SyncStore) -> SyncWatch:
        return cls(store, store.outcomes(), store.dead_letter_book.last_occurrence_id())

    @property
    def baseline(self) -> int:
        return sum(self.outcomes_before.get(name, 0) for name in TERMINAL_OUTCOMES)

    def report(self, account_ids: Collection[str] | None = None) -> dict[str, Any]:
        """Outcome counts since :meth:`start`, and the new dead letters of ``account_ids``
        (of any account when None)."""
        after = self.store.outcomes()
        outcomes = {
            name: after.get(name, 0) - self.outcomes_before.get(name, 0)
            for name in TERMINAL_OUTCOMES
            if after.get(name, 0) != self.outcomes_before.get(name, 0)
        }
        wanted = set(account_ids) if account_ids is not None else None
        dead = [
            {"account_id": d.account_id, "kind": d.kind, "reason": d.reason, "group": d.group_id}
            for d in self.store.dead_letter_book.occurrences_since(
                self.dead_before, DEAD_LETTER_SCAN
            )
            if wanted is None or d.account_id in wanted
        ]
        return {"outcomes": outcomes, "dead_letters": dead}


#: Dead letters are capped in Redis (worker.state.store); reading them all is bounded.
DEAD_LETTER_SCAN = 100_000
