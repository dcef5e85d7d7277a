"""The one fault proxy of the tests: it stands between a client and an emulator and does to
the traffic what networks, proxies and outages do, beyond the emulators' own fault injection.

Two kinds of fault, combinable:

- **Spoiled answers** (``spoil``/``delay_s`` for the first ``times`` requests matching
  ``method path``): the request still reaches the real emulator (so a write *commits*) and
  only the answer is spoiled: cut short, replaced by an HTML error page, given the wrong JSON
  shape, or held back past the client's timeout. That is the hard case: the client cannot
  tell whether the write happened, and must neither lose nor duplicate it.
- **An outage** (``set(DOWN)``): every request answered 503 without reaching the emulator, or
  ``COMMIT_THEN_DOWN``: the next create commits, its answer is lost and everything is down
  from then on -- an outage that starts while a create is on the wire, the case where the
  customer exists but the worker never heard of it. ``refused`` counts the requests that
  reached the proxy while down: the load an outage sees.

``/_sandbox/`` inspection always passes through, untouched and uncounted.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from worker.sandbox.httpserver import HttpServer, Request, Response

JSON = [("content-type", "application/json")]


def truncated(answer: Response) -> Response:
    return Response(answer.status, answer.body[: max(1, len(answer.body) // 2)], JSON)


def html_page(answer: Response) -> Response:
    return Response(
        200, b"<html><body>upstream hiccup</body></html>", [("content-type", "text/html")]
    )


def html_with_json_type(answer: Response) -> Response:
    return Response(200, b"<html>not json</html>", JSON)


def wrong_shape(answer: Response) -> Response:
    return Response(200, json.dumps({"data": 5, "unexpected": True}).encode(), JSON)


def empty_body(answer: Response) -> Response:
    return Response(200, b"", JSON)


SPOILERS: dict[str, Callable[[Response], Response]] = {
    "truncated": truncated,
    "html_page": html_page,
    "html_with_json_type": html_with_json_type,
    "wrong_shape": wrong_shape,
    "empty_body": empty_body,
}


UP, DOWN, COMMIT_THEN_DOWN = "up", "down", "commit_then_down"


@dataclass
class FaultProxy:
    """Forwards to ``upstream``. While the proxy is up, the first ``times`` requests matching
    ``method path`` (a trailing ``*`` matches a prefix) get ``spoil`` applied to their answer
    (or are delayed ``delay_s`` before answering); without either, answers pass unspoiled.
    ``set(mode)`` takes it down and up (see the module's docstring)."""

    upstream: str
    method: str = "POST"
    path: str = "/v1/customers"
    spoil: Callable[[Response], Response] | None = None
    delay_s: float = 0.0
    times: int = 1
    #: Answers spoiled (or delayed) so far.
    spoiled: int = 0
    #: ``METHOD /path status`` of every request forwarded, in order.
    seen: list[str] = field(default_factory=list)
    mode: str = UP
    #: Requests answered 503 (or dropped) because the proxy was down.
    refused: int = 0

    def __post_init__(self) -> None:
        self._server = HttpServer(self._handle)
        self._client = httpx.Client(base_url=self.upstream, timeout=30)
        self._lock = threading.Lock()

    def start(self) -> FaultProxy:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()
        self._client.close()

    @property
    def url(self) -> str:
        return self._server.url

    def set(self, mode: str) -> None:
        with self._lock:
            self.mode = mode

    def refused_so_far(self) -> int:
        with self._lock:
            return self.refused

    def _forward(self, request: Request) -> Response:
        headers = {k: v for k, v in request.headers.items() if k not in ("host", "content-length")}
        answer = self._client.request(
            request.method, request.target, content=request.body, headers=headers
        )
        kept = [("content-type", answer.headers.get("content-type", "application/json"))]
        return Response(answer.status_code, answer.content, kept)

    def _outage(self, request: Request) -> str:
        """UP, DOWN, or COMMIT_THEN_DOWN for this one request (which then takes the proxy
        down: the outage starts while this create is on the wire)."""
        with self._lock:
            mode = self.mode
            if mode == COMMIT_THEN_DOWN and not (
                request.method == "POST" and request.path == "/v1/customers"
            ):
                mode = UP
            if mode == COMMIT_THEN_DOWN:
                self.mode = DOWN
            if mode != UP:
                self.refused += 1
            return mode

    def _spoils(self, request: Request) -> bool:
        if self.spoil is None and not self.delay_s:
            return False
        path_matches = (
            request.path.startswith(self.path[:-1])
            if self.path.endswith("*")
            else request.path == self.path
        )
        return request.method == self.method and path_matches and self.spoiled < self.times

    async def _handle(self, request: Request) -> Response:
        if request.path.startswith("/_sandbox/"):
            return await asyncio.to_thread(self._forward, request)
        outage = self._outage(request)
        if outage == DOWN:
            body = json.dumps({"message": "Service unavailable (outage)"}).encode()
            return Response(503, body, JSON)
        answer = await asyncio.to_thread(self._forward, request)
        if outage == COMMIT_THEN_DOWN:
            return Response(answer.status, drop_connection=True)  # committed, answer lost
        self.seen.append(f"{request.method} {request.path} {answer.status}")
        if self._spoils(request):
            self.spoiled += 1
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            if self.spoil is not None:
                return self.spoil(answer)
        return answer
