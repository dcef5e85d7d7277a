"""Webhook alerts: each new dead letter once (even with several watchers), cursor lag once per
episode, retried delivery, and never a blocked caller."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from tasks.poll import poll_closed_won
from tests.support.ops_stack import OpsStack
from tests.support.waiting import Receiver, wait_until
from worker.ops.watcher import AlertWatcher
from worker.state.metronome_token import TokenRefusals
from worker.state.server import RedisServer
from worker.state.store import SyncStore
from worker.telemetry.alerts import WebhookSender, sync_lag


@pytest.fixture
def store(redis_server: RedisServer) -> Iterator[SyncStore]:
    store = SyncStore.from_url(redis_server.url, "alerts-test")
    yield store
    store.client.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    hook = Receiver()
    yield hook
    hook.close()


def watcher(store: SyncStore, url: str, threshold_s: float = 600) -> AlertWatcher:
    return AlertWatcher(
        store=store, sender=WebhookSender(url, backoff_s=0.01), lag_threshold_s=threshold_s
    )


def dead_letter(store: SyncStore, account: str) -> str:
    return store.dead_letter(
        account_id=account,
        kind="mapping",
        reason="aws_region: not a region",
        task_id="t",
        snapshot=None,
    )


def test_each_dead_letter_is_sent_once_across_watchers(
    store: SyncStore, receiver: Receiver
) -> None:
    first, second = watcher(store, receiver.url), watcher(store, receiver.url)
    try:
        ids = [dead_letter(store, "001A"), dead_letter(store, "001B")]
        for _ in range(3):
            first.check_dead_letters()
            second.check_dead_letters()
        wait_until(lambda: len(receiver.events("dead_letter")) >= 2, 10)
        third = dead_letter(store, "001C")
        second.check_dead_letters()
        first.check_dead_letters()
        wait_until(lambda: len(receiver.events("dead_letter")) >= 3, 10)
    finally:
        first.stop()
        second.stop()  # drains: anything queued was delivered before this returns
    events = receiver.events("dead_letter")
    assert sorted(e["entry_id"] for e in events) == sorted([*ids, third])
    assert {e["account_id"] for e in events} == {"001A", "001B", "001C"}
    assert events[0]["kind"] == "mapping" and "aws_region" in events[0]["reason"]


def test_cursor_lag_alerts_once_per_episode_and_resolves(
    store: SyncStore, receiver: Receiver
) -> None:
    watch = watcher(store, receiver.url, threshold_s=600)
    now = datetime.now(UTC)
    old = (now - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    fresh = (now - timedelta(seconds=30)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    try:
        store.client.hset(store.keys.cursors, mapping={"opportunities": fresh})
        assert watch.check_lag() is False
        store.client.hset(store.keys.cursors, mapping={"accounts": old})
        assert watch.check_lag() is True
        assert watch.check_lag() is False  # same episode: no repeat within the hour
        store.client.hset(store.keys.cursors, mapping={"accounts": fresh})
        watch.check_lag()
        wait_until(lambda: receiver.events("cursor_lag_resolved"), 10)
    finally:
        watch.stop()
    [lag] = receiver.events("cursor_lag")
    assert lag["cursor"] == "accounts" and 7100 < lag["lag_s"] < 7300
    assert lag["threshold_s"] == 600


def test_a_refused_metronome_token_alerts_once_per_episode_across_watchers(
    store: SyncStore, receiver: Receiver
) -> None:
    first, second = watcher(store, receiver.url), watcher(store, receiver.url)
    refusals = TokenRefusals(store.client, store.keys)

    def refuse(identity: str) -> None:
        refusals.refused(
            identity,
            fingerprint=identity[:12],
            base_url="https://api.metronome.com",
            status=401,
            reason="Unauthorized on list",
            probe=False,
        )

    try:
        assert first.check_token() is False  # nothing refused
        refuse("aaaaaaaaaaaa https://api.metronome.com")
        refuse("aaaaaaaaaaaa https://api.metronome.com")  # the same episode
        assert [first.check_token(), second.check_token(), first.check_token()] == [
            True,
            False,
            False,
        ]
        refuse("bbbbbbbbbbbb https://api.metronome.com")  # a new token, refused too
        assert second.check_token() is True
        wait_until(lambda: len(receiver.events("metronome_token_refused")) >= 2, 10)
    finally:
        first.stop()
        second.stop()
    # One alert per episode; each watcher sends from its own thread, so in either order.
    events = receiver.events("metronome_token_refused")
    by_token = {event["token_sha256"]: event for event in events}
    assert len(events) == 2 and set(by_token) == {"aaaaaaaaaaaa", "bbbbbbbbbbbb"}, events
    first_event = by_token["aaaaaaaaaaaa"]
    assert "METRONOME_BEARER_TOKEN" in first_event["action"]
    assert first_event["reason"] == "401 Unauthorized on list"


def test_a_quiet_org_with_healthy_polls_is_not_lagging() -> None:
    now = datetime.now(UTC)
    week_old = {"opportunities": "2026-01-01T00:00:00.000000Z"}
    healthy = {"status": "ok", "finished_at": (now - timedelta(seconds=40)).isoformat()}
    source, lag = sync_lag(week_old, healthy, now) or ("", 0.0)
    assert source == "last_ok_poll" and lag == pytest.approx(40, abs=1)
    # Polls stopped for quota: the cursor did not move, its age is the lag.
    stopped = {**healthy, "status": "stopped_for_quota"}
    source, lag = sync_lag(week_old, stopped, now) or ("", 0.0)
    assert source == "opportunities" and lag > 86_400
    assert sync_lag({}, {}, now) is None  # before the first poll: nothing to alert on


def test_delivery_is_retried_until_the_webhook_accepts() -> None:
    flaky = Receiver(fail_first=2)
    sender = WebhookSender(flaky.url, backoff_s=0.01)
    try:
        sender.send({"event": "dead_letter", "entry_id": "1-0"})
        wait_until(lambda: flaky.events("dead_letter"), 10)
    finally:
        sender.close()
        flaky.close()
    assert flaky.attempts == 3


def test_a_hung_webhook_never_blocks_the_caller() -> None:
    release = threading.Event()

    def hang(url: str, body: bytes) -> int:
        release.wait(30)
        return 204

    sender = WebhookSender("http://127.0.0.1:9/hook", post=hang)
    try:
        started = time.monotonic()
        for n in range(50):
            assert sender.send({"event": "dead_letter", "entry_id": f"{n}-0"})
        assert time.monotonic() - started < 1.0
    finally:
        release.set()
        sender.close()


@pytest.mark.integration
def test_a_poison_record_in_the_running_product_reaches_the_webhook(ops: OpsStack) -> None:
    sf = ops.stack.salesforce
    assert sf is not None
    account = sf.insert(
        "Account",
        {
            "Name": "Alerting Poison Ltd",
            "Billing_Email__c": "poison@example.test",
            "Billing_Provider__c": "aws_marketplace",
            "AWS_Customer_Id__c": "ABC123ABC12",
            "AWS_Product_Code__c": "my_product",
            "AWS_Region__c": "mars-north-1",
        },
    )
    sf.insert(
        "Opportunity",
        {
            "AccountId": account,
            "Name": "Doomed",
            "StageName": "Closed Won",
            "CloseDate": "2026-11-20",
        },
    )
    poll_closed_won.apply_async().get(timeout=120)
    [event] = wait_until(
        lambda: [e for e in ops.receiver.events("dead_letter") if e["account_id"] == account], 60
    )
    assert event["kind"] == "mapping" and "mars-north-1" in event["reason"]
    ctx = ops.stack.context()
    try:
        [letter] = [d for d in ctx.store.dead_letters(count=100_000) if d.account_id == account]
    finally:
        ctx.close()
    assert event["entry_id"] == letter.entry_id


@pytest.mark.integration
def test_a_merged_account_reaches_the_webhook_and_the_metric_once(ops: OpsStack) -> None:
    """A "needs attention" item made by a real poll: one webhook, however often it is seen,
    and counted by crmsync_attention_open until acknowledged."""
    from tests.support.metrics import scrape, total

    sf = ops.stack.salesforce
    assert sf is not None
    survivor, loser = (
        sf.insert("Account", {"Name": name, "Billing_Provider__c": ""})
        for name in ("Attention Survivor", "Attention Loser")
    )
    # A won deal, so the event streams' cursors start (from the newest won row) on this poll.
    sf.insert(
        "Opportunity",
        {
            "AccountId": survivor,
            "Name": "Kept",
            "StageName": "Closed Won",
            "CloseDate": "2026-11-20",
        },
    )
    ctx = ops.stack.context()
    try:
        for merge in (False, True):
            if merge:
                sf.merge_accounts(survivor, loser)
            ctx.store.client.delete(ctx.store.keys.events_check)  # read the event streams now
            poll_closed_won.apply_async().get(timeout=120)
        [event] = wait_until(
            lambda: [e for e in ops.receiver.events("needs_attention") if e["record_id"] == loser],
            60,
        )
        assert event["kind"] == "account_merged" and "attention ack" in event["action"]
        assert event["details"]["master_record_id"] == survivor
        merged = wait_until(
            lambda: total(
                scrape(ops.metrics_port), "crmsync_attention_open", event="account_merged"
            ),
            30,
        )
        assert ctx.store.attention.acknowledge(event["item_id"], by="test")
        assert wait_until(
            lambda: (
                total(scrape(ops.metrics_port), "crmsync_attention_open", event="account_merged")
                == merged - 1
                or None
            ),
            30,
        )
    finally:
        ctx.close()
    assert len([e for e in ops.receiver.events("needs_attention") if e["record_id"] == loser]) == 1
