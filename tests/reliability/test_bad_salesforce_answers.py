"""Salesforce answers that are truncated, not JSON, of the wrong shape, or absurdly slow.

The real poll (simple-salesforce over requests) reads the emulator through a proxy that
spoils the first query answer. The poll must end with one clear error, leave the cursor where
it was, enqueue nothing twice, and the next poll must enqueue every won account: no close lost.
"""

from __future__ import annotations

from collections.abc import Iterator

import fakeredis
import pytest

from mappings import load_default_mapping
from tasks.poll import run_poll
from tests.support.proxy import SPOILERS, FaultProxy
from worker.context import WorkerContext
from worker.sandbox.salesforce import SalesforceEmulator, SandboxCredentials
from worker.settings import load_settings
from worker.state.keys import Keys
from worker.state.store import SyncStore

CREDENTIALS = SandboxCredentials()


@pytest.fixture(scope="module")
def salesforce() -> Iterator[SalesforceEmulator]:
    with SalesforceEmulator(CREDENTIALS) as emulator:
        emulator.seed(12, seed=4)
        yield emulator


def poll_through(proxy: FaultProxy, store: SyncStore) -> tuple[dict[str, object], list[str]]:
    settings = load_settings(
        salesforce_username=CREDENTIALS.username,
        salesforce_password=CREDENTIALS.password,
        salesforce_security_token=CREDENTIALS.security_token,
        salesforce_emulator_url=proxy.url,
        salesforce_timeout_s=0.5,
    )
    ctx = WorkerContext(settings=settings, store=store, mapping=load_default_mapping())
    sent: list[str] = []
    try:
        summary = run_poll(ctx, enqueue=lambda items: sent.extend(item[0] for item in items))
    finally:
        ctx.close()
    return summary, sent


@pytest.mark.parametrize("kind", [*SPOILERS, "slow"])
def test_a_broken_query_answer_fails_the_poll_clearly_and_the_next_poll_loses_nothing(
    salesforce: SalesforceEmulator, kind: str
) -> None:
    proxy = FaultProxy(
        salesforce.url,
        method="GET",
        path="/services/data/*",
        spoil=SPOILERS.get(kind),
        delay_s=1.5 if kind == "slow" else 0.0,
    ).start()
    store = SyncStore(fakeredis.FakeRedis(decode_responses=True), Keys("sf"))
    try:
        failed, sent_while_broken = poll_through(proxy, store)
        assert proxy.spoiled == 1
        assert failed["status"] == "failed"
        reason = str(failed["reason"])
        assert "Salesforce answered the poll's query" in reason and "cursors unchanged" in reason
        assert store.cursors() == {}
        assert store.last_poll()["status"] == "failed"
        assert store.acquire_poll_lock() is not None, "the failed poll kept its lock"
        store.client.delete(store.keys.poll_lock)
        ok, sent = poll_through(proxy, store)
    finally:
        proxy.stop()
    assert ok["status"] == "ok"
    won = {
        str(salesforce.get("Opportunity", o)["AccountId"])
        for o in salesforce.ids("Opportunity")
        if salesforce.get("Opportunity", o).get("StageName") == "Closed Won"
    }
    assert sent_while_broken == []
    assert set(sent) == won and len(sent) == len(won)
