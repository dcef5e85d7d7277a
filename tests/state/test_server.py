"""The redis-server crmsync starts (embedded Redis, and the servers of the failover tests)."""

from __future__ import annotations

from pathlib import Path

import redis

from worker.sandbox.failover import wait_in_sync
from worker.state.server import RedisServer


def test_a_server_that_just_synced_from_a_primary_shuts_down_cleanly(tmp_path: Path) -> None:
    """Right after a full sync it is writing its initial AOF and refuses SHUTDOWN for a few
    milliseconds; stop() asks again instead of waiting 10 s and killing it mid-write."""
    primary = RedisServer(tmp_path / "primary").start()
    replica = RedisServer(tmp_path / "replica").start()
    try:
        redis.Redis(port=primary.port).set("cursor", "2026-12-07T00:00:00Z")
        client = redis.Redis(port=replica.port)
        client.replicaof("127.0.0.1", primary.port)
        client.close()
        wait_in_sync(primary, replica)
        process = replica.process
        assert process is not None

        replica.stop()

        assert process.returncode == 0  # it exited by itself (a kill would be -9)
        log = (tmp_path / "replica" / "redis-server.log").read_text()
        assert "Redis is now ready to exit" in log
    finally:
        replica.stop()
        primary.stop()
