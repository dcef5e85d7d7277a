"""The request core of the Metronome gateway: one pooled client, our retries, our errors.

Why not the SDK's own retries: they include 409 (an alias taken, which must lead to a re-read,
never a resend) and they resend a 5xx'd POST under the same Idempotency-Key, which Metronome
answers with the cached 5xx. So the SDK client has ``max_retries=0`` and :meth:`GatewayCore._call`
retries with ``stamina`` (bounded, exponential, jittered) only what is safe:

- GETs: connection failures, 408, 5xx;
- POSTs: connection failures and 408 with the same Idempotency-Key (a write that did happen
  is replayed by Metronome), but never a 5xx: that goes back to the engine, which bumps the
  key generation and re-reads first.

Every request first passes Metronome's circuit breaker (the ``gate``: while it is open only
the probe's requests go out; the others raise ``BreakerOpenError`` at once and their sync
parks), then takes its turn from the rate governor (``governor.py``: one budget in Redis for
the whole deployment). A 429 is not an error for the caller: the governor lowers
the shared rate and holds everyone back, and the same request (same Idempotency-Key: a 429
is refused before any work, so nothing was done) is sent again on its next turn, up to
MAX_REFUSALS times. So a 429 costs an account one more request, never a re-read or a
retried sync.

Every HTTP attempt is counted (an httpx request hook), so a sync can report "calls made".
One pooled ``httpx.Client`` per gateway, shared by the threads of a batch (httpx's client is
thread-safe).
"""

from __future__ import annotations

import functools
import os
import ssl
import threading
from collections.abc import Callable
from typing import TypeVar

import httpx
import metronome
import stamina
from pydantic import SecretStr

from worker.logs import log_retries_here
from worker.metronome.errors import (
    ConflictError,
    ConnectionFailedError,
    MetronomeError,
    PermanentError,
    RateLimitedError,
    ServerError,
    UnexpectedAnswerError,
)
from worker.metronome.governor import Governor, Ungoverned
from worker.telemetry.metrics import record_metronome_no_answer, record_metronome_response

_T = TypeVar("_T")
#: 429s one call absorbs (each waited out under the governor) before the sync is told: far
#: more than a governed deployment meets, few enough that a call never waits for minutes.
MAX_REFUSALS = 10

log_retries_here()  # stamina's retries as our log lines (worker/logs.py)


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One TLS context per process, as httpx builds it by default (certifi's CA bundle, or
    SSL_CERT_FILE / SSL_CERT_DIR). Loading the bundle takes ~0.1 s of CPU, and every gateway
    built its own: each ``crmsync`` command, each context a test or a batch makes."""
    return httpx.create_ssl_context()


class _CountingTransport(httpx.HTTPTransport):
    """Counts the requests that got no answer at all in the per-endpoint metric (a response
    hook never sees them), then lets the error through unchanged."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return super().handle_request(request)
        except httpx.TransportError:
            record_metronome_no_answer(request)
            raise


class GatewayCore:
    """The SDK client and the one way to call it (:meth:`_call`); the gateway's customer and
    contract calls are built on it."""

    def __init__(
        self,
        token: str | SecretStr,
        base_url: str,
        *,
        timeout_s: float = 20.0,
        max_attempts: int = 5,
        retry_immediately: bool = False,
        governor: Governor | None = None,
        max_connections: int = 20,
        gate: Callable[[], None] | None = None,
    ) -> None:
        secret = token.get_secret_value() if isinstance(token, SecretStr) else token
        #: Calls are counted per thread: a batch syncs several accounts at once through this
        #: gateway, and each sync reports its own calls.
        self._local = threading.local()
        self._max_attempts = max(1, max_attempts)
        self._retry_immediately = retry_immediately
        self._governor: Governor = governor or Ungoverned(immediate=retry_immediately)
        #: The circuit breaker's gate: raises BreakerOpenError while it is open (None: no
        #: breaker, e.g. ``crmsync check``, which must tell what Metronome answers now).
        self._gate = gate
        self._http = httpx.Client(
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0)),
            transport=_CountingTransport(
                verify=_tls_context(),
                limits=httpx.Limits(
                    max_connections=max_connections, max_keepalive_connections=max_connections
                ),
            ),
            event_hooks={"request": [self._count], "response": [record_metronome_response]},
        )
        self._client = metronome.Metronome(
            bearer_token=secret, base_url=base_url, max_retries=0, http_client=self._http
        )

    @property
    def calls(self) -> int:
        """HTTP requests this thread sent so far, retries included (monotonic)."""
        return int(getattr(self._local, "calls", 0))

    def close(self) -> None:
        self._http.close()

    def _count(self, _request: httpx.Request) -> None:
        # httpx runs request hooks in the thread that sends: the count is that thread's.
        self._local.calls = getattr(self._local, "calls", 0) + 1

    def _call(self, operation: str, send: Callable[[], _T], *, post: bool = False) -> _T:
        immediate = self._retry_immediately
        for attempt in stamina.retry_context(
            on=self._retry_hook(post),
            attempts=self._max_attempts,
            timeout=None,
            wait_initial=0.0 if immediate else 0.2,
            wait_max=0.0 if immediate else 10.0,
            wait_jitter=0.0 if immediate else 0.5,
        ):
            with attempt:
                return self._governed(operation, send)
        raise AssertionError("unreachable: stamina re-raises the last error")

    def _governed(self, operation: str, send: Callable[[], _T]) -> _T:
        """``send`` on the governor's turn; a 429 is reported to the governor (which lowers
        the shared rate and holds everyone back) and the same request goes again on the
        next turn, up to MAX_REFUSALS times."""
        refusals = 0
        while True:
            if self._gate is not None:
                self._gate()  # an open breaker: no request, not even a turn from the governor
            grant = self._governor.acquire()
            try:
                return _translated(operation, send)
            except RateLimitedError as exc:
                self._governor.refused(grant, exc.retry_after_s, exc.limit_type)
                refusals += 1
                if refusals >= MAX_REFUSALS:
                    raise

    def _retry_hook(self, post: bool) -> Callable[[Exception], bool | float]:
        immediate = self._retry_immediately
        return lambda exc: retry_decision(exc, post=post, immediate=immediate)


def retry_decision(exc: Exception, *, post: bool, immediate: bool) -> bool | float:
    """stamina's ``on`` hook: retry or not.

    A 429 is not retried here: it reaches this hook only after MAX_REFUSALS governed resends
    (``_governed``), so it goes back to the sync. A POST's 5xx is not retried either:
    Metronome cached it under the Idempotency-Key, so only a new generation (the engine's job,
    after a re-read) can get a different answer.
    """
    if isinstance(exc, RateLimitedError):
        return False
    if isinstance(exc, ServerError):
        return not post
    return isinstance(exc, ConnectionFailedError)


def key_header(key: str) -> dict[str, str]:
    """The Idempotency-Key header of a POST (Metronome replays a repeated key's answer)."""
    return {"Idempotency-Key": key}


def _translated(operation: str, send: Callable[[], _T]) -> _T:
    try:
        return send()
    except metronome.APIConnectionError as exc:
        # Includes timeouts and dropped connections: the request may have been processed.
        raise ConnectionFailedError(
            f"Metronome {operation}: no answer ({type(exc).__name__})"
        ) from exc
    except metronome.APIStatusError as exc:
        raise _from_status(operation, exc) from exc
    except (AttributeError, TypeError) as exc:
        if not _raised_inside_sdk(exc):
            raise  # our own call is wrong: a bug, not an answer
        # The SDK choked while turning a 200 into its model (a paged list given an HTML page).
        raise _unexpected_answer(operation, exc) from exc


_SDK_DIR = os.path.dirname(metronome.__file__)


def _raised_inside_sdk(exc: BaseException) -> bool:
    """True when the innermost frame of ``exc`` is the SDK's own code: it failed on what it
    was given back. A TypeError from calling the SDK with wrong arguments is raised in the
    caller's frame, before any SDK code runs."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and tb.tb_frame.f_code.co_filename.startswith(_SDK_DIR)


def _from_status(operation: str, exc: metronome.APIStatusError) -> MetronomeError:
    status = exc.status_code
    body = exc.body if isinstance(exc.body, dict) else {}
    api_message = str(body.get("message") or exc.response.reason_phrase or "no message")
    message = f"Metronome {operation} answered {status}: {api_message}"
    if status == 408:
        return ConnectionFailedError(message, status=status)
    if status == 429:
        return RateLimitedError(
            message,
            retry_after_s=_retry_after(exc.response.headers),
            limit_type=exc.response.headers.get("x-metronome-rate-limit-type"),
        )
    if status >= 500:
        return ServerError(message, status=status)
    if status == 409:
        conflicting = body.get("conflicting_id")
        return ConflictError(
            message, conflicting_id=conflicting if isinstance(conflicting, str) else None
        )
    return PermanentError(message, status=status)


def _retry_after(headers: httpx.Headers) -> float | None:
    """``Retry-After-Ms`` (more precise, when sent) or ``Retry-After`` in seconds."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        raw = headers.get(name)
        if raw is None:
            continue
        try:
            return max(0.0, float(raw) * scale)
        except ValueError:
            continue  # an HTTP date: rare for 429, fall back to our own backoff
    return None


def read_answer(operation: str, read: Callable[[], _T]) -> _T:
    """Take an answer apart; a body of the wrong shape becomes an UnexpectedAnswerError.

    The SDK builds its models without validating them, so a 200 carrying something else (an
    HTML page served as JSON, a truncated object) surfaced as an AttributeError or TypeError
    deep in the engine and was dead-lettered under that name. Only the reading is guarded, not
    the call: a TypeError from calling the SDK wrongly is our bug and must stay one.
    """
    try:
        return read()
    except (AttributeError, TypeError, KeyError, ValueError) as exc:
        raise _unexpected_answer(operation, exc) from exc


def _unexpected_answer(operation: str, exc: Exception) -> UnexpectedAnswerError:
    return UnexpectedAnswerError(
        f"Metronome {operation} answered 200 with an unexpected body "
        f"({type(exc).__name__}: {str(exc)[:200]}); outcome unknown, the sync re-reads"
    )
