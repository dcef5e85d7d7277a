"""``crmsync.sync_batch`` on a real worker: what must leave a batch does, nothing is lost.

A batch shares one Celery message between many accounts; these tests pin the three ways an
account leaves it (a busy lock, a redelivered batch, a malformed item) and that the others
sync meanwhile.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from mappings.ids import normalize_salesforce_id
from tasks.batch import sync_batch
from tests.support.deals import customers_of
from tests.support.stack import stack_with_worker
from tests.support.waiting import wait_until
from worker.ops.progress import terminal_total, wait_for_syncs
from worker.sandbox.stack import SandboxStack

pytestmark = pytest.mark.integration


def account_id(n: int) -> str:
    return normalize_salesforce_id(f"001B000000000{n:02d}")  # 18 characters, checksum right


def record(n: int) -> dict[str, Any]:
    account = account_id(n)
    return {
        "Id": normalize_salesforce_id(f"006B000000000{n:02d}"),
        "AccountId": account,
        "Account": {"Id": account, "Name": f"Batch {n}", "Billing_Email__c": f"b{n}@x.example"},
    }


def item(n: int) -> list[Any]:
    return [account_id(n), record(n), True]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxStack]:
    with stack_with_worker(tmp_path_factory.mktemp("batches"), concurrency=2) as running:
        yield running


def ledger_task_ids(stack: SandboxStack, account: str) -> list[str]:
    ctx = stack.context()
    try:
        return [e["task_id"] for e in ctx.store.ledger(1000) if e.get("account_id") == account]
    finally:
        ctx.close()


def test_a_busy_account_leaves_the_batch_and_syncs_alone_once_free(stack: SandboxStack) -> None:
    ctx = stack.context()
    try:
        baseline = terminal_total(ctx.store)
        retried = ctx.store.outcomes().get("retried", 0)
        with ctx.store.account_lock(account_id(2)):
            batch_id = sync_batch.apply_async(args=[[item(1), item(2), item(3)]]).id
            # The two free accounts sync while the third waits for its lock.
            assert wait_for_syncs(ctx.store, baseline, 2, timeout_s=60)
            assert customers_of(stack, account_id(2)) == []
            # The batch counts the account it handed on after the others' outcomes.
            wait_until(lambda: ctx.store.outcomes().get("retried", 0) > retried, 30)
        assert wait_for_syncs(ctx.store, baseline, 3, timeout_s=60)
    finally:
        ctx.close()
    for n in (1, 2, 3):
        assert len(customers_of(stack, account_id(n))) == 1
    assert all(t.startswith(f"{batch_id}#") for t in ledger_task_ids(stack, account_id(1)))
    # The busy one was synced by a message of its own, not by the batch.
    assert not any(t.startswith(batch_id) for t in ledger_task_ids(stack, account_id(2)))


def test_a_redelivered_batch_is_split_into_single_syncs(stack: SandboxStack) -> None:
    ctx = stack.context()
    try:
        baseline = terminal_total(ctx.store)
        batch_id = str(uuid.uuid4())
        ctx.store.count_delivery(batch_id, 0)  # as if the first delivery's worker had died
        sync_batch.apply_async(args=[[item(4), item(5)]], task_id=batch_id)
        assert wait_for_syncs(ctx.store, baseline, 2, timeout_s=60)
        letters = ctx.store.dead_letters()
    finally:
        ctx.close()
    assert letters == []
    for n in (4, 5):
        assert len(customers_of(stack, account_id(n))) == 1
        tasks = ledger_task_ids(stack, account_id(n))
        assert tasks and not any(t.startswith(batch_id) for t in tasks), tasks


def test_malformed_items_dead_letter_and_the_rest_of_the_batch_syncs(
    stack: SandboxStack,
) -> None:
    ctx = stack.context()
    try:
        baseline = terminal_total(ctx.store)
        before = len(ctx.store.dead_letters())
        sync_batch.apply_async(args=[[["only-an-id"], item(6), 42]])
        assert wait_for_syncs(ctx.store, baseline, 3, timeout_s=60)
        letters = ctx.store.dead_letters()[before:]
    finally:
        ctx.close()
    assert sorted(d.kind for d in letters) == ["malformed_message", "malformed_message"]
    assert all("batch item is not" in d.reason for d in letters)
    assert len(customers_of(stack, account_id(6))) == 1
