"""The pipeline end to end: real Redis, a real `crmsync worker` process, both emulators over
HTTP, simple-salesforce and metronome-sdk. Nothing of ours is mocked.

Each test works on accounts of its own, so they share one stack (and one worker) for speed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from metronome import Metronome
from simple_salesforce.api import Salesforce

from tasks.poll import run_poll
from tasks.resync import run_resync
from tasks.sync import sync_account
from tests.support.deals import close_deal, creates, customers_of
from tests.support.stack import poll_and_wait, salesforce_client, stack_with_worker
from worker.ops.progress import terminal_total, wait_for_syncs
from worker.queue.publish import SyncItem
from worker.sandbox.stack import SANDBOX_METRONOME_TOKEN, SandboxStack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxStack]:
    base = tmp_path_factory.mktemp("pipeline")
    with stack_with_worker(base) as running:
        yield running


@pytest.fixture(scope="module")
def sf(stack: SandboxStack) -> Salesforce:
    return salesforce_client(stack)


@pytest.fixture(scope="module")
def metronome(stack: SandboxStack) -> Iterator[Metronome]:
    assert stack.metronome is not None
    client = Metronome(bearer_token=SANDBOX_METRONOME_TOKEN, base_url=stack.metronome.url)
    yield client
    client.close()


def test_a_closed_deal_becomes_one_customer_with_its_billing_configuration(
    stack: SandboxStack, sf: Salesforce
) -> None:
    account_id = close_deal(sf, "Widgets Express")
    poll_and_wait(stack)
    [customer] = customers_of(stack, account_id)
    assert customer["name"] == "Widgets Express"
    assert "widgets-express@example.test" in customer["ingest_aliases"]
    assert stack.metronome is not None
    configs = [
        c for c in stack.metronome.billing_configurations() if c["customer_id"] == customer["id"]
    ]
    assert [(c["billing_provider"], c["configuration"]["aws_region"]) for c in configs] == [
        ("aws_marketplace", "us-west-1")
    ]


def test_the_same_account_enqueued_twice_at_once_makes_one_customer(
    stack: SandboxStack, sf: Salesforce
) -> None:
    account_id = close_deal(sf, "Twice At Once")
    ctx = stack.context()
    try:
        [record] = list(ctx.source.records_for_accounts([account_id]))
        baseline = terminal_total(ctx.store)
        for _ in range(4):
            sync_account.apply_async(args=[account_id, record], kwargs={"force": True})
        assert wait_for_syncs(ctx.store, baseline, 4, timeout_s=120)
    finally:
        ctx.close()
    assert len(customers_of(stack, account_id)) == 1


def test_a_poison_record_dead_letters_while_the_batch_completes(
    stack: SandboxStack, sf: Salesforce
) -> None:
    good = [close_deal(sf, f"Batch Good {n}") for n in range(3)]
    bad = close_deal(sf, "Batch Bad", AWS_Region__c="mars-north-1")
    poll_and_wait(stack)
    for account_id in good:
        assert len(customers_of(stack, account_id)) == 1
    assert customers_of(stack, bad) == []
    ctx = stack.context()
    try:
        letters = [d for d in ctx.store.dead_letters() if d.account_id == bad]
    finally:
        ctx.close()
    assert len(letters) == 1
    assert letters[0].kind == "mapping"
    assert "aws_region" in letters[0].reason and "mars-north-1" in letters[0].reason
    assert letters[0].snapshot is not None and letters[0].snapshot["AccountId"] == bad


def test_resync_of_one_id_rereads_salesforce_and_fixes_a_hand_edit(
    stack: SandboxStack, sf: Salesforce, metronome: Metronome
) -> None:
    account_id = close_deal(sf, "Hand Edited")
    poll_and_wait(stack)
    [customer] = customers_of(stack, account_id)
    # Someone renames the customer and replaces its aliases in the Metronome app.
    metronome.v1.customers.set_name(customer_id=customer["id"], name="Renamed by hand")
    metronome.v1.customers.set_ingest_aliases(
        customer_id=customer["id"], ingest_aliases=["hand-made-alias"]
    )
    ctx = stack.context()
    try:
        baseline = terminal_total(ctx.store)
        result = run_resync(ctx, account_ids=[account_id[:15]])  # a 15-char id works too
        assert result["enqueued"] == 1 and result["not_found"] == []
        assert wait_for_syncs(ctx.store, baseline, 1, timeout_s=120)
    finally:
        ctx.close()
    [fixed] = customers_of(stack, account_id)
    assert fixed["name"] == "Hand Edited"
    # The Salesforce-derived alias is back, and the hand-made one is kept (never dropped).
    assert {"hand-edited@example.test", "hand-made-alias"} <= set(fixed["ingest_aliases"])


def test_a_poll_interrupted_before_the_cursor_moved_loses_and_duplicates_nothing(
    stack: SandboxStack, sf: Salesforce
) -> None:
    account_id = close_deal(sf, "Interrupted Poll")
    ctx = stack.context()
    cursors_before = ctx.store.cursors()
    creates_before = creates(stack)

    class Crash(Exception):
        pass

    sent: list[str] = []
    baseline = terminal_total(ctx.store)

    def enqueue_then_crash(items: Sequence[SyncItem]) -> None:
        for account, record, known_absent in items:
            sync_account.apply_async(
                args=[account, record], kwargs={"reason": "poll", "known_absent": known_absent}
            )
            sent.append(account)
            if account == account_id:
                raise Crash("worker lost between enqueue and cursor write")

    try:
        with pytest.raises(Crash):
            run_poll(ctx, enqueue=enqueue_then_crash)
        assert ctx.store.cursors() == cursors_before, "the cursor moved before the poll ended"
        assert ctx.store.acquire_poll_lock() is not None, "the crashed poll kept its lock"
        ctx.store.client.delete(ctx.store.keys.poll_lock)
        # The crashed poll's syncs end first: the next poll waits for as many sync outcomes as
        # it enqueued, and a straggler of this one would count as one of them (the module's
        # next test then counted customers while one of its own was still being made).
        assert wait_for_syncs(ctx.store, baseline, len(sent), timeout_s=120)
    finally:
        ctx.close()
    poll_and_wait(stack)  # the next poll re-reads the same rows
    assert len(customers_of(stack, account_id)) == 1
    assert creates(stack) == creates_before + 1


def test_flushall_then_full_resync_creates_nothing_and_duplicates_nothing(
    stack: SandboxStack, sf: Salesforce
) -> None:
    accounts = [close_deal(sf, f"Survives Flush {n}") for n in range(3)]
    poll_and_wait(stack)
    assert stack.metronome is not None
    customers_before = len(stack.metronome.customers())
    creates_before = creates(stack)

    ctx = stack.context()
    try:
        ctx.store.client.flushall()
        baseline = terminal_total(ctx.store)
        result = run_resync(ctx, all_accounts=True)
        assert result["enqueued"] >= len(accounts)
        assert wait_for_syncs(ctx.store, baseline, result["enqueued"], timeout_s=180)
    finally:
        ctx.close()
    assert len(stack.metronome.customers()) == customers_before
    assert creates(stack) == creates_before
    for account_id in accounts:
        assert len(customers_of(stack, account_id)) == 1


def test_a_quiet_poll_costs_one_salesforce_query(stack: SandboxStack) -> None:
    """Between the event checks (CRMSYNC_EVENTS_INTERVAL_S), a poll is one SOQL query."""
    poll_and_wait(stack)
    assert stack.salesforce is not None
    before = stack.salesforce.api_calls()
    summary = poll_and_wait(stack)
    assert summary["salesforce_calls"] == 1
    assert stack.salesforce.api_calls() - before == 1


def test_worker_log_has_no_traceback(stack: SandboxStack, tmp_path: Path) -> None:
    """Run last in this module: everything above ended without an unhandled error."""
    log = Path(stack.data_dir).parent / "worker.log"
    text = log.read_text(errors="replace")
    assert "Traceback" not in text, text[-4000:]
