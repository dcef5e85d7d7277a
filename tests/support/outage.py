"""A switch in front of the Metronome emulator: up, down (every request 503), or "the next
create commits, then everything is down" -- an outage that starts while a create is on the
wire, the case where the customer exists but the worker never heard of it.

The worker talks to the switch (METRONOME_BASE_URL); ``/_sandbox/`` inspection passes through
uncounted. It counts the requests that reached it while down: the load an outage sees.
"""

from __future__ import annotations

import asyncio
import json
import threading

import httpx

from worker.sandbox.httpserver import HttpServer, Request, Response

UP, DOWN, COMMIT_THEN_DOWN = "up", "down", "commit_then_down"


class OutageSwitch:
    def __init__(self, upstream: str) -> None:
        self._server = HttpServer(self._handle)
        self._client = httpx.Client(base_url=upstream, timeout=30)
        self._lock = threading.Lock()
        self.mode = UP
        #: Requests answered 503 (or dropped) because the switch was down.
        self.refused = 0

    def start(self) -> OutageSwitch:
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

    async def _handle(self, request: Request) -> Response:
        if request.path.startswith("/_sandbox/"):
            return await asyncio.to_thread(self._forward, request)
        with self._lock:
            mode = self.mode
            committing = (
                mode == COMMIT_THEN_DOWN
                and request.method == "POST"
                and request.path == "/v1/customers"
            )
            if committing:
                self.mode = DOWN  # the outage starts while this create is on the wire
            if mode == DOWN or committing:
                self.refused += 1
        if committing:
            answer = await asyncio.to_thread(self._forward, request)
            return Response(answer.status, drop_connection=True)  # committed, answer lost
        if mode == DOWN:
            body = json.dumps({"message": "Service unavailable (outage)"}).encode()
            return Response(503, body, [("content-type", "application/json")])
        return await asyncio.to_thread(self._forward, request)
