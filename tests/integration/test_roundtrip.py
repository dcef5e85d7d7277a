"""A task round trip through a real Celery worker process, on embedded and external Redis."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis

from tests.support.processes import wait_for_worker, worker_process
from worker.app import app, configure
from worker.settings import load_settings
from worker.state.server import STATE_FILE, RedisServer, ensure_embedded, find_embedded

pytestmark = pytest.mark.integration


def test_embedded_redis_is_shared_by_the_worker_process(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    embedded = ensure_embedded(data_dir)
    try:
        assert embedded.owner
        state = json.loads((data_dir / STATE_FILE).read_text())
        assert embedded.url == f"redis://127.0.0.1:{state['port']}/0"
        # A second process of the same run joins instead of starting another server.
        joined = ensure_embedded(data_dir)
        assert not joined.owner and joined.url == embedded.url

        configure(embedded.url, load_settings())
        # The worker is told only the data dir: it must find the embedded server itself.
        with worker_process({"CRMSYNC_DATA_DIR": str(data_dir)}, tmp_path / "worker.log"):
            answer = wait_for_worker(app)
        assert answer["pong"] is True
        client = redis.Redis.from_url(embedded.url)
        assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
        assert client.config_get("bind")["bind"] == "127.0.0.1"
        client.close()
    finally:
        embedded.stop()
    assert not (data_dir / STATE_FILE).exists()
    assert find_embedded(data_dir) is None


def test_external_redis_url_is_used_and_nothing_is_embedded(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    data_dir = tmp_path / "data"
    settings = load_settings(redis_url=redis_server.url, data_dir=data_dir)
    configure(redis_server.url, settings)
    env = {"REDIS_URL": redis_server.url, "CRMSYNC_DATA_DIR": str(data_dir)}
    with worker_process(env, tmp_path / "worker.log"):
        answer = wait_for_worker(app)
    assert answer["pong"] is True
    assert not (data_dir / STATE_FILE).exists(), "an embedded server was started needlessly"
    # The round trip really went through the external server: its queue key exists.
    client = redis.Redis.from_url(redis_server.url)
    assert client.exists("_kombu.binding.crmsync")
    client.close()
