"""A proxy in front of an emulator that spoils chosen answers the way networks and proxies do.

The request still reaches the real emulator (so a write *commits*) and only the answer is
spoiled: cut short, replaced by an HTML error page, given the wrong JSON shape, or held back
past the client's timeout. That is the hard case: the client cannot tell whether the write
happened, and must neither lose nor duplicate it.
"""

from __future__ import annotations

import asyncio
import json
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


@dataclass
class SpoilingProxy:
    """Forwards to ``upstream``; the first ``times`` requests matching ``method path`` (a
    trailing ``*`` matches a prefix) get ``spoil`` applied to their answer (or are delayed
    ``delay_s`` before answering)."""

    upstream: str
    method: str = "POST"
    path: str = "/v1/customers"
    spoil: Callable[[Response], Response] | None = None
    delay_s: float = 0.0
    times: int = 1
    spoiled: int = 0
    seen: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._server = HttpServer(self._handle)
        self._client = httpx.Client(base_url=self.upstream, timeout=30)

    def start(self) -> SpoilingProxy:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()
        self._client.close()

    @property
    def url(self) -> str:
        return self._server.url

    def _forward(self, request: Request) -> Response:
        headers = {k: v for k, v in request.headers.items() if k not in ("host", "content-length")}
        answer = self._client.request(
            request.method, request.target, content=request.body, headers=headers
        )
        kept = [("content-type", answer.headers.get("content-type", "application/json"))]
        return Response(answer.status_code, answer.content, kept)

    async def _handle(self, request: Request) -> Response:
        answer = await asyncio.to_thread(self._forward, request)
        self.seen.append(f"{request.method} {request.path} {answer.status}")
        if (
            request.method == self.method
            and (
                request.path.startswith(self.path[:-1])
                if self.path.endswith("*")
                else request.path == self.path
            )
            and self.spoiled < self.times
        ):
            self.spoiled += 1
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            if self.spoil is not None:
                return self.spoil(answer)
        return answer
