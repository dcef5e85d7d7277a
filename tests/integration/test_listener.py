"""The change-event listener end to end: real `crmsync listen` processes, a real worker, real
Redis, the Salesforce emulator's REST and Pub/Sub APIs, simple-salesforce and metronome-sdk.

The poll interval is an hour and no beat runs: a customer that appears came by event, unless a
test asks for a poll itself (or the listener does, which the test then checks). Every wait is on
a condition with a deadline; nothing is timed.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from simple_salesforce.api import Salesforce

from tasks.poll import run_poll
from tests.support.deals import close_deal, creates, customers_of
from tests.support.stack import salesforce_client, stack_with_worker
from tests.support.waiting import Receiver, wait_until
from worker.ops.progress import terminal_total, wait_for_syncs
from worker.sandbox.stack import SandboxStack, ServiceProcess
from worker.state.listener import ListenerState

pytestmark = pytest.mark.integration

TOPICS = ("/data/OpportunityChangeEvent", "/data/AccountChangeEvent")
LISTENER_ENV = {
    "CRMSYNC_POLL_INTERVAL_S": "3600",
    "CRMSYNC_LISTENER_KEEPALIVE_TIMEOUT_S": "4",
    "CRMSYNC_LISTENER_LEASE_S": "3",
    "CRMSYNC_LISTENER_COALESCE_S": "0.1",
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxStack]:
    base = tmp_path_factory.mktemp("listener")
    with stack_with_worker(base, extra_env=dict(LISTENER_ENV), pubsub_keepalive_s=1.0) as running:
        yield running


@pytest.fixture(scope="module")
def sf(stack: SandboxStack) -> Salesforce:
    return salesforce_client(stack)


@pytest.fixture(scope="module")
def state(stack: SandboxStack) -> Iterator[ListenerState]:
    listener_state = ListenerState.from_url(stack.redis_url)
    yield listener_state
    listener_state.close()


@pytest.fixture
def logs(stack: SandboxStack, request: pytest.FixtureRequest) -> Path:
    return Path(stack.data_dir).parent / f"{request.node.name}.log"


def start_listener(stack: SandboxStack, log: Path, **env: str) -> ServiceProcess:
    return stack.start_listener(log, env=env)


def subscribed(state: ListenerState, pid: int) -> bool:
    holder = state.holder()
    if holder.get("active") != "yes" or not holder.get("holder", "").endswith(f":{pid}"):
        return False
    stats = [state.topic_stats(topic) for topic in TOPICS]
    return all(s.get("state") == "subscribed" for s in stats)


def live(state: ListenerState, pid: int, since: float) -> bool:
    """Subscribed since ``since``, each stream has answered since its subscribe (an event or a
    keepalive) and a replay id is stored for it: the server took the replay id it was given,
    so where each topic resumed from is settled, and a stream torn down from here on (a stall
    under load) resumes from the stored id, asking for no poll."""
    if not subscribed(state, pid):
        return False
    for topic in TOPICS:
        if state.replay_id(topic) is None:
            return False
        stats = state.topic_stats(topic)
        subscribed_at = float(stats.get("subscribed_at") or 0)
        heard = max(float(stats.get(f) or 0) for f in ("last_event_at", "last_keepalive_at"))
        if subscribed_at < since or heard < subscribed_at:
            return False
    return True


def active_listener(stack: SandboxStack, state: ListenerState, log: Path, **env: str) -> Any:
    """A listener that holds the lease and whose streams on both topics are live, after the
    poll it asks for when a topic resumed from LATEST (no stored replay id, or one refused)
    has finished: what follows is the events'."""
    now = datetime.now(UTC)
    started = now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    process = start_listener(stack, log, **env)
    wait_until(lambda: live(state, process.pid, now.timestamp()), timeout_s=60)
    if any(state.topic_stats(topic).get("subscribed_from") == "LATEST" for topic in TOPICS):
        ctx = stack.context()
        try:
            wait_until(lambda: ctx.store.last_poll().get("finished_at", "") > started, 90)
        finally:
            ctx.close()
    return process


def stop(stack: SandboxStack, process: ServiceProcess) -> None:
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)
    stack.kill_process(process)  # forget it (already exited)


def ledger_reasons(stack: SandboxStack, account_id: str) -> list[str]:
    """Why each sync of the account that changed something ran (``event``, ``poll``...)."""
    ctx = stack.context()
    try:
        entries = ctx.store.ledger(1000)
    finally:
        ctx.close()
    return [e.get("reason", "") for e in entries if e.get("account_id") == account_id]


def synced(stack: SandboxStack, account_id: str) -> list[str]:
    """Wait until the account's first sync is recorded (customer, hash and ledger line are
    written together); the reasons of its ledger lines."""
    return wait_until(lambda: ledger_reasons(stack, account_id), timeout_s=90)


def test_a_deal_closed_through_the_rest_api_becomes_a_customer_by_event(
    stack: SandboxStack, sf: Salesforce, state: ListenerState, logs: Path
) -> None:
    listener = active_listener(stack, state, logs)
    try:
        account_id = close_deal(sf, "Evented Close")
        assert synced(stack, account_id) == ["event"]
        [customer] = customers_of(stack, account_id)
        assert customer["name"] == "Evented Close"
        for topic in TOPICS:
            assert state.replay_id(topic), f"no replay id stored for {topic}"
        stats = state.topic_stats(TOPICS[0])
        assert int(stats["events"]) >= 2 and float(stats["last_lag_s"]) >= 0
    finally:
        stop(stack, listener)


def test_a_listener_killed_between_enqueue_and_replay_store_loses_and_duplicates_nothing(
    stack: SandboxStack, sf: Salesforce, state: ListenerState, logs: Path
) -> None:
    doomed = active_listener(stack, state, logs, CRMSYNC_LISTENER_CRASH_AFTER_ENQUEUE="1")
    replay_before = state.replay_id(TOPICS[0])
    creates_before = creates(stack)
    account_id = close_deal(sf, "Killed Listener")
    assert doomed.wait(timeout=60) == -signal.SIGKILL
    stack.kill_process(doomed)
    assert state.replay_id(TOPICS[0]) == replay_before, "the replay id moved before the enqueue"
    assert synced(stack, account_id) == ["event"]  # the enqueued sync ran

    assert stack.metronome is not None
    ctx = stack.context()
    try:
        baseline = terminal_total(ctx.store)
        metronome_before = stack.metronome.total_requests()
        listener = start_listener(stack, logs)
        try:
            # It resumes after the stored replay id: the close is delivered again and synced
            # again, and that sync finds its hash unchanged.
            wait_until(lambda: state.replay_id(TOPICS[0]) != replay_before, timeout_s=60)
            assert wait_for_syncs(ctx.store, baseline, 1, timeout_s=60)
        finally:
            stop(stack, listener)
    finally:
        ctx.close()
    assert len(customers_of(stack, account_id)) == 1
    assert creates(stack) == creates_before + 1
    assert stack.metronome.total_requests() == metronome_before, "the replayed sync wrote"


def test_an_expired_replay_id_resubscribes_from_latest_and_polls(
    stack: SandboxStack, sf: Salesforce, state: ListenerState, logs: Path
) -> None:
    assert stack.salesforce is not None
    account_id = close_deal(sf, "Closed While Away")  # no listener runs: events wait
    stack.salesforce.expire_replay()  # ...and then fall out of the retention window
    listener = start_listener(stack, logs)
    try:
        assert synced(stack, account_id) == ["poll"]
        [customer] = customers_of(stack, account_id)
        assert customer["name"] == "Closed While Away"
        for topic in TOPICS:
            assert state.topic_stats(topic)["subscribed_from"] == "LATEST"
        assert "replay id refused" in logs.read_text()
    finally:
        stop(stack, listener)


def test_a_change_that_emits_no_event_is_caught_by_the_poll(
    stack: SandboxStack, sf: Salesforce, state: ListenerState, logs: Path
) -> None:
    assert stack.salesforce is not None
    listener = active_listener(stack, state, logs)
    try:
        account = sf.Account.create(
            {
                "Name": "Silent Close",
                "Billing_Provider__c": "netsuite",
                "NetSuite_Customer_Id__c": "NS-1",
            }
        )  # type: ignore[operator]
        deal = sf.Opportunity.create(  # type: ignore[operator]
            {
                "AccountId": account["id"],
                "Name": "d",
                "StageName": "Prospecting",
                "CloseDate": "2026-11-30",
            }
        )
        stack.salesforce.suppress_events(1)
        sf.Opportunity.update(deal["id"], {"StageName": "Closed Won"})  # type: ignore[operator]
        silent = sf.Account.get(account["id"])["Id"]  # type: ignore[operator]
        # A later close arrives by event; events come in commit order, so had the first close
        # emitted one, it would have been synced before this one.
        later = close_deal(sf, "Audible Close")
        assert synced(stack, later) == ["event"]
        assert customers_of(stack, silent) == []
        ctx = stack.context()
        try:
            baseline = terminal_total(ctx.store)
            summary = run_poll(ctx)
            assert wait_for_syncs(ctx.store, baseline, summary["enqueued"], timeout_s=60)
        finally:
            ctx.close()
        assert len(customers_of(stack, silent)) == 1
        assert ledger_reasons(stack, silent) == ["poll"]
    finally:
        stop(stack, listener)


def test_two_listeners_one_active_and_the_standby_takes_over(
    stack: SandboxStack, sf: Salesforce, state: ListenerState, logs: Path
) -> None:
    first = active_listener(stack, state, logs)
    second = start_listener(stack, logs)
    try:
        wait_until(lambda: "standing by" in logs.read_text(), timeout_s=60)
        assert subscribed(state, first.pid) and second.poll() is None
        stack.kill_process(first)  # SIGKILL: its lease runs out, it is not released
        wait_until(lambda: subscribed(state, second.pid), timeout_s=60)
        account_id = close_deal(sf, "After Takeover")
        assert synced(stack, account_id) == ["event"]
    finally:
        stop(stack, second)


def test_a_stalled_stream_and_an_expired_session_are_resubscribed(
    stack: SandboxStack, sf: Salesforce, state: ListenerState, logs: Path
) -> None:
    assert stack.salesforce is not None
    listener = active_listener(stack, state, logs)
    try:
        reconnects = int(state.topic_stats(TOPICS[0]).get("reconnects", 0))
        stack.salesforce.set_pubsub_faults(stall=True)
        wait_until(
            lambda: int(state.topic_stats(TOPICS[0]).get("reconnects", 0)) > reconnects,
            timeout_s=60,
        )
        stack.salesforce.set_pubsub_faults()
        stack.salesforce.expire_sessions()
        account_id = close_deal(sf, "After Stall")
        assert synced(stack, account_id) == ["event"]
        assert "logging in again" in logs.read_text()
    finally:
        stop(stack, listener)


def close_silently(stack: SandboxStack, sf: Salesforce, name: str) -> tuple[str, str]:
    """Win a deal whose closing update emits no event; (account id, opportunity id)."""
    assert stack.salesforce is not None
    account = sf.Account.create(  # type: ignore[operator]
        {"Name": name, "Billing_Provider__c": "netsuite", "NetSuite_Customer_Id__c": "NS-9"}
    )
    deal = sf.Opportunity.create(  # type: ignore[operator]
        {
            "AccountId": account["id"],
            "Name": "d",
            "StageName": "Prospecting",
            "CloseDate": "2026-11-30",
        }
    )
    stack.salesforce.suppress_events(1)
    sf.Opportunity.update(deal["id"], {"StageName": "Closed Won"})  # type: ignore[operator]
    account_id = str(sf.Account.get(account["id"])["Id"])  # type: ignore[operator]
    deal_id = str(sf.Opportunity.get(deal["id"])["Id"])  # type: ignore[operator]
    return account_id, deal_id


def test_gap_events_sync_their_ids_and_an_overflow_polls(
    stack: SandboxStack, sf: Salesforce, state: ListenerState, logs: Path
) -> None:
    assert stack.salesforce is not None
    listener = active_listener(stack, state, logs)
    try:
        account_id, deal_id = close_silently(stack, sf, "Gap Update")
        stack.salesforce.emit_gap("Opportunity", "GAP_UPDATE", [deal_id])
        assert synced(stack, account_id) == ["event"]

        overflowed, _ = close_silently(stack, sf, "Gap Overflow")
        stack.salesforce.emit_gap("Opportunity", "GAP_OVERFLOW")
        assert synced(stack, overflowed) == ["poll"]
    finally:
        stop(stack, listener)


def test_a_schema_change_mid_stream_is_decoded_with_the_new_schema(
    stack: SandboxStack, sf: Salesforce, state: ListenerState, logs: Path
) -> None:
    assert stack.salesforce is not None
    listener = active_listener(stack, state, logs)
    try:
        before = close_deal(sf, "Before Schema Change")
        assert synced(stack, before) == ["event"]
        stack.salesforce.evolve_schema("Opportunity", "Renewal_Term__c")
        after = close_deal(sf, "After Schema Change")
        assert synced(stack, after) == ["event"]
    finally:
        stop(stack, listener)


def test_an_exhausted_delivery_allocation_alerts_and_falls_back_to_polling(
    stack: SandboxStack, sf: Salesforce, state: ListenerState, logs: Path
) -> None:
    assert stack.salesforce is not None
    receiver = Receiver()
    listener = active_listener(
        stack,
        state,
        logs,
        CRMSYNC_ALERT_WEBHOOK_URL=receiver.url,
        CRMSYNC_POLL_INTERVAL_S="1",
        CRMSYNC_LISTENER_LIMIT_BACKOFF_S="2",
    )
    try:
        stack.salesforce.set_pubsub_faults(limit_exceeded=True)
        [alert] = wait_until(lambda: receiver.events("listener_limit_exceeded"), timeout_s=60)
        assert alert["topic"] in TOPICS
        account_id = close_deal(sf, "Closed Without Events")
        assert synced(stack, account_id) == ["poll"]
        stack.salesforce.set_pubsub_faults()
        wait_until(lambda: subscribed(state, listener.pid), timeout_s=60)
        later = close_deal(sf, "Events Are Back")
        assert synced(stack, later) == ["event"]
    finally:
        stop(stack, listener)
        receiver.close()


def test_status_and_metrics_show_the_listener(
    stack: SandboxStack, state: ListenerState, logs: Path
) -> None:
    from worker.commands.status import collect_status
    from worker.ops.scrape import RedisStateCollector
    from worker.state.store import SyncStore

    listener = active_listener(stack, state, logs)
    try:  # an idle stream gets a keepalive every second here
        wait_until(lambda: all(state.topic_stats(t).get("last_keepalive_at") for t in TOPICS), 60)
    finally:
        stop(stack, listener)
    store = SyncStore.from_url(stack.redis_url)
    try:
        report = collect_status(store, listener=state)["listener"]
        for topic in TOPICS:
            row = report["topics"][topic]
            assert row["stored_replay_id"] and row["events"] > 0
            assert row.get("last_event_at") and row.get("last_keepalive_at"), (topic, row)
            assert row["event_lag_s"] is not None and row["reconnects"] >= 1
        families = {
            family.name: family
            for family in RedisStateCollector(lambda: store, "crmsync").collect()
        }
        lag = families["crmsync_listener_event_lag_seconds"]
        assert {sample.labels["topic"] for sample in lag.samples} == set(TOPICS)
        assert families["crmsync_listener_reconnects"].samples
    finally:
        store.client.close()


def test_listener_logs_have_no_traceback(stack: SandboxStack) -> None:
    """Run last: every listener above ended without an unhandled error."""
    for log in Path(stack.data_dir).parent.glob("test_*.log"):
        text = log.read_text(errors="replace")
        assert "Traceback" not in text, f"{log.name}: {text[-4000:]}"
