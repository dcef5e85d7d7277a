"""What every timed phase of ``make bench`` shares: its progress lines on stderr (one clock for
the whole run) and the timed pass, a poll and the wait for every sync it enqueued, with the
calls both emulators counted."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from tasks.poll import run_poll
from worker.ops.progress import terminal_total, wait_for_syncs
from worker.sandbox.stack import SandboxStack

_T0 = time.monotonic()


def progress(message: str) -> None:
    print(f"[bench {time.monotonic() - _T0:6.1f}s] {message}", file=sys.stderr, flush=True)


class Counters:
    """Both emulators' request counts, read by the emulators themselves (not by clients)."""

    def __init__(self, stack: SandboxStack) -> None:
        assert stack.metronome is not None and stack.salesforce is not None  # noqa: S101
        self.metronome = stack.metronome
        self.salesforce = stack.salesforce

    def snapshot(self) -> tuple[int, int, dict[str, int]]:
        return (
            self.metronome.total_requests(),
            self.salesforce.api_calls(),
            self.metronome.request_counts(),
        )


def _delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in sorted(after.items()) if v - before.get(k, 0)}


def timed_pass(stack: SandboxStack, name: str) -> dict[str, Any]:
    """One in-process poll and the wait for every sync it enqueued, with both call counts."""
    counters = Counters(stack)
    m0, s0, by_route0 = counters.snapshot()
    ctx = stack.context()
    try:
        outcomes0 = ctx.store.outcomes()
        baseline = terminal_total(ctx.store)
        started = time.monotonic()
        summary = run_poll(ctx)
        enqueued = int(summary.get("enqueued", 0))
        progress(f"{name}: poll enqueued {enqueued} in {time.monotonic() - started:.1f}s")
        if not wait_for_syncs(ctx.store, baseline, enqueued, timeout_s=900, label=name):
            raise RuntimeError(f"{name}: the workers did not finish in 900 s")
        seconds = time.monotonic() - started
        outcomes = _delta(ctx.store.outcomes(), outcomes0)
    finally:
        ctx.close()
    m1, s1, by_route1 = counters.snapshot()
    result = {
        "seconds": seconds,
        "enqueued": enqueued,
        "rows": int(summary.get("rows", 0)),
        "outcomes": outcomes,
        "metronome_calls": m1 - m0,
        "metronome_by_route": _delta(by_route1, by_route0),
        "salesforce_calls": s1 - s0,
    }
    progress(f"{name}: {json.dumps(result)}")
    return result
