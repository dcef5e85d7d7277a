"""Three Redis Sentinels on 127.0.0.1 watching one primary (redis-server --sentinel: the same
binary the product starts, in sentinel mode)."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import redis

from worker.state.server import _free_port, redis_server_binary

SERVICE = "crmsync-primary"
#: Quick detection: a primary silent for 1 s is down for a sentinel; two agree (quorum).
DOWN_AFTER_MS = 1000


def _config(port: int, primary_port: int, directory: Path) -> str:
    return "\n".join(
        [
            f"port {port}",
            "bind 127.0.0.1",
            f"dir {directory}",
            f"sentinel monitor {SERVICE} 127.0.0.1 {primary_port} 2",
            f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}",
            f"sentinel failover-timeout {SERVICE} 10000",
            f"sentinel parallel-syncs {SERVICE} 1",
            "",
        ]
    )


@contextlib.contextmanager
def sentinels(primary_port: int, base: Path, count: int = 3) -> Iterator[list[int]]:
    """``count`` sentinels monitoring the primary; yields their ports."""
    processes: list[subprocess.Popen[bytes]] = []
    ports: list[int] = []
    try:
        for n in range(count):
            directory = (base / f"sentinel{n}").resolve()
            directory.mkdir(parents=True, exist_ok=True)
            port = _free_port()
            conf = directory / "sentinel.conf"  # sentinel rewrites its own config file
            conf.write_text(_config(port, primary_port, directory))
            processes.append(
                subprocess.Popen(
                    [redis_server_binary(), str(conf), "--sentinel"],
                    stdout=(directory / "sentinel.log").open("wb"),
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
            ports.append(port)
        for port in ports:
            wait_for_primary(port, f"127.0.0.1:{primary_port}", timeout_s=20)
        yield ports
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def named_primary(sentinel_port: int) -> str | None:
    client = redis.Redis(port=sentinel_port, socket_timeout=2, decode_responses=True)
    try:
        address = client.sentinel_get_master_addr_by_name(SERVICE)
    except redis.RedisError:
        return None
    finally:
        client.close()
    if not isinstance(address, tuple):
        return None
    host, port = address
    return f"{host.decode() if isinstance(host, bytes) else host}:{port}"


def wait_for_primary(sentinel_port: int, expected: str, timeout_s: float) -> None:
    """Until the sentinel names ``expected`` as the primary (and knows the others)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if named_primary(sentinel_port) == expected:
            return
        time.sleep(0.1)
    raise TimeoutError(f"sentinel {sentinel_port} did not name {expected} in {timeout_s}s")
