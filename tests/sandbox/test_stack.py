"""The sandbox stack cleans up after itself when it cannot start."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from worker.sandbox.salesforce import SalesforceEmulator
from worker.sandbox.stack import SandboxStack
from worker.state.server import RedisServer


def test_a_stack_that_fails_to_start_stops_the_redis_server_it_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[subprocess.Popen[bytes]] = []
    real_start = RedisServer.start

    def start_and_remember(server: RedisServer) -> RedisServer:
        real_start(server)
        assert server.process is not None
        started.append(server.process)
        return server

    def port_taken(emulator: SalesforceEmulator) -> SalesforceEmulator:
        raise OSError("[Errno 98] Address already in use")

    monkeypatch.setattr(RedisServer, "start", start_and_remember)
    monkeypatch.setattr(SalesforceEmulator, "start", port_taken)
    with (
        pytest.raises(OSError, match="Address already in use"),
        SandboxStack(data_dir=tmp_path / "data"),
    ):
        pytest.fail("the stack must not start")
    [process] = started
    assert process.poll() is not None  # redis-server is gone, not left behind
