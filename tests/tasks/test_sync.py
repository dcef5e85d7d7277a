"""`run_sync` called directly (no broker): message validation, poison messages, dedupe.

Redis is fakeredis; Metronome is the emulator over HTTP with the real SDK.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import fakeredis
import pytest

from mappings import load_default_mapping
from tasks.parked import run_drain
from tasks.sync import MAX_DELIVERIES, Done, Retry, run_sync
from worker.context import WorkerContext
from worker.queue.names import PARKED_REASON
from worker.sandbox.metronome import MetronomeEmulator, MetronomeFaults
from worker.settings import load_settings
from worker.state.keys import Keys
from worker.state.metronome_token import TokenRefusals
from worker.state.store import SyncStore

ACCOUNT = "001000000000001AAA"


def record(**account: Any) -> dict[str, Any]:
    return {
        "Id": "006000000000001AAA",
        "AccountId": ACCOUNT,
        "SystemModstamp": "2026-11-20T10:00:00.000+0000",
        "Account": {
            "Id": ACCOUNT,
            "Name": "WidgetsExpress",
            "Billing_Email__c": "team@widgetsexpress.com",
            "Billing_Provider__c": "aws_marketplace",
            "AWS_Customer_Id__c": "ABC123ABC12",
            "AWS_Product_Code__c": "my_product",
            "AWS_Region__c": "us-west-1",
            "Parent": None,
            **account,
        },
    }


def record_of(account_id: str) -> dict[str, Any]:
    """The same deal on another account."""
    other = record()
    return {
        **other,
        "Id": "006000000000009AAA",
        "AccountId": account_id,
        "Account": {
            **other["Account"],
            "Id": account_id,
            "Name": "Other Co",
            "Billing_Email__c": "team@other.example",
        },
    }


@pytest.fixture
def emulator() -> Iterator[MetronomeEmulator]:
    with MetronomeEmulator(token="t") as running:
        yield running


@pytest.fixture
def ctx(emulator: MetronomeEmulator) -> Iterator[WorkerContext]:
    settings = load_settings(
        metronome_bearer_token="t",
        metronome_base_url=emulator.url,
        retry_immediately=True,
        max_task_retries=2,
    )
    store = SyncStore(fakeredis.FakeRedis(decode_responses=True), Keys("u"))
    context = WorkerContext(settings=settings, store=store, mapping=load_default_mapping())
    yield context
    context.close()


def test_first_sync_creates_and_the_second_costs_no_call(
    ctx: WorkerContext, emulator: MetronomeEmulator
) -> None:
    first = run_sync(ctx, ACCOUNT, record())
    assert isinstance(first, Done) and first.outcome == "created"
    calls = emulator.total_requests()
    second = run_sync(ctx, ACCOUNT, record())
    assert isinstance(second, Done) and second.outcome == "unchanged"
    assert emulator.total_requests() == calls
    [entry] = ctx.store.ledger()
    assert entry["outcome"] == "created" and entry["customer_id"] == first.customer_id


def test_force_bypasses_the_hash_but_still_writes_nothing_when_in_sync(
    ctx: WorkerContext, emulator: MetronomeEmulator
) -> None:
    run_sync(ctx, ACCOUNT, record())
    result = run_sync(ctx, ACCOUNT, record(), force=True)
    assert isinstance(result, Done) and result.outcome == "in_sync"
    assert len(emulator.customers()) == 1


@pytest.mark.parametrize(
    ("account_id", "payload", "why"),
    [
        ("not-an-id", record(), "not a Salesforce id"),
        (ACCOUNT, "a string, not a record", "AccountId mismatch"),
        (ACCOUNT, {**record(), "AccountId": "001000000000002AAA"}, "AccountId mismatch"),
        ("001000000000002AAA", record(), "AccountId mismatch"),
    ],
)
def test_a_message_that_is_not_ours_dead_letters(
    ctx: WorkerContext, emulator: MetronomeEmulator, account_id: str, payload: Any, why: str
) -> None:
    result = run_sync(ctx, account_id, payload)
    assert isinstance(result, Done) and result.outcome == "dead_lettered"
    [letter] = ctx.store.dead_letters()
    assert letter.kind == "malformed_message" and why in letter.reason
    assert emulator.total_requests() == 0


def test_a_message_redelivered_too_often_stops_and_dead_letters(
    ctx: WorkerContext, emulator: MetronomeEmulator
) -> None:
    for _ in range(MAX_DELIVERIES):
        ctx.store.count_delivery("poison-task", 0)
    result = run_sync(ctx, ACCOUNT, record(), task_id="poison-task")
    assert isinstance(result, Done) and result.outcome == "dead_lettered"
    [letter] = ctx.store.dead_letters()
    assert letter.kind == "redelivered" and "11 times" in letter.reason
    assert emulator.total_requests() == 0


def test_a_mapping_error_dead_letters_once_per_version_of_the_record(ctx: WorkerContext) -> None:
    bad = record(AWS_Region__c="mars-north-1")
    assert run_sync(ctx, ACCOUNT, bad) == Done("dead_lettered")
    assert run_sync(ctx, ACCOUNT, bad) == Done("unchanged")
    edited = record(AWS_Region__c="mars-south-2")
    assert run_sync(ctx, ACCOUNT, edited) == Done("dead_lettered")
    # One dead letter per account and kind, counting the attempts, with the latest reason.
    [letter] = ctx.store.dead_letters()
    assert (letter.kind, letter.count) == ("mapping", 2)
    assert "mars-south-2" in letter.reason and letter.first_at <= letter.at


def test_a_later_successful_sync_resolves_the_accounts_dead_letters(
    ctx: WorkerContext, emulator: MetronomeEmulator
) -> None:
    assert run_sync(ctx, ACCOUNT, record(AWS_Region__c="mars-north-1"), task_id="bad") == Done(
        "dead_lettered"
    )
    fixed = run_sync(ctx, ACCOUNT, record(), task_id="good", reason="resync")
    assert isinstance(fixed, Done) and fixed.outcome == "created"
    assert ctx.store.dead_letters() == []  # nothing open
    [resolved] = ctx.store.dead_letter_book.groups(include_resolved=True)
    assert (resolved.status, resolved.resolved_by, resolved.resolved_how) == (
        "resolved",
        "good",
        "created",
    )
    # The same mistake later is a new dead letter, not the resolved one reopened.
    assert run_sync(ctx, ACCOUNT, record(AWS_Region__c="mars-north-1")) == Done("dead_lettered")
    [again] = ctx.store.dead_letters()
    assert again.entry_id != resolved.entry_id and again.count == 1


def test_transient_failures_retry_then_park_and_the_replay_leaves_the_parking(
    ctx: WorkerContext, emulator: MetronomeEmulator
) -> None:
    emulator.set_faults(MetronomeFaults(server_error_rate=1.0))
    attempts = [run_sync(ctx, ACCOUNT, record(), retries=n) for n in range(3)]
    assert isinstance(attempts[0], Retry) and isinstance(attempts[1], Retry)
    assert attempts[0].countdown == 0  # CRMSYNC_RETRY_IMMEDIATELY: no waiting in tests
    assert attempts[2] == Done("parked")  # not a dead letter: the failure may still clear
    assert ctx.store.dead_letters() == []
    [parked] = ctx.parking.items()
    assert parked.account_id == ACCOUNT and parked.attempts == 1
    assert "answered 500" in parked.reason  # which call, which answer
    emulator.set_faults(MetronomeFaults())
    replay = run_sync(ctx, ACCOUNT, parked.record, reason=PARKED_REASON)
    assert isinstance(replay, Done) and replay.outcome == "created"
    assert ctx.parking.count() == 0 and len(emulator.customers()) == 1


def test_a_replay_fails_again_parks_again_and_dead_letters_only_after_the_max_age(
    ctx: WorkerContext, emulator: MetronomeEmulator
) -> None:
    emulator.set_faults(MetronomeFaults(server_error_rate=1.0))
    spent = ctx.settings.max_task_retries  # its quick retries are spent each time
    first = run_sync(ctx, ACCOUNT, record(), reason=PARKED_REASON, retries=spent, task_id="a")
    assert first == Done("parked")
    again = run_sync(ctx, ACCOUNT, record(), reason=PARKED_REASON, retries=spent, task_id="b")
    assert again == Done("parked")
    parked = ctx.parking.get(ACCOUNT)
    assert parked is not None and parked.attempts == 2 and ctx.store.dead_letters() == []
    # Parked a day ago (as far as the parking knows): the next failure is a dead letter.
    ctx.parking.remove(ACCOUNT)
    ctx.parking.park(ACCOUNT, record(), reason="old", now=time.time() - 86_400)
    expired = run_sync(ctx, ACCOUNT, record(), reason=PARKED_REASON, retries=spent, task_id="c")
    assert expired == Done("dead_lettered")
    [letter] = ctx.store.dead_letters()
    assert letter.kind == "transient_exhausted" and "h parked" in letter.reason
    assert ctx.parking.count() == 0


def test_an_open_breaker_parks_syncs_without_a_call_until_a_probe_closes_it(
    ctx: WorkerContext, emulator: MetronomeEmulator
) -> None:
    other = "001000000000002AAA"
    emulator.set_faults(MetronomeFaults(server_error_rate=1.0))
    for n in range(ctx.settings.breaker_failures):  # one account failing again and again
        run_sync(ctx, ACCOUNT, record(), retries=n, task_id=f"same-{n}")
    assert ctx.metronome_breaker.state().state == "closed"  # cannot open it alone
    for n in range(3, 3 + ctx.settings.breaker_failures):  # different accounts can
        account = f"00100000000000{n}AAA"[-18:]
        run_sync(ctx, account, record_of(account), task_id=f"t-{n}")
    assert ctx.metronome_breaker.state().state == "open"
    calls = emulator.total_requests()
    parked = run_sync(ctx, other, record_of(other))
    assert parked == Done("parked") and emulator.total_requests() == calls  # zero calls
    emulator.set_faults(MetronomeFaults())
    ctx.metronome_breaker.shared.probe_now()  # the probe pause is over
    probe = run_sync(ctx, other, record_of(other), reason=PARKED_REASON)
    assert isinstance(probe, Done) and probe.outcome == "created"
    assert ctx.metronome_breaker.state().state == "closed"


def test_a_later_sync_that_succeeds_resolves_the_accounts_dead_letters(
    ctx: WorkerContext,
) -> None:
    bad = record(AWS_Region__c="mars-north-1")
    assert run_sync(ctx, ACCOUNT, bad, task_id="bad-sync") == Done("dead_lettered")
    assert ctx.store.dead_letter_book.open_count() == 1
    fixed = run_sync(ctx, ACCOUNT, record(), task_id="fixing-sync")
    assert isinstance(fixed, Done) and fixed.outcome == "created"
    assert ctx.store.dead_letters() == [] and ctx.store.dead_letter_book.open_count() == 0
    [letter] = ctx.store.dead_letter_book.groups(include_resolved=True)  # kept, for audit
    assert (letter.status, letter.resolved_by) == ("resolved", "fixing-sync")


def test_an_older_snapshot_that_finishes_last_does_not_undo_a_newer_one(
    ctx: WorkerContext, emulator: MetronomeEmulator
) -> None:
    """Chaos run, seed 32: a rename was undone by an older snapshot that finished later."""

    def snapshot(name: str, account_stamp: str) -> dict[str, Any]:
        return record(Name=name, SystemModstamp=account_stamp)

    renamed = run_sync(ctx, ACCOUNT, snapshot("Renamed", "2026-11-21T09:00:00.000+0000"))
    assert isinstance(renamed, Done) and renamed.outcome == "created"
    calls = emulator.total_requests()
    older = run_sync(ctx, ACCOUNT, snapshot("Old name", "2026-11-20T12:00:00.000+0000"))
    assert isinstance(older, Done) and older.outcome == "unchanged"
    assert emulator.total_requests() == calls  # not even a read
    assert [c["name"] for c in emulator.customers()] == ["Renamed"]
    # Forced (a redrive of an old dead letter) changes nothing either: newer data won.
    forced = run_sync(
        ctx, ACCOUNT, snapshot("Old name", "2026-11-20T12:00:00.000+0000"), force=True
    )
    assert isinstance(forced, Done) and forced.outcome == "unchanged"
    newer = run_sync(ctx, ACCOUNT, snapshot("Renamed again", "2026-11-22T09:00:00.000+0000"))
    assert isinstance(newer, Done) and newer.outcome == "updated"
    assert [c["name"] for c in emulator.customers()] == ["Renamed again"]


def test_a_refused_snapshot_is_not_resent_until_it_changes_or_is_forced(
    ctx: WorkerContext, emulator: MetronomeEmulator
) -> None:
    """Two accounts with one billing email: the second is a customer conflict (needs attention
    and a dead letter); the poll's overlap re-reading the same snapshot sends nothing again."""
    first = run_sync(ctx, ACCOUNT, record())
    assert isinstance(first, Done) and first.outcome == "created"
    other = "001000000000009AAA"
    twin = record()
    twin.update(Id="006000000000009AAA", AccountId=other)
    twin["Account"] = {**twin["Account"], "Id": other, "Name": "Twin"}
    assert run_sync(ctx, other, twin) == Done("dead_lettered")
    calls = emulator.total_requests()
    assert run_sync(ctx, other, twin) == Done("unchanged")  # the overlap: nothing sent
    assert emulator.total_requests() == calls
    assert run_sync(ctx, other, twin, force=True) == Done("dead_lettered")  # a redrive: sent
    [letter] = ctx.store.dead_letters()
    assert (letter.account_id, letter.kind, letter.count) == (other, "permanent", 2)
    [item] = ctx.store.attention.items()
    assert (item.event, item.record_id, item.count) == ("customer_conflict", other, 2)


def test_with_nothing_parked_an_open_breaker_is_probed_with_one_read(
    ctx: WorkerContext, emulator: MetronomeEmulator
) -> None:
    ctx.metronome_breaker.shared.failed("503", force=True, probe_after_s=0)
    sent: list[Any] = []
    result = run_drain(ctx, publish=sent.extend)
    assert result["status"] == "ok" and sent == []  # the read worked: closed, nothing to send
    assert ctx.metronome_breaker.state().state == "closed"
    assert emulator.request_counts() == {"GET /v1/customers 200": 1}


def test_a_sync_parked_past_its_max_age_while_the_breaker_stays_open_is_dead_lettered(
    ctx: WorkerContext, emulator: MetronomeEmulator
) -> None:
    ctx.parking.park(ACCOUNT, record(), reason="create answered 503", now=time.time() - 90_000)
    ctx.metronome_breaker.shared.failed("503", force=True, probe_after_s=3600)
    result = run_drain(ctx, publish=lambda items: None)
    assert result == {"status": "breaker_open", "parked": 0, "expired": 1}
    [letter] = ctx.store.dead_letters()
    assert letter.kind == "transient_exhausted" and "create answered 503" in letter.reason
    assert letter.snapshot == record() and emulator.total_requests() == 0


def test_once_a_probe_closes_the_breaker_every_parked_sync_is_sent_due_or_not(
    ctx: WorkerContext,
) -> None:
    """Recovery does not wait out the backoff (up to CRMSYNC_PARK_BACKOFF_MAX_S, minutes):
    the first drain after the breaker closed sends every parked sync; later drains only the
    due ones."""
    other = "001000000000002AAA"
    breaker = ctx.metronome_breaker
    breaker.shared.failed("503", force=True, probe_after_s=0)
    for account, snapshot in ((ACCOUNT, record()), (other, record_of(other))):
        parked = ctx.parking.park(account, snapshot, reason="create answered 503")
        assert parked.next_at is not None and parked.next_at > time.time() + 1  # not due yet
    probe: list[Any] = []
    assert run_drain(ctx, publish=probe.extend)["status"] == "probe"
    [first] = probe  # one parked sync goes as the probe; its sync is let through
    admission = breaker.admit()
    assert admission.probe
    with breaker.probing(admission):
        assert breaker.succeeded()  # the probe's sync went through: closed
    sent: list[Any] = []
    result = run_drain(ctx, publish=sent.extend)
    assert result["everything"]
    assert [i.account_id for i in sent] == [a for a in (ACCOUNT, other) if a != first.account_id]
    again: list[Any] = []
    assert run_drain(ctx, publish=again.extend)["sent"] == 0 and again == []


def test_a_refused_token_parks_every_sync_and_a_probe_that_gets_through_drains_them(
    ctx: WorkerContext, emulator: MetronomeEmulator
) -> None:
    """Issue #24: a 401 is the deployment's token, not the record: no dead letter, no call per
    account, and once Metronome accepts the token the parked syncs go out by themselves."""
    accounts = [ACCOUNT, "001000000000002AAA", "001000000000003AAA"]
    emulator.set_token("revoked-elsewhere")  # Metronome stops accepting the worker's token
    results = [run_sync(ctx, a, record_of(a) if a != ACCOUNT else record()) for a in accounts]
    assert results == [Done("parked")] * len(accounts)
    assert sum(emulator.request_counts().values()) == 1  # the first refusal, then no call
    assert ctx.store.dead_letters() == []
    for account in accounts:  # the one that met the 401 and those that did not call
        item = ctx.parking.get(account)
        assert item is not None and "METRONOME_BEARER_TOKEN" in item.reason, item
    sent: list[Any] = []
    assert run_drain(ctx, publish=sent.extend)["status"] == "token_refused" and sent == []
    # Metronome accepts the token again; once the backoff is over one parked sync probes.
    emulator.set_token("t")
    TokenRefusals(ctx.store.client, ctx.store.keys).probe_now()
    probe: list[Any] = []
    assert run_drain(ctx, publish=probe.extend)["status"] == "token_probe"
    [first] = probe
    replay = run_sync(ctx, first.account_id, first.record, reason=PARKED_REASON)
    assert isinstance(replay, Done) and replay.outcome == "created"
    assert not ctx.metronome_token.state().refusing
    rest: list[Any] = []  # the drain the probe asked for, or beat's next: every one is due
    assert run_drain(ctx, publish=rest.extend)["status"] == "ok"
    assert {i.account_id for i in rest} == set(accounts) - {first.account_id}


def test_a_sync_parked_for_a_refused_token_never_expires_into_a_dead_letter(
    ctx: WorkerContext, emulator: MetronomeEmulator
) -> None:
    emulator.set_token("revoked-elsewhere")
    ctx.parking.park(ACCOUNT, record(), reason="old", now=time.time() - 90_000)
    replay = run_sync(ctx, ACCOUNT, record(), reason=PARKED_REASON, task_id="late")
    assert replay == Done("parked") and ctx.store.dead_letters() == []
    assert ctx.parking.count() == 1


def test_after_the_token_was_rotated_the_first_drain_ends_the_refusal_and_sends_everything(
    ctx: WorkerContext, emulator: MetronomeEmulator
) -> None:
    """The old token was refused (a long backoff ahead); the services restarted with a new
    one: the drain tries it at once instead of waiting for the old token's next probe."""
    refusals = TokenRefusals(ctx.store.client, ctx.store.keys, max_wait_s=900)
    refusals.refused(
        "0123456789ab " + ctx.settings.metronome_base_url,
        fingerprint="0123456789ab",
        base_url=ctx.settings.metronome_base_url,
        status=401,
        reason="Unauthorized on list",
        probe=False,
    )
    ctx.parking.park(ACCOUNT, record(), reason="Metronome refuses the token")
    sent: list[Any] = []
    result = run_drain(ctx, publish=sent.extend)
    assert result["everything"] and [i.account_id for i in sent] == [ACCOUNT]
    assert not refusals.state().refusing
    assert emulator.request_counts() == {"GET /v1/customers 200": 1}  # one read, at once
