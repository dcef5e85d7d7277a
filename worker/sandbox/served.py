"""What both emulators share: an HttpServer they run on, and hopping onto its loop thread.

Emulator state lives on the server's event-loop thread (worker/sandbox/httpserver.py), so
every public method that reads or writes it runs there through :meth:`_on_loop`, and an
exception raised there is re-raised in the caller's thread.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Self, TypeVar

from worker.sandbox.httpserver import HttpServer, Request, Response

T = TypeVar("T")


class ServedEmulator:
    def __init__(
        self, handler: Callable[[Request], Awaitable[Response]], host: str, port: int
    ) -> None:
        self._server = HttpServer(handler, host=host, port=port)

    def start(self) -> Self:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def wait(self) -> None:
        """Block until the server stops (``crmsync sandbox`` runs in the foreground)."""
        self._server.wait()

    @property
    def url(self) -> str:
        return self._server.url

    @property
    def port(self) -> int:
        return self._server.port

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _on_loop(self, func: Callable[[], T]) -> T:
        outcome: list[tuple[bool, Any]] = []

        def run() -> None:
            try:
                outcome.append((True, func()))
            except BaseException as exc:  # re-raised on the caller's thread
                outcome.append((False, exc))

        self._server.call_in_loop(run)
        if not outcome:
            raise TimeoutError("the emulator's loop did not run the call")
        ok, value = outcome[0]
        if not ok:
            raise value
        return value  # type: ignore[no-any-return]
