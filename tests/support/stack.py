"""A running stack (Redis, both emulators, one real worker process) for a test module."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from simple_salesforce.api import Salesforce

from worker.salesforce import build_sandbox_salesforce
from worker.sandbox.stack import SandboxStack


@contextlib.contextmanager
def stack_with_worker(
    base: Path, *, concurrency: int = 2, **stack_options: Any
) -> Iterator[SandboxStack]:
    """Start everything, wait until the worker answers crmsync.ping, stop it all after."""
    with SandboxStack(data_dir=base / "data", **stack_options) as running:
        running.start_worker(base / "worker.log", concurrency=concurrency)
        running.wait_for_worker()
        yield running


def salesforce_client(stack: SandboxStack) -> Salesforce:
    """simple-salesforce logged in to the stack's emulator, as a sales rep's tool would be."""
    assert stack.salesforce is not None
    return build_sandbox_salesforce(stack.salesforce.url, stack.credentials)
