"""A running stack (Redis, both emulators, one real worker process) for a test module."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from simple_salesforce.api import Salesforce

from tests.support.prewarmed import start_service
from worker.sandbox.salesforce.client import build_sandbox_salesforce
from worker.sandbox.stack import SandboxStack


@contextlib.contextmanager
def stack_with_worker(
    base: Path, *, concurrency: int = 2, **stack_options: Any
) -> Iterator[SandboxStack]:
    """Start everything, wait until the worker answers crmsync.ping, stop it all after.

    Its services start from the test process's prewarmed interpreter unless the caller
    hands in another ``launcher``."""
    stack_options.setdefault("launcher", start_service)
    with SandboxStack(data_dir=base / "data", **stack_options) as running:
        running.start_worker(base / "worker.log", concurrency=concurrency)
        running.wait_for_worker()
        yield running


def salesforce_client(stack: SandboxStack) -> Salesforce:
    """simple-salesforce logged in to the stack's emulator, as a sales rep's tool would be."""
    assert stack.salesforce is not None
    return build_sandbox_salesforce(stack.salesforce.url, stack.credentials)


def poll_and_wait(stack: SandboxStack) -> dict[str, Any]:
    """One poll in this process, then wait until the worker finished every sync it enqueued.

    It counts sync outcomes, not whose they are: syncs a test started before must have ended
    (wait for them), or they stand in for this poll's.
    """
    from tasks.poll import run_poll
    from worker.ops.progress import terminal_total, wait_for_syncs

    ctx = stack.context()
    try:
        baseline = terminal_total(ctx.store)
        summary = run_poll(ctx)
        assert summary["status"] == "ok", summary
        assert wait_for_syncs(ctx.store, baseline, summary["enqueued"], timeout_s=120)
        return summary
    finally:
        ctx.close()


def held_by(items: list[dict[str, Any]], field: str, value: str) -> list[dict[str, Any]]:
    """The emulator's customers or contracts whose custom field ``field`` is ``value``."""
    return [i for i in items if (i.get("custom_fields") or {}).get(field) == value]
