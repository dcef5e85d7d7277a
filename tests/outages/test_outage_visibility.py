"""What an operator sees during a Metronome outage, in the running product (a `crmsync worker
--metrics-port` with the alert webhook): the breaker_open alert, the breaker and parked gauges,
`crmsync status` and `crmsync parked list`; then `crmsync parked retry-now` after the "fix",
the breaker_closed alert, and everything synced. No dead letter on the way.

The breaker keeps its default settings here (5 failures, a probe every 30 s): the retry-now
command is what lets the probe through at once, as an operator's would.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from tasks.poll import poll_closed_won
from tests.support.metrics import Samples, scrape, total
from tests.support.ops_stack import OpsStack
from tests.support.prewarmed import run_cli
from tests.support.waiting import wait_until
from worker.sandbox.metronome import MetronomeFaults

pytestmark = pytest.mark.integration

ACCOUNTS = 6  # more than CRMSYNC_BREAKER_FAILURES (5): the last ones park without a call


def cli(ops: OpsStack, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(ops.stack.env(), *args, timeout_s=120)


def close(ops: OpsStack, n: int) -> str:
    sf = ops.stack.salesforce
    assert sf is not None
    account = sf.insert(
        "Account",
        {
            "Name": f"Outage Visible {n}",
            "Billing_Email__c": f"outage-{n}@example.test",
            "Billing_Provider__c": "aws_marketplace",
            "AWS_Customer_Id__c": "ABC123ABC12",
            "AWS_Product_Code__c": "my_product",
            "AWS_Region__c": "us-west-1",
        },
    )
    sf.insert(
        "Opportunity",
        {
            "AccountId": account,
            "Name": "Deal",
            "StageName": "Closed Won",
            "CloseDate": "2026-11-20",
        },
    )
    return account


def events(ops: OpsStack, kind: str) -> list[dict[str, Any]]:
    return [e for e in ops.receiver.events(kind) if e.get("api") == "metronome"]


def test_an_outage_is_visible_and_retry_now_drains_it(ops: OpsStack) -> None:
    stack = ops.stack
    assert stack.metronome is not None
    stack.metronome.set_faults(MetronomeFaults(server_error_rate=1.0))
    try:
        accounts = [close(ops, n) for n in range(ACCOUNTS)]
        assert poll_closed_won.apply_async().get(timeout=120)["status"] == "ok"
        [opened] = wait_until(lambda: events(ops, "breaker_open"), 60)
        assert "answered 500" in opened["reason"]

        def parked_gauge() -> Samples | None:
            samples = scrape(ops.metrics_port)
            return samples if total(samples, "crmsync_parked_syncs") >= ACCOUNTS else None

        samples = wait_until(parked_gauge, 60)
        assert total(samples, "crmsync_breaker_open", api="metronome") == 1
        assert total(samples, "crmsync_breaker_open", api="salesforce") == 0
        status = json.loads(cli(ops, "status", "--json").stdout)
        assert status["breakers"]["metronome"]["state"] in ("open", "half_open")
        assert status["parked"]["count"] >= ACCOUNTS
        assert "answered 500" in status["parked"]["oldest"]["reason"]
        listed = cli(ops, "parked", "list", "--json")
        assert listed.returncode == 0, listed.stderr
        assert set(accounts) <= {p["account_id"] for p in json.loads(listed.stdout)["parked"]}
    finally:
        stack.metronome.set_faults(MetronomeFaults())  # the fix
    retried = cli(ops, "parked", "retry-now")
    assert retried.returncode == 0, retried.stderr
    assert json.loads(retried.stdout)["due_now"] >= ACCOUNTS
    [closed] = wait_until(lambda: events(ops, "breaker_closed"), 120)
    assert closed["outage_s"] >= 0 and closed["closed_at"]

    def drained() -> bool:
        customers = stack.metronome.customers() if stack.metronome else []
        linked = {(c.get("customer_config") or {}).get("salesforce_account_id") for c in customers}
        samples = scrape(ops.metrics_port)
        return set(accounts) <= linked and total(samples, "crmsync_parked_syncs") == 0

    wait_until(drained, 120)
    samples = scrape(ops.metrics_port)
    assert total(samples, "crmsync_breaker_open", api="metronome") == 0
    status = json.loads(cli(ops, "status", "--json").stdout)
    assert status["breakers"]["metronome"]["state"] == "closed"
    assert status["parked"] == {"count": 0, "oldest": None}
    ctx = stack.context()
    try:
        assert [d for d in ctx.store.dead_letters(100_000) if d.account_id in accounts] == []
    finally:
        ctx.close()
