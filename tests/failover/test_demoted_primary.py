"""A primary that a failover demoted instead of killing answers every write with READONLY.

Real servers: the client's endpoint moves to the promoted server without cutting the open
connection, so the client still talks to the old primary, now its replica. The connection
must be dropped and the write land on the new primary, not be refused forever.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from worker.sandbox.endpoint import Endpoint
from worker.sandbox.failover import wait_in_sync
from worker.state.connections import DemotedPrimary, redis_client
from worker.state.server import RedisServer


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[RedisServer, RedisServer]]:
    old, new = RedisServer(tmp_path / "old").start(), RedisServer(tmp_path / "new").start()
    try:
        yield old, new
    finally:
        old.stop()
        new.stop()


def _demote(old: RedisServer, new: RedisServer) -> None:
    """The usual managed failover's order: promote (``new`` already serves alone), then
    the old primary follows the new one and refuses writes."""
    client = redis.Redis(port=old.port, socket_timeout=5)
    try:
        client.replicaof("127.0.0.1", new.port)
    finally:
        client.close()
    wait_in_sync(new, old)


def test_a_write_to_a_demoted_primary_goes_to_the_new_one(
    pair: tuple[RedisServer, RedisServer],
) -> None:
    old, new = pair
    with Endpoint(old.port) as endpoint:
        client = redis_client(endpoint.url, decode_responses=True)
        client.set("cursor", "before")
        _demote(old, new)
        endpoint.move(new.port, cut=False)  # the open connection stays on the old server

        client.set("cursor", "after")

        assert redis.Redis(port=new.port, decode_responses=True).get("cursor") == "after"
        client.close()


def test_without_a_new_primary_the_refusal_is_a_connection_error(
    pair: tuple[RedisServer, RedisServer],
) -> None:
    """Behind an endpoint that still names the demoted server, the caller sees a lost
    connection (retried by Celery and our tasks like any other), not a ResponseError
    (a task's bug, dead-lettered)."""
    old, new = pair
    client = redis_client(old.url)
    _demote(old, new)
    with pytest.raises(DemotedPrimary):
        client.set("cursor", "after")
    client.close()
