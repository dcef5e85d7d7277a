"""Prometheus metrics of a real prefork worker, checked against what Redis and the emulators
recorded for the same work (a demo-like pass: ~50 accounts, two poison records)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import pytest

from tasks.poll import poll_closed_won
from tests.support.metrics import Samples, scrape, total
from tests.support.ops_stack import OpsStack
from tests.support.waiting import wait_until
from worker.demo.seed import seed
from worker.ops.progress import TERMINAL_OUTCOMES, terminal_total

pytestmark = pytest.mark.integration


def by_label(samples: Samples, name: str, label: str) -> dict[str, float]:
    out: Counter[str] = Counter()
    for (sample, labels), value in samples.items():
        if sample == name:
            out[dict(labels)[label]] += value  # type: ignore[assignment]
    return {k: v for k, v in out.items() if v}


def test_counts_match_the_ledger_and_the_emulators(ops: OpsStack) -> None:
    stack = ops.stack
    assert stack.metronome is not None and stack.salesforce is not None
    seed(stack)  # the demo's org: ~50 won accounts, a hierarchy, two poison records
    ctx = stack.context()
    try:
        store = ctx.store
        before = scrape(ops.metrics_port)
        metronome_before = sum(stack.metronome.request_counts().values())
        salesforce_before = sum(stack.salesforce.request_counts().values())
        outcomes_before = store.outcomes()
        baseline = terminal_total(store)

        summary = poll_closed_won.apply_async().get(timeout=120)
        assert summary["status"] == "ok" and summary["enqueued"] >= 50, summary
        wait_until(lambda: terminal_total(store) - baseline >= summary["enqueued"], 120)
        outcomes = store.outcomes()
        delta = {
            k: outcomes.get(k, 0) - outcomes_before.get(k, 0)
            for k in TERMINAL_OUTCOMES
            if outcomes.get(k, 0) - outcomes_before.get(k, 0)
        }
        assert delta.get("dead_lettered", 0) >= 2 and delta.get("created", 0) >= 40, delta

        def settled() -> Samples | None:
            # task_postrun fires just after the task wrote its outcome: wait for the scrape
            # to catch up rather than guessing a delay.
            now = scrape(ops.metrics_port)
            syncs = by_label(now, "crmsync_syncs_total", "outcome")
            syncs_before = by_label(before, "crmsync_syncs_total", "outcome")
            grown = {k: v - syncs_before.get(k, 0) for k, v in syncs.items()}
            return now if {k: v for k, v in grown.items() if v} == delta else None

        after = wait_until(settled, 30)
    finally:
        ctx.close()

    def grew(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert grew("crmsync_dead_letters_total") == delta["dead_lettered"]
    assert grew("crmsync_polls_total", status="ok") == 1
    assert grew("crmsync_poll_duration_seconds_count") == 1
    assert grew("crmsync_poll_duration_seconds_sum") == pytest.approx(summary["duration_s"])
    # Every HTTP request the emulators answered was counted once, by endpoint and status.
    assert grew("crmsync_metronome_requests_total") == (
        sum(stack.metronome.request_counts().values()) - metronome_before
    )
    assert grew("crmsync_salesforce_requests_total") == (
        sum(stack.salesforce.request_counts().values()) - salesforce_before
    )
    created = stack.metronome.request_counts()
    assert (
        grew(
            "crmsync_metronome_requests_total",
            method="POST",
            endpoint="/v1/customers",
            status="200",
        )
        >= delta["created"]
    ), created
    used, limit = summary["salesforce_api_usage"]
    assert total(after, "crmsync_salesforce_api_used") == used
    assert total(after, "crmsync_salesforce_api_limit") == limit
    # Read from Redis at scrape time.
    assert total(after, "crmsync_dead_letters_pending") == len(
        stack.context().store.dead_letters(count=100_000)
    )
    cursor = summary["cursors"]["opportunities"]
    lag = (
        datetime.now(UTC) - datetime.fromisoformat(cursor.replace("Z", "+00:00"))
    ).total_seconds()
    assert total(after, "crmsync_cursor_lag_seconds", cursor="opportunities") == pytest.approx(
        lag, abs=30
    )
    finished = datetime.fromisoformat(summary["finished_at"].replace("Z", "+00:00"))
    behind = (datetime.now(UTC) - finished).total_seconds()
    assert total(after, "crmsync_sync_lag_seconds") == pytest.approx(behind, abs=30)
    assert total(after, "crmsync_redis_up") == 1
    # Every Metronome request waited for its turn from the shared governor, none went without.
    assert grew("crmsync_metronome_token_wait_seconds_count") == grew(
        "crmsync_metronome_requests_total"
    )
    assert total(after, "crmsync_metronome_ungoverned_requests_total") == 0
    assert total(after, "crmsync_metronome_allowed_rps") == 50  # METRONOME_MAX_RPS default
    assert total(after, "crmsync_metronome_max_rps") == 50
    assert total(after, "crmsync_metronome_held_seconds") == 0
