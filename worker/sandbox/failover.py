"""A primary, its replica and a moving endpoint in front of them: a managed Redis's failover
on 127.0.0.1, with the same redis-server binary the product starts.

:func:`fail_over` does what a cloud provider's failover does: the replica is promoted
(``REPLICAOF NO ONE``), the old primary is killed (SIGKILL: no goodbye on any connection) and
the endpoint moves to the promoted replica, so ``REDIS_URL`` names a different server.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import redis

from worker.sandbox.endpoint import Endpoint
from worker.state.server import RedisServer

SYNC_TIMEOUT_S = 30.0


@dataclass
class ReplicatedRedis:
    primary: RedisServer
    replica: RedisServer
    endpoint: Endpoint

    @property
    def url(self) -> str:
        return self.endpoint.url

    def fail_over(self, *, serve_on_s: float = 0.0) -> None:
        """Promote the replica, let the old primary go on serving ``serve_on_s`` (its writes
        then are lost), kill it and move the endpoint."""
        self.promote()
        if serve_on_s:
            time.sleep(serve_on_s)  # the old primary's last acknowledged writes: to be lost
        process = self.primary.process
        if process is not None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
            self.primary.process = None
        self.endpoint.move(self.replica.port)

    def promote(self) -> None:
        """Only the first step of :meth:`fail_over`: the replica stops following and takes
        writes, while the old primary still serves (whatever it takes now is lost)."""
        client = redis.Redis(port=self.replica.port, socket_timeout=5)
        try:
            client.replicaof("NO", "ONE")
        finally:
            client.close()

    def new_replica(self, data_dir: Path) -> None:
        """After a failover: the promoted server is the primary, a fresh server its replica
        (ready for the next failover)."""
        self.primary = self.replica
        self.replica = follow(self.primary, data_dir)


def wait_in_sync(primary: RedisServer, replica: RedisServer) -> None:
    """Until the replica's link to the primary is up and it has caught up (not a sleep)."""
    client = redis.Redis(port=replica.port, socket_timeout=5, decode_responses=True)
    source = redis.Redis(port=primary.port, socket_timeout=5, decode_responses=True)
    deadline = time.monotonic() + SYNC_TIMEOUT_S
    try:
        while time.monotonic() < deadline:
            info = client.info("replication")
            if info.get("master_link_status") == "up":
                offset = source.info("replication")["master_repl_offset"]
                if int(info.get("slave_repl_offset", -1)) >= int(offset):
                    return
            time.sleep(0.05)
        raise TimeoutError("the replica did not catch up")
    finally:
        client.close()
        source.close()


def follow(primary: RedisServer, data_dir: Path) -> RedisServer:
    """A new server replicating ``primary``, caught up."""
    replica = RedisServer(data_dir).start()
    client = redis.Redis(port=replica.port, socket_timeout=5)
    try:
        client.replicaof("127.0.0.1", primary.port)
    finally:
        client.close()
    wait_in_sync(primary, replica)
    return replica


@contextlib.contextmanager
def replicated(primary: RedisServer, base: Path) -> Iterator[ReplicatedRedis]:
    """A replica of the running ``primary`` and an endpoint in front of the primary."""
    pair = ReplicatedRedis(primary, follow(primary, base / "replica"), Endpoint(primary.port))
    try:
        with pair.endpoint:
            yield pair
    finally:
        for server in (pair.primary, pair.replica):
            server.stop()
