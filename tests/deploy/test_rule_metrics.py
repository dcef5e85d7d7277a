"""Every metric the alert rules and the dashboard (deploy/) read is one a real worker exports:
a renamed metric would otherwise silence its alert without a sound."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tasks.poll import poll_closed_won
from tasks.sync import sync_account
from tests.support.deploy_files import names_used
from tests.support.ops_stack import OpsStack
from tests.support.waiting import wait_until
from worker.app import app

pytestmark = pytest.mark.integration


def exported(port: int) -> set[str]:
    """Family and sample names of one scrape (``x_total`` and ``x`` for a counter)."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names |= {sample.name for sample in family.samples}
    return names


def test_every_metric_the_rules_and_dashboard_use_is_exported(ops: OpsStack) -> None:
    sf = ops.stack.salesforce
    assert sf is not None
    # Work that makes every counter exist: a poll with a won deal (Salesforce and Metronome
    # requests, a sync, the API usage) and a message with the wrong arguments (a task failure).
    account = sf.insert("Account", {"Name": "Rule Metrics Ltd", "Billing_Provider__c": ""})
    sf.insert(
        "Opportunity",
        {
            "AccountId": account,
            "Name": "Metric",
            "StageName": "Closed Won",
            "CloseDate": "2026-11-20",
        },
    )
    app.send_task("crmsync.sync_account", args=["only-one-argument"])
    poll_closed_won.apply_async().get(timeout=120)
    wanted = names_used()
    # A retry: a sync that finds its account locked (by this test) waits and runs again.
    busy = sf.insert("Account", {"Name": "Busy Ltd", "Billing_Provider__c": ""})
    record = {
        "Id": sf.insert(
            "Opportunity",
            {
                "AccountId": busy,
                "Name": "Busy",
                "StageName": "Closed Won",
                "CloseDate": "2026-11-20",
            },
        ),
        "AccountId": busy,
        "SystemModstamp": "2026-11-20T10:00:00.000+0000",
        "Account": {"Id": busy, "Name": "Busy Ltd"},
    }
    ctx = ops.stack.context()
    try:
        with ctx.store.account_lock(busy):
            sync_account.apply_async(args=[busy, record])
            wait_until(lambda: "crmsync_task_retries_total" in exported(ops.metrics_port), 60)
    finally:
        ctx.close()

    def complete() -> set[str] | None:
        names = exported(ops.metrics_port)
        return names if wanted <= names else None

    try:
        names = wait_until(complete, 60)
    except AssertionError:
        names = exported(ops.metrics_port)
        raise AssertionError(f"not exported: {sorted(wanted - names)}") from None
    assert wanted <= names
