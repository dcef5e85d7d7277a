"""`crmsync flower` on the running product: auth enforced, our worker and tasks visible, and a
re-sync started through Flower's task API."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tasks.poll import poll_closed_won
from tests.support.ops_stack import OpsStack
from tests.support.processes import REPO_ROOT, crmsync_env
from tests.support.waiting import free_port, wait_until
from worker.ops.progress import terminal_total
from worker.sandbox.stack import stop_processes

pytestmark = pytest.mark.integration

AUTH = ("operator", "flower-pass-42")


@pytest.fixture(scope="module")
def flower(running_ops: OpsStack) -> Iterator[str]:
    ops = running_ops
    port = free_port()
    env = {**ops.stack.env(), "FLOWER_USER": AUTH[0], "FLOWER_PASSWORD": AUTH[1]}
    log_path = ops.base / "flower.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "worker.cli", "flower", f"--port={port}"],
            cwd=REPO_ROOT,
            env=crmsync_env(env),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: httpx.get(f"{url}/healthcheck", timeout=5).status_code == 200, 60)
        yield url
    finally:
        stop_processes([process], grace_s=20)
    assert AUTH[1] not in log_path.read_text(errors="replace")


def close_deal(ops: OpsStack, name: str) -> str:
    sf = ops.stack.salesforce
    assert sf is not None
    account = sf.insert(
        "Account",
        {"Name": name, "Billing_Email__c": "flower@example.test", "Billing_Provider__c": ""},
    )
    sf.insert(
        "Opportunity",
        {
            "AccountId": account,
            "Name": "Seen in Flower",
            "StageName": "Closed Won",
            "CloseDate": "2026-11-20",
        },
    )
    return account


def tasks_named(url: str, name: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{url}/api/tasks", auth=AUTH, timeout=10)
    response.raise_for_status()
    return [t for t in response.json().values() if t.get("name") == name]


def test_flower_requires_credentials(flower: str) -> None:
    assert httpx.get(f"{flower}/api/workers", timeout=10).status_code == 401
    assert (
        httpx.get(f"{flower}/api/tasks", auth=("operator", "wrong"), timeout=10).status_code == 401
    )


def test_flower_lists_our_worker_and_sync_tasks_and_starts_a_resync(
    ops: OpsStack, flower: str
) -> None:
    workers = wait_until(
        lambda: [
            name
            for name in httpx.get(f"{flower}/api/workers", auth=AUTH, timeout=30).json()
            if name.startswith("ops@")
        ],
        60,
    )
    assert workers

    account = close_deal(ops, "Flower Watched Ltd")
    ctx = ops.stack.context()
    try:
        baseline = terminal_total(ctx.store)
        summary = poll_closed_won.apply_async().get(timeout=120)
        assert summary["enqueued"] >= 1, summary
        wait_until(lambda: terminal_total(ctx.store) - baseline >= summary["enqueued"], 120)
        synced = wait_until(
            lambda: [
                t
                for t in tasks_named(flower, "crmsync.sync_batch")
                if account in str(t.get("args")) and t.get("state") == "SUCCESS"
            ],
            60,
        )
        assert "created" in str(synced[0].get("result"))

        baseline = terminal_total(ctx.store)
        response = httpx.post(
            f"{flower}/api/task/async-apply/crmsync.resync",
            json={"args": [[account]], "kwargs": {"force": True}},
            auth=AUTH,
            timeout=30,
        )
        assert response.status_code == 200, response.text
        task_id = response.json()["task-id"]
        wait_until(lambda: terminal_total(ctx.store) - baseline >= 1, 120)
        wait_until(
            lambda: [
                t
                for t in tasks_named(flower, "crmsync.resync")
                if t.get("uuid") == task_id and t.get("state") == "SUCCESS"
            ],
            60,
        )
        resynced = [
            e
            for e in ctx.store.ledger(count=1000)
            if e.get("task_id") and e.get("account_id") == account and e.get("reason") == "resync"
        ]
        assert resynced, "the resync started from Flower did not sync the account"
    finally:
        ctx.close()
