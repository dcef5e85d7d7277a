"""A small HTTP/1.1 server core shared by the two emulators.

Why not ``http.server``: the benchmark drives the emulators with pooled keep-alive connections
from several processes, and the emulators must be able to "commit then drop the connection"
and add latency without blocking other clients. An asyncio server in one background thread
gives keep-alive, no thread per request, and -- because every handler runs on that one event
loop -- emulator state that needs no locks.

Handlers are ``async def handler(request) -> Response``. A response with ``drop_connection``
set aborts the TCP connection instead of answering (the write it stands for has happened).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from types import TracebackType
from urllib.parse import parse_qs, urlsplit

MAX_BODY_BYTES = 16 * 1024 * 1024
MAX_HEADER_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    target: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes

    def query_value(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None


@dataclass(slots=True)
class Response:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    drop_connection: bool = False


Handler = Callable[[Request], Awaitable[Response]]


class HttpServer:
    """Serve ``handler`` on ``host:port`` (port 0 picks a free one) from a background thread."""

    def __init__(self, handler: Handler, host: str = "127.0.0.1", port: int = 0) -> None:
        self._handler = handler
        self._host = host
        self._requested_port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self.port = 0

    @property
    def host(self) -> str:
        return self._host

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self.port}"

    def start(self) -> HttpServer:
        self._thread = threading.Thread(target=self._run, name="emulator-http", daemon=True)
        self._thread.start()
        self._ready.wait(timeout=30)
        if self._startup_error is not None:
            raise self._startup_error
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._loop = None

    def call_in_loop(self, func: Callable[[], object]) -> None:
        """Run ``func`` on the server's loop (the only thread that touches emulator state)."""
        loop = self._loop
        if loop is None:
            func()
            return
        done = threading.Event()

        def run() -> None:
            try:
                func()
            finally:
                done.set()

        loop.call_soon_threadsafe(run)
        # No wall-clock bound while the loop lives: seeding 100,000 rows on a loaded machine
        # took longer than any fixed timeout. A loop that has stopped never runs the call, and
        # the caller sees it did not run.
        while not done.wait(timeout=1.0):
            if self._thread is None or not self._thread.is_alive():
                return

    def __enter__(self) -> HttpServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def wait(self) -> None:
        """Block until the server stops (for foreground use by ``crmsync sandbox``)."""
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            self._server = loop.run_until_complete(
                asyncio.start_server(
                    self._serve_connection,
                    self._host,
                    self._requested_port,
                    limit=MAX_HEADER_BYTES,
                    backlog=1024,
                )
            )
            sockets = self._server.sockets
            self.port = int(sockets[0].getsockname()[1])
        except BaseException as exc:
            self._startup_error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            self._server.close()
            pending = list(asyncio.all_tasks(loop))
            for task in pending:
                task.cancel()
            if pending:
                # Collect the cancellations so none is reported as "never retrieved".
                with contextlib.suppress(BaseException):
                    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            while True:
                request = await _read_request(reader)
                if request is None:
                    break
                try:
                    response = await self._handler(request)
                except Exception as exc:  # an emulator bug must still answer, loudly
                    response = Response(500, f"emulator error: {exc!r}".encode())
                if response.drop_connection:
                    writer.transport.abort()
                    return
                keep_alive = request.headers.get("connection", "").lower() != "close"
                writer.write(_encode_response(response, keep_alive))
                await writer.drain()
                if not keep_alive:
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except asyncio.CancelledError:
            # stop() cancels idle keep-alive connections. Ending normally (not re-raising)
            # matters on Python 3.11: asyncio's stream callback calls task.exception() on the
            # finished task, which raises for a cancelled one and logs a traceback per client.
            pass
        except _BadRequest as exc:
            with contextlib.suppress(Exception):
                writer.write(_encode_response(Response(400, str(exc).encode()), False))
                await writer.drain()
        finally:
            with contextlib.suppress(Exception):
                writer.close()


class _BadRequest(Exception):
    pass


async def _read_request(reader: asyncio.StreamReader) -> Request | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    lines = head.decode("latin-1").split("\r\n")
    try:
        method, target, _version = lines[0].split(" ", 2)
    except ValueError as exc:
        raise _BadRequest("malformed request line") from exc
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    body = b""
    if headers.get("transfer-encoding", "").lower() == "chunked":
        chunks: list[bytes] = []
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            chunks.append(await reader.readexactly(size))
            await reader.readexactly(2)
        body = b"".join(chunks)
    elif "content-length" in headers:
        try:
            length = int(headers["content-length"])
        except ValueError as exc:
            raise _BadRequest("bad Content-Length") from exc
        if length > MAX_BODY_BYTES:
            raise _BadRequest("body too large")
        body = await reader.readexactly(length)
    split = urlsplit(target)
    return Request(
        method=method.upper(),
        target=target,
        path=split.path,
        query=parse_qs(split.query, keep_blank_values=True),
        headers=headers,
        body=body,
    )


def _encode_response(response: Response, keep_alive: bool) -> bytes:
    try:
        reason = HTTPStatus(response.status).phrase
    except ValueError:
        reason = "Unknown"
    head = [f"HTTP/1.1 {response.status} {reason}"]
    names = set()
    for name, value in response.headers:
        head.append(f"{name}: {value}")
        names.add(name.lower())
    if "content-type" not in names and response.body:
        head.append("Content-Type: application/json")
    head.append(f"Content-Length: {len(response.body)}")
    head.append("Connection: keep-alive" if keep_alive else "Connection: close")
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + response.body
