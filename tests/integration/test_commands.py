"""The operator commands, run as processes against a running stack (real worker, emulators)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from simple_salesforce.api import Salesforce

from tests.support.deals import close_deal, customers_of
from tests.support.prewarmed import run_cli
from tests.support.processes import REPO_ROOT, crmsync_env
from tests.support.stack import held_by, poll_and_wait, salesforce_client, stack_with_worker
from worker.ops.progress import terminal_total, wait_for_syncs
from worker.sandbox.stack import SandboxStack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxStack]:
    base = tmp_path_factory.mktemp("commands")
    # Every poll reads the event streams here (the re-opened/merged test polls twice at once).
    events_every_poll = {"CRMSYNC_EVENTS_INTERVAL_S": "0"}
    with stack_with_worker(base, extra_env=events_every_poll) as running:
        yield running


@pytest.fixture(scope="module")
def sf(stack: SandboxStack) -> Salesforce:
    return salesforce_client(stack)


def cli(stack: SandboxStack, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(stack.env(), *args)


def test_poll_command_enqueues_and_waits(stack: SandboxStack, sf: Salesforce) -> None:
    account_id = close_deal(sf, "Polled From CLI")
    result = cli(stack, "poll", "--wait", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout[: result.stdout.rindex("}") + 1])
    assert summary["status"] == "ok" and summary["enqueued"] >= 1
    assert len(customers_of(stack, account_id)) == 1


def test_status_json_reports_cursors_outcomes_and_dead_letters(
    stack: SandboxStack, sf: Salesforce
) -> None:
    # One deal that syncs and one that dead-letters, both of this test's own (it runs alone).
    close_deal(sf, "Status Good")
    close_deal(sf, "Status Bad", AWS_Region__c="pluto-1")
    poll_and_wait(stack)
    result = cli(stack, "status", "--json")
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert set(status["cursors"]) >= {"opportunities", "accounts"}
    assert all(c["lag_s"] >= 0 for c in status["cursors"].values())
    assert status["last_poll"]["status"] == "ok"
    assert status["outcomes"]["created"] >= 1
    reasons = [d["reason"] for d in status["dead_letters"]["latest"]]
    assert any("pluto-1" in reason for reason in reasons)
    rate = status["metronome_rate"]
    assert (rate["allowed_rps"], rate["max_rps"], rate["throttled"]) == (50, 50, False)


def test_plan_prints_the_calls_and_makes_none(stack: SandboxStack, sf: Salesforce) -> None:
    assert stack.metronome is not None
    account_id = close_deal(sf, "Planned Only")
    writes_before = _writes(stack)
    result = cli(stack, "plan", account_id)
    assert result.returncode == 0, result.stderr
    assert "create" in result.stdout.lower()
    assert _writes(stack) == writes_before
    assert customers_of(stack, account_id) == []


def test_redrive_resends_the_stored_snapshot(stack: SandboxStack, sf: Salesforce) -> None:
    account_id = close_deal(sf, "Redriven", AWS_Region__c="atlantis-1")
    poll_and_wait(stack)
    ctx = stack.context()
    try:
        [letter] = [d for d in ctx.store.dead_letters() if d.account_id == account_id]
        # Redrive re-sends the stored snapshot (force: the dedupe is bypassed).
        baseline = terminal_total(ctx.store)
        result = cli(stack, "dead-letters", "redrive", letter.entry_id)
        assert result.returncode == 0, result.stderr
        assert "redriven 1" in result.stdout
        assert wait_for_syncs(ctx.store, baseline, 1, timeout_s=120)
        remaining = [d for d in ctx.store.dead_letters() if d.account_id == account_id]
        # Same bad snapshot: dead-lettered again with the same reason (nothing lost), counted
        # in the same open dead letter rather than a second one.
        assert [(d.kind, d.count) for d in remaining] == [("mapping", 2)]
        assert remaining[0].entry_id == letter.entry_id
        assert remaining[0].trigger == "redrive"
    finally:
        ctx.close()


def test_resync_through_celery_call(stack: SandboxStack, sf: Salesforce) -> None:
    account_id = close_deal(sf, "Celery Called")
    ctx = stack.context()
    try:
        baseline = terminal_total(ctx.store)
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "worker.app",
                "call",
                "crmsync.resync",
                "--kwargs",
                json.dumps({"account_ids": [account_id]}),
            ],
            cwd=REPO_ROOT,
            env=crmsync_env(stack.env()),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        # The resync task runs on the worker, which then enqueues one sync.
        assert wait_for_syncs(ctx.store, baseline, 1, timeout_s=120)
    finally:
        ctx.close()
    assert len(customers_of(stack, account_id)) == 1


def test_a_deal_sold_as_line_items_by_hand_becomes_a_contract_with_those_terms(
    stack: SandboxStack,
) -> None:
    """`sandbox add-account --line-item ...` as a newcomer types it, then `sandbox contracts`."""
    assert stack.salesforce is not None
    stack.salesforce.seed(0)  # the org's products, as `crmsync sandbox` always has them
    lines = ["SEAT,quantity=50,price=1200", "COMMIT,price=120000", "COMPUTE,discount=20",
             "ONBOARD,price=5000"]  # fmt: skip
    added = cli(
        stack, "sandbox", "add-account", "Sold By Hand", "--rate-card", "standard",
        "--term-months", "12", "--won", *(f"--line-item={line}" for line in lines),
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    opportunity_id = added.stdout.split(" won deal ", 1)[1].split()[0]
    assert "SEAT (Platform seat): 50 seats" in added.stdout
    poll_and_wait(stack)
    listed = cli(stack, "sandbox", "contracts", "--json")
    assert listed.returncode == 0, listed.stderr
    [contract] = held_by(json.loads(listed.stdout), "sfdc_opportunity_id", opportunity_id)
    [seats] = contract["subscriptions"]
    assert seats["subscription_rate"]["product"]["name"] == "Platform seat"
    assert [q["quantity"] for q in seats["quantity_schedule"]] == [50]
    assert [c["access_schedule"]["schedule_items"][0]["amount"] for c in contract["commits"]] == [
        12_000_000
    ]
    assert [(o["product"]["name"], o["multiplier"]) for o in contract["overrides"]] == [
        ("Compute", 0.8)
    ]
    [fee] = contract["scheduled_charges"]
    assert fee["schedule"]["schedule_items"][0]["amount"] == 500_000
    assert contract["ending_before"] is not None  # --term-months 12


def test_reopened_deal_and_merged_account_need_attention_and_archive_nothing(
    stack: SandboxStack, sf: Salesforce
) -> None:
    assert stack.metronome is not None and stack.salesforce is not None
    reopened = close_deal(sf, "Reopened Later")
    survivor = close_deal(sf, "Merge Survivor")
    loser = close_deal(sf, "Merge Loser")
    poll_and_wait(stack)
    configs_before = _active_configs(stack)
    [opportunity] = sf.query(
        f"SELECT Id FROM Opportunity WHERE AccountId = '{reopened}'"  # noqa: S608 - test id
    )["records"]
    sf.Opportunity.update(opportunity["Id"], {"StageName": "Negotiation/Review"})  # type: ignore[operator]
    stack.salesforce.merge_accounts(survivor, loser)
    poll_and_wait(stack)
    ctx = stack.context()
    try:
        attention = [e for e in ctx.store.ledger(500) if e.get("outcome") == "needs_attention"]
    finally:
        ctx.close()
    events = {(e["event"], e["account_id"]) for e in attention}
    assert ("opportunity_reopened", reopened) in events
    assert ("account_merged", loser) in events
    assert _active_configs(stack) == configs_before, "something was archived"
    assert len(customers_of(stack, reopened)) == 1


def _writes(stack: SandboxStack) -> dict[str, int]:
    """Metronome's write requests so far, by route (a failed comparison names the route)."""
    assert stack.metronome is not None
    return {
        key: count
        for key, count in stack.metronome.request_counts().items()
        if key.startswith("POST") and "list" not in key.lower() and "/get" not in key
    }


def _active_configs(stack: SandboxStack) -> list[Any]:
    assert stack.metronome is not None
    return sorted(
        c["id"] for c in stack.metronome.billing_configurations() if not c.get("archived_at")
    )


def test_run_is_worker_and_beat_in_one_process(
    stack: SandboxStack, sf: Salesforce, tmp_path: Path
) -> None:
    """`crmsync run` polls on its own schedule and syncs: nobody calls poll here."""
    account_id = close_deal(sf, "Scheduled By Run")
    env = crmsync_env({**stack.env(), "CRMSYNC_POLL_INTERVAL_S": "1"})
    with (tmp_path / "run.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "worker.cli", "run", "--concurrency=1"],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 90
            while not customers_of(stack, account_id) and time.monotonic() < deadline:
                time.sleep(0.2)  # waiting on an observable condition, bounded
            assert len(customers_of(stack, account_id)) == 1, (tmp_path / "run.log").read_text()
        finally:
            process.terminate()
            process.wait(timeout=60)
