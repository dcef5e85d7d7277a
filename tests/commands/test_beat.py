"""One scheduler with two beat replicas, and a beat that survives Redis losing its data.

No worker consumes here: the test reads the poll messages off the queue itself, and each
message's ``origin`` header names the beat process that sent it."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.support.processes import REPO_ROOT, crmsync_env
from tests.support.waiting import wait_until
from worker.sandbox.stack import stop_processes
from worker.state.keys import QUEUE
from worker.state.server import RedisServer

pytestmark = pytest.mark.integration

INTERVAL_S = 1


class PollCollector:
    """Pops every message off the queue and records which process sent each poll."""

    def __init__(self, url: str) -> None:
        self.origins: list[str] = []
        self._client = redis.Redis.from_url(url, decode_responses=True)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            popped = self._client.blpop([QUEUE], timeout=0.5)
            if popped is None:
                continue
            headers = json.loads(popped[1])["headers"]
            if headers["task"] == "crmsync.poll_closed_won":
                with self._lock:
                    self.origins.append(headers["origin"])

    def snapshot(self) -> list[str]:
        with self._lock:
            return list(self.origins)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


@contextlib.contextmanager
def beat(url: str, log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = {
        "REDIS_URL": url,
        "CRMSYNC_POLL_INTERVAL_S": str(INTERVAL_S),
        "CRMSYNC_BEAT_LOCK_TIMEOUT_S": "5",
        "CRMSYNC_LOG_FORMAT": "json",
        # No Salesforce or Metronome credentials: beat never calls either API.
    }
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "worker.cli", "beat", "--loglevel=INFO"],
            cwd=REPO_ROOT,
            env=crmsync_env(env),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process
    finally:
        stop_processes([process], grace_s=20)


@pytest.fixture
def collector(redis_server: RedisServer) -> Iterator[PollCollector]:
    polls = PollCollector(redis_server.url)
    yield polls
    polls.close()


def test_two_beats_send_one_stream_of_polls_and_the_standby_takes_over(
    redis_server: RedisServer, collector: PollCollector, tmp_path: Path
) -> None:
    with beat(redis_server.url, tmp_path / "a.log") as first:
        wait_until(lambda: len(collector.snapshot()) >= 1, 60)
        with beat(redis_server.url, tmp_path / "b.log"):
            # The standby is up (its log says it waits on the lock) before we count.
            wait_until(lambda: b"beat: Starting" in (tmp_path / "b.log").read_bytes(), 60)
            start = len(collector.snapshot())
            wait_until(lambda: len(collector.snapshot()) >= start + 3, 30)
            window = collector.snapshot()[start:]
            assert len(set(window)) == 1, f"two beats sent polls: {window}"
            holder = window[0]
            stop_processes([first], grace_s=20)
            # The standby takes over: polls keep coming, now from another process.
            wait_until(lambda: collector.snapshot()[-1] != holder, 30)
            taken = len(collector.snapshot())
            wait_until(lambda: len(collector.snapshot()) >= taken + 2, 30)
            after = collector.snapshot()[taken - 1 :]
            assert holder not in after and len(set(after)) == 1
    assert first.returncode is not None


def test_beat_keeps_polling_after_redis_is_flushed(
    redis_server: RedisServer, collector: PollCollector, tmp_path: Path
) -> None:
    client = redis.Redis.from_url(redis_server.url)
    with beat(redis_server.url, tmp_path / "beat.log") as process:
        wait_until(lambda: len(collector.snapshot()) >= 2, 60)
        client.flushall()
        flushed_at = len(collector.snapshot())
        # Schedule, lock and queue binding are all gone; polls must still arrive.
        wait_until(lambda: len(collector.snapshot()) >= flushed_at + 2, 45)
        assert process.poll() is None, (tmp_path / "beat.log").read_text()[-3000:]
    log = (tmp_path / "beat.log").read_text()
    assert "re-creating them" in log
    assert "Traceback" not in log, log[-3000:]
