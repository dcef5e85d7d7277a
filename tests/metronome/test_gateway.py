"""The gateway: which failures are retried, how often, and what the caller gets."""

from __future__ import annotations

import json

import httpx
import pytest
from pydantic import SecretStr

from tests.support.metronome_emulator import TOKEN
from worker.metronome import MetronomeGateway
from worker.metronome.errors import (
    ConflictError,
    ConnectionFailedError,
    PermanentError,
    RateLimitedError,
    ServerError,
    TokenRefusedError,
    TransientError,
)
from worker.metronome.transport import MAX_REFUSALS, _retry_after, retry_decision
from worker.sandbox.httpserver import HttpServer, Request, Response
from worker.sandbox.metronome import MetronomeEmulator, MetronomeFaults
from worker.settings import Settings


def test_conflict_is_not_retried_and_names_the_other_customer(
    emulator: MetronomeEmulator, gateway: MetronomeGateway
) -> None:
    first = gateway.create_customer({"name": "A", "ingest_aliases": ["x"]}, key="k1")
    calls = gateway.calls
    with pytest.raises(ConflictError) as caught:
        gateway.create_customer({"name": "B", "ingest_aliases": ["x"]}, key="k2")
    assert caught.value.conflicting_id == first
    assert gateway.calls - calls == 1
    assert emulator.request_counts()["POST /v1/customers 409"] == 1


def test_server_error_on_post_goes_back_to_the_caller_at_once(
    emulator: MetronomeEmulator, gateway: MetronomeGateway
) -> None:
    emulator.set_faults(MetronomeFaults(server_error_rate=1.0))
    with pytest.raises(ServerError) as caught:
        gateway.create_customer({"name": "A"}, key="k")
    assert caught.value.status == 500
    assert isinstance(caught.value, TransientError)
    assert emulator.request_counts() == {"POST /v1/customers 500": 1}


def test_server_error_on_get_is_retried_up_to_max_attempts(emulator: MetronomeEmulator) -> None:
    gateway = MetronomeGateway(TOKEN, emulator.url, max_attempts=3, retry_immediately=True)
    emulator.set_faults(MetronomeFaults(server_error_rate=1.0))
    with pytest.raises(ServerError):
        gateway.list_customers()
    assert gateway.calls == 3
    assert emulator.request_counts() == {"GET /v1/customers 500": 3}
    gateway.close()


def test_rate_limited_post_is_retried_with_the_same_key(
    emulator: MetronomeEmulator, gateway: MetronomeGateway
) -> None:
    emulator.set_faults(MetronomeFaults(too_many_requests_rate=0.5, seed=1))
    ids = {gateway.create_customer({"name": f"c{n}"}, key=f"k{n}") for n in range(10)}
    assert len(ids) == 10 == len(emulator.customers())
    counts = emulator.request_counts()
    assert counts["POST /v1/customers 200"] == 10
    assert gateway.calls == 10 + counts["POST /v1/customers 429"]


def test_rate_limit_exhausted_raises_with_retry_after(emulator: MetronomeEmulator) -> None:
    # 429s are resent inside the call (MAX_REFUSALS), not counted against max_attempts,
    # which bounds the other transient failures.
    gateway = MetronomeGateway(TOKEN, emulator.url, max_attempts=2, retry_immediately=True)
    emulator.set_faults(MetronomeFaults(too_many_requests_rate=1.0))
    with pytest.raises(RateLimitedError) as caught:
        gateway.list_customers()
    assert caught.value.retry_after_s == pytest.approx(0.05)
    assert caught.value.limit_type == "client"
    assert gateway.calls == MAX_REFUSALS
    assert emulator.request_counts() == {"GET /v1/customers 429": MAX_REFUSALS}
    gateway.close()


def test_timeout_is_a_connection_failure_retried_then_raised(emulator: MetronomeEmulator) -> None:
    gateway = MetronomeGateway(
        TOKEN, emulator.url, timeout_s=0.1, max_attempts=2, retry_immediately=True
    )
    emulator.set_faults(MetronomeFaults(latency_s=0.5))
    with pytest.raises(ConnectionFailedError):
        gateway.list_customers()
    assert gateway.calls == 2
    gateway.close()


def test_bad_token_is_refused_reported_once_and_never_echoes_the_token(
    emulator: MetronomeEmulator,
) -> None:
    secret = SecretStr("very-secret-token-value")
    reported: list[TokenRefusedError] = []
    gateway = MetronomeGateway(
        secret, emulator.url, retry_immediately=True, on_refused=reported.append
    )
    with pytest.raises(TokenRefusedError) as caught:
        gateway.list_customers()
    assert not isinstance(caught.value, PermanentError | TransientError)  # parks, never dead
    assert caught.value.status == 401 and caught.value.sent
    assert "Unauthorized" in str(caught.value)
    assert "very-secret" not in str(caught.value)
    assert gateway.calls == 1
    assert reported == [caught.value]
    gateway.close()


@pytest.mark.parametrize(
    ("status", "message", "refused"),
    [
        (403, "Forbidden: this token may not write customers", True),
        (403, "Contract editing is not enabled for this client", False),  # a feature
        (404, "Customer not found", False),  # a record
        (400, "CustomerNotFound", False),
    ],
)
def test_only_answers_about_the_token_are_token_refusals(
    status: int, message: str, refused: bool
) -> None:
    async def answer(_request: Request) -> Response:
        body = json.dumps({"message": message}).encode()
        return Response(status, body, [("Content-Type", "application/json")])

    server = HttpServer(answer).start()
    reported: list[TokenRefusedError] = []
    gateway = MetronomeGateway(
        TOKEN, server.url, retry_immediately=True, on_refused=reported.append
    )
    try:
        with pytest.raises((TokenRefusedError, PermanentError)) as caught:
            gateway.list_customers()
        assert isinstance(caught.value, TokenRefusedError) is refused
        assert isinstance(caught.value, PermanentError) is not refused
        assert caught.value.status == status and message in str(caught.value)
        assert len(reported) == (1 if refused else 0)
        assert gateway.calls == 1
    finally:
        gateway.close()
        server.stop()


def test_missing_customer_retrieves_as_none(gateway: MetronomeGateway) -> None:
    assert gateway.retrieve_customer("00000000-0000-0000-0000-000000000000") is None


def test_from_settings_uses_base_url_token_and_retry_switch(emulator: MetronomeEmulator) -> None:
    settings = Settings(
        metronome_bearer_token=SecretStr(TOKEN),
        metronome_base_url=emulator.url,
        retry_immediately=True,
    )
    gateway = MetronomeGateway.from_settings(settings)
    assert gateway.list_customers() == []
    assert gateway.calls == 1
    gateway.close()


def test_retry_decision_leaves_429s_to_the_governed_resends() -> None:
    limited = RateLimitedError("429", retry_after_s=2.5)
    assert retry_decision(limited, post=True, immediate=False) is False
    assert retry_decision(limited, post=False, immediate=True) is False
    assert retry_decision(ServerError("500"), post=True, immediate=False) is False
    assert retry_decision(ServerError("500"), post=False, immediate=False) is True
    assert retry_decision(ConnectionFailedError("drop"), post=True, immediate=False) is True
    assert retry_decision(ConflictError("409"), post=False, immediate=False) is False
    assert retry_decision(PermanentError("400"), post=False, immediate=False) is False


def test_retry_after_prefers_milliseconds() -> None:
    assert _retry_after(httpx.Headers({"Retry-After-Ms": "250", "Retry-After": "1"})) == 0.25
    assert _retry_after(httpx.Headers({"Retry-After": "3"})) == 3.0
    assert _retry_after(httpx.Headers({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})) is None
    assert _retry_after(httpx.Headers()) is None
