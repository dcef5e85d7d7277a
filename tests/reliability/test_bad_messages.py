"""Messages on the queue that are not ours, malformed, or poison, against a real worker.

Before, a wrong argument count was a TypeError raised by Celery before our code ran: a FAILURE
line in the log and the message acked and gone. Now every such message leaves a dead letter
with the reason, and the worker goes on with the next message.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from tasks.sync import MAX_DELIVERIES, sync_account
from tests.support.stack import stack_with_worker
from worker.app import app
from worker.ops.progress import terminal_total, wait_for_syncs
from worker.sandbox.stack import SandboxStack
from worker.state.keys import QUEUE

pytestmark = pytest.mark.integration

ACCOUNT = "001000000000005AAA"


def record(account: str = ACCOUNT, email: str = "ap@queue.example") -> dict[str, object]:
    return {
        "Id": "006000000000005AAA",
        "AccountId": account,
        "Account": {"Id": account, "Name": "Queue Test", "Billing_Email__c": email},
    }


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxStack]:
    base = tmp_path_factory.mktemp("messages")
    with stack_with_worker(base, concurrency=1) as running:
        yield running


def raw_message(body: object, headers: dict[str, object]) -> str:
    """A kombu Redis envelope as another producer might push it."""
    return json.dumps(
        {
            "body": base64.b64encode(json.dumps(body).encode()).decode(),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": headers,
            "properties": {
                "body_encoding": "base64",
                "delivery_tag": str(uuid.uuid4()),
                "delivery_info": {"exchange": "", "routing_key": QUEUE},
                "priority": 0,
            },
        }
    )


def test_every_bad_message_dead_letters_with_its_reason_and_good_work_goes_on(
    stack: SandboxStack,
) -> None:
    ctx = stack.context()
    try:
        start = terminal_total(ctx.store)
        poison_id = str(uuid.uuid4())
        for _ in range(MAX_DELIVERIES):  # as if ten deliveries had each killed their worker
            ctx.store.count_delivery(poison_id, 0)
        client = redis.Redis.from_url(stack.redis_url)
        sends: list[Callable[[], object]] = [
            lambda: app.send_task("crmsync.sync_account", args=["only-one-argument"]),
            lambda: app.send_task("crmsync.sync_account", args=[ACCOUNT, record(), "x", "y"]),
            lambda: app.send_task("crmsync.sync_account", kwargs={"no_such_kwarg": 1}),
            lambda: app.send_task("crmsync.not_a_task_of_ours", args=[1, 2]),
            lambda: client.lpush(QUEUE, raw_message({"hello": "world"}, {})),
            lambda: sync_account.apply_async(args=[ACCOUNT, record()], task_id=poison_id),
            lambda: sync_account.apply_async(args=["001' OR Id != '", record()]),
        ]
        for send in sends:
            send()
        # Good work after all that: a real account, synced by the same worker.
        good = "001000000000006AAA"
        sync_account.apply_async(args=[good, record(good, "ap@good-queue.example")])
        assert wait_for_syncs(ctx.store, start, len(sends) + 1, timeout_s=90)
        letters = ctx.store.dead_letters()
        outcomes = ctx.store.outcomes()
    finally:
        ctx.close()
    kinds = sorted(d.kind for d in letters)
    assert kinds == sorted(
        [
            "malformed_message",  # one argument
            "malformed_message",  # four arguments
            "malformed_message",  # unknown keyword
            "unknown_task",
            "rejected_message",
            "redelivered",
            "malformed_message",  # hostile id, refused by run_sync itself
        ]
    ), [(d.kind, d.reason) for d in letters]
    reasons = " | ".join(d.reason for d in letters)
    assert "TypeError" in reasons and "not_a_task_of_ours" in reasons
    assert f"delivered {MAX_DELIVERIES + 1} times" in reasons
    assert outcomes.get("created") == 1
    assert stack.metronome is not None
    assert [c["custom_fields"]["sfdc_account_id"] for c in stack.metronome.customers()] == [good]


def test_the_worker_survived_and_logged_no_secret_of_ours(stack: SandboxStack) -> None:
    stack.wait_for_worker(timeout_s=30)
    log = Path(stack.data_dir).parent / "worker.log"
    assert "dead-lettered" in log.read_text(errors="replace")
