"""A TCP endpoint that forwards to one Redis server and can be moved to another (the failover
tests and the chaos run's failover phase).

A managed Redis fails over by moving its endpoint (a DNS name or a virtual IP) from the old
primary to the promoted replica: clients keep one ``REDIS_URL`` and find a different server
behind it. This endpoint plays that part on 127.0.0.1: every accepted connection is forwarded
to the current upstream; :meth:`move` points new connections at another server and, like the
real thing, cuts the ones still open to the old one.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType


class Endpoint:
    def __init__(self, upstream_port: int) -> None:
        self._upstream = upstream_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._accept, daemon=True, name="endpoint")

    def start(self) -> Endpoint:
        self._thread.start()
        return self

    @property
    def port(self) -> int:
        return int(self._listener.getsockname()[1])

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def move(self, upstream_port: int, *, cut: bool = True) -> None:
        """New connections go to ``upstream_port``; ``cut`` closes those open to the old one."""
        with self._lock:
            self._upstream = upstream_port
            pairs, self._pairs = (self._pairs, []) if cut else ([], self._pairs)
        for pair in pairs:
            _close(*pair)

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._listener.close()
        self.move(self._upstream)

    def __enter__(self) -> Endpoint:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                port = self._upstream
            try:
                server = socket.create_connection(("127.0.0.1", port), timeout=5)
            except OSError:
                client.close()  # nothing behind the endpoint: refused, as a moving DNS name
                continue
            server.settimeout(None)
            with self._lock:
                self._pairs.append((client, server))
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=_pump, args=(source, sink), daemon=True).start()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    _close(source, sink)


def _close(*sockets: socket.socket) -> None:
    for sock in sockets:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            sock.close()
