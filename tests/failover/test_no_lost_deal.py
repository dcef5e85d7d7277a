"""A failover that keeps a poll's cursor but loses its messages must not lose the deals.

Real servers: a primary with a replica behind a moving endpoint. The first poll's messages
never arrive (its publisher drops them: the state a failover leaves when the messages went to
the old primary and the cursor, through a connection that had already moved, to the new
one), while its cursor advance replicates. After the failover the next poll sees another
primary run id beside the cursor and reads again from where the lost poll started.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from bench.data import seed_won_accounts
from tasks.poll import run_poll
from worker.app import configure
from worker.context import build_context
from worker.sandbox.failover import ReplicatedRedis, replicated, wait_in_sync
from worker.sandbox.stack import SandboxStack

ACCOUNTS = 30


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[SandboxStack, ReplicatedRedis]]:
    with SandboxStack(data_dir=tmp_path / "data") as stack:
        assert stack.redis is not None and stack.salesforce is not None
        seed_won_accounts(stack.salesforce, ACCOUNTS)
        with replicated(stack.redis, tmp_path) as pair:
            stack.extra_env["REDIS_URL"] = pair.url
            configure(pair.url, stack.settings())
            yield stack, pair


def _poll(stack: SandboxStack, url: str) -> list[str]:
    """One poll through ``url``; the accounts it published (into a list: no worker here)."""
    published: list[str] = []

    def enqueue(items: Sequence[Any]) -> None:
        published.extend(str(item[0]) for item in items)

    ctx = build_context(stack.settings(), url)
    try:
        assert run_poll(ctx, enqueue)["status"] == "ok"
    finally:
        ctx.close()
    return published


def test_a_poll_after_a_failover_reads_again_what_the_lost_poll_read(
    cluster: tuple[SandboxStack, ReplicatedRedis],
) -> None:
    stack, pair = cluster
    lost = _poll(stack, pair.url)  # its messages are what the failover takes away
    assert len(lost) == ACCOUNTS

    wait_in_sync(pair.primary, pair.replica)  # the cursor reached the replica
    pair.fail_over()

    assert sorted(set(_poll(stack, pair.url))) == sorted(set(lost))
    # Once: the rule does not re-read for ever. The next poll reads only the boundary row its
    # look-back always re-reads (a sync its dedupe hash skips).
    assert len(_poll(stack, pair.url)) <= 1
