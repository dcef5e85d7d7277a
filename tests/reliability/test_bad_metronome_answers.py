"""Metronome answers that are truncated, not JSON, of the wrong shape, or absurdly slow.

The real MetronomeGateway (metronome-sdk over httpx) talks to a proxy that lets the request
reach the real emulator, so a create *commits*, and then spoils the answer. Each test shows
the error the caller gets and that, once the network behaves again, the account ends as
exactly one customer: nothing lost, nothing duplicated.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fakeredis
import pytest

from mappings import load_default_mapping
from tasks.sync import Done, Retry, run_sync
from tests.support.bad_answers import ACCOUNT, TOKEN, record
from tests.support.deals import customers_in
from tests.support.proxy import SPOILERS, FaultProxy
from worker.context import WorkerContext
from worker.metronome import MetronomeGateway
from worker.metronome.errors import ConnectionFailedError, ServerError, UnexpectedAnswerError
from worker.sandbox.metronome import MetronomeEmulator
from worker.settings import load_settings
from worker.state.keys import Keys
from worker.state.store import SyncStore


@pytest.fixture
def emulator() -> Iterator[MetronomeEmulator]:
    with MetronomeEmulator(token=TOKEN) as running:
        yield running


def make_context(url: str, *, timeout_s: float = 5.0, attempts: int = 5) -> WorkerContext:
    settings = load_settings(
        metronome_bearer_token=TOKEN,
        metronome_base_url=url,
        metronome_timeout_s=timeout_s,
        metronome_max_attempts=attempts,
        retry_immediately=True,
        max_task_retries=3,
    )
    store = SyncStore(fakeredis.FakeRedis(decode_responses=True), Keys("bad"))
    return WorkerContext(settings=settings, store=store, mapping=load_default_mapping())


def sync_until_done(ctx: WorkerContext, attempts: int = 6) -> tuple[Done, list[Retry]]:
    """Run the sync as Celery would: again after each Retry, with the retry number."""
    retries: list[Retry] = []
    for attempt in range(attempts):
        result = run_sync(ctx, ACCOUNT, record(), task_id="t-bad", retries=attempt)
        if isinstance(result, Done):
            return result, retries
        retries.append(result)
    raise AssertionError(f"still retrying after {attempts} attempts: {retries}")


@pytest.mark.parametrize("kind", ["truncated", "html_with_json_type", "empty_body"])
def test_an_unreadable_answer_to_a_committed_create_is_retried_and_makes_one_customer(
    emulator: MetronomeEmulator, kind: str
) -> None:
    proxy = FaultProxy(emulator.url, spoil=SPOILERS[kind]).start()
    ctx = make_context(proxy.url)
    try:
        done, retries = sync_until_done(ctx)
    finally:
        ctx.close()
        proxy.stop()
    assert proxy.spoiled == 1, proxy.seen
    assert "POST /v1/customers 200" in proxy.seen  # the create really committed upstream
    assert [r.reason for r in retries] and "unreadable JSON" in retries[0].reason
    assert done.outcome == "created"
    assert len(customers_in(emulator, ACCOUNT)) == 1


@pytest.mark.parametrize("kind", ["html_page", "wrong_shape"])
def test_a_wrong_shape_answer_to_a_committed_create_is_reread_and_makes_one_customer(
    emulator: MetronomeEmulator, kind: str
) -> None:
    """A 200 whose JSON (or text) is not the documented shape: the outcome is unknown, like a
    dropped connection, so the engine re-reads and adopts the customer the create did make.

    Before, the engine crashed on the answer (an AttributeError or TypeError) and the record
    was dead-lettered under that name, waiting for an operator's redrive."""
    proxy = FaultProxy(emulator.url, spoil=SPOILERS[kind]).start()
    ctx = make_context(proxy.url)
    try:
        done, retries = sync_until_done(ctx)
        letters = ctx.store.dead_letters()
    finally:
        ctx.close()
        proxy.stop()
    assert proxy.spoiled == 1, proxy.seen
    assert "POST /v1/customers 200" in proxy.seen  # the create really committed upstream
    assert letters == []
    assert done.outcome in ("created", "updated", "in_sync"), (done, retries)
    assert len(customers_in(emulator, ACCOUNT)) == 1


@pytest.mark.parametrize("kind", ["html_page", "wrong_shape"])
def test_a_read_that_keeps_answering_the_wrong_shape_says_so(
    emulator: MetronomeEmulator, kind: str
) -> None:
    proxy = FaultProxy(
        emulator.url, method="GET", path="/v1/customers*", spoil=SPOILERS[kind], times=100
    ).start()
    gateway = MetronomeGateway(TOKEN, proxy.url, timeout_s=5, retry_immediately=True)
    try:
        with pytest.raises(UnexpectedAnswerError, match="answered 200 with an unexpected body"):
            gateway.list_customers(ingest_alias="x")
    finally:
        gateway.close()
        proxy.stop()


def test_an_absurdly_slow_answer_times_out_as_unknown_and_is_adopted_not_duplicated(
    emulator: MetronomeEmulator,
) -> None:
    # Slower than the client's timeout on both attempts inside the gateway, then normal: the
    # create committed upstream each time, the task retries, and the key replays it.
    proxy = FaultProxy(emulator.url, delay_s=1.5, times=2).start()
    ctx = make_context(proxy.url, timeout_s=0.5, attempts=2)
    started = time.monotonic()
    try:
        done, retries = sync_until_done(ctx)
    finally:
        ctx.close()
        proxy.stop()
    assert proxy.spoiled == 2
    # Both timed-out creates committed upstream; the engine re-read (or the task retried and
    # the key replayed) and adopted the customer instead of creating a second one.
    assert time.monotonic() - started < 30  # bounded by the client timeout, not the server
    assert done.outcome in ("created", "updated", "in_sync"), (done, retries)
    assert len(customers_in(emulator, ACCOUNT)) == 1


@pytest.mark.parametrize(
    ("kind", "call"),
    [
        ("truncated", "list"),
        ("html_with_json_type", "retrieve"),
    ],
)
def test_the_gateway_surfaces_unreadable_reads_as_json_errors(
    emulator: MetronomeEmulator, kind: str, call: str
) -> None:
    path = "/v1/customers" if call == "list" else "/v1/customers/c-1"
    proxy = FaultProxy(emulator.url, method="GET", path=path, spoil=SPOILERS[kind]).start()
    gateway = MetronomeGateway(TOKEN, proxy.url, timeout_s=5, retry_immediately=True)
    try:
        with pytest.raises(json.JSONDecodeError):
            if call == "list":
                gateway.list_customers(ingest_alias="x")
            else:
                gateway.retrieve_customer("c-1")
    finally:
        gateway.close()
        proxy.stop()


def test_a_5xx_html_page_is_a_server_error_and_a_timeout_a_connection_failure() -> None:
    from worker.sandbox.httpserver import HttpServer, Request, Response

    async def handler(request: Request) -> Response:
        if request.path.endswith("slow"):
            import asyncio

            await asyncio.sleep(2)
        return Response(502, b"<html>Bad Gateway</html>", [("content-type", "text/html")])

    server = HttpServer(handler).start()
    gateway = MetronomeGateway(
        TOKEN, server.url, timeout_s=0.3, max_attempts=1, retry_immediately=True
    )
    try:
        with pytest.raises(ServerError, match="502"):
            gateway.retrieve_customer("c-1")
        with pytest.raises(ConnectionFailedError, match="no answer"):
            gateway.retrieve_customer("slow")
    finally:
        gateway.close()
        server.stop()


def test_calling_the_sdk_wrongly_stays_a_bug_not_an_unexpected_answer(
    emulator: MetronomeEmulator,
) -> None:
    gateway = MetronomeGateway(TOKEN, emulator.url, timeout_s=5, retry_immediately=True)
    client: Any = gateway._client
    try:
        with pytest.raises(TypeError, match="no_such_argument"):
            gateway._call("create", lambda: client.v1.customers.create(no_such_argument=1))
        with pytest.raises(AttributeError):
            gateway._call("create", lambda: client.v1.customers.no_such_endpoint)
    finally:
        gateway.close()


def test_a_request_that_gets_no_answer_is_counted_per_endpoint(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from prometheus_client import REGISTRY

    from worker.telemetry.metrics import MULTIPROC_ENV

    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path))  # counting on, as in a worker
    with socket.socket() as closed:  # a loopback port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    gateway = MetronomeGateway(
        TOKEN, f"http://127.0.0.1:{port}", timeout_s=1, max_attempts=1, retry_immediately=True
    )
    labels = {"method": "GET", "endpoint": "/v1/customers/{id}", "status": "no_answer"}
    before = REGISTRY.get_sample_value("crmsync_metronome_requests_total", labels) or 0.0
    try:
        with pytest.raises(ConnectionFailedError):
            gateway.retrieve_customer("6a5c4b3d-1e2f-4a5b-8c7d-9e0f1a2b3c4d")
    finally:
        gateway.close()
    assert REGISTRY.get_sample_value("crmsync_metronome_requests_total", labels) == before + 1
