"""Waiting on real processes: free ports, a webhook receiver, waiting on conditions."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(
    probe: Callable[[], T | None], timeout_s: float = 60.0, interval_s: float = 0.1
) -> T:
    """The first truthy value of ``probe()``; polls a condition, it does not guess a delay."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = probe()
        except Exception as exc:  # not ready yet (connection refused, ...)
            last_error = exc
        else:
            if value:
                return value
        time.sleep(interval_s)
    raise AssertionError(f"condition not met in {timeout_s}s (last error: {last_error!r})")


class Receiver:
    """A webhook endpoint on 127.0.0.1 that records every JSON body it is POSTed."""

    def __init__(self, fail_first: int = 0) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.attempts = 0
        self._fail_first = fail_first
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length))
                with receiver._lock:
                    receiver.attempts += 1
                    failing = receiver.attempts <= receiver._fail_first
                    if not failing:
                        receiver.bodies.append(body)
                self.send_response(503 if failing else 204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hook"

    def events(self, name: str) -> list[dict[str, Any]]:
        with self._lock:
            return [b for b in self.bodies if b.get("event") == name]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
