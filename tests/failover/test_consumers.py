"""A worker whose main loop stopped turning is listed as stalled, not as fine."""

from __future__ import annotations

import time

import fakeredis

from worker.commands.status import describe_consumers
from worker.state import consumers
from worker.state.keys import Keys


def test_a_loop_that_stopped_ticking_is_stalled() -> None:
    client = fakeredis.FakeRedis()
    keys = Keys("t")
    consumers.tick(client, keys, "w1@host")
    client.hset(keys.consumers, "w2@host", f"{time.time() - consumers.STALLED_AFTER_S - 5:.3f}")

    found = {c.node: c for c in consumers.consumers(client, keys)}

    assert not found["w1@host"].stalled
    assert found["w2@host"].stalled
    line = describe_consumers([c.as_dict() for c in found.values()])
    assert "w1@host consuming" in line and "w2@host STALLED" in line


def test_a_stopped_worker_leaves_the_list() -> None:
    client = fakeredis.FakeRedis()
    keys = Keys("t")
    consumers.tick(client, keys, "w1@host")
    consumers.leave(client, keys, "w1@host")
    assert consumers.consumers(client, keys) == []
    assert describe_consumers([]) == "none has started"
