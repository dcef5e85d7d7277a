"""The listener's processor, called directly: a burst is one enqueue, the replay id is stored
only after it, only by the lease holder, and only relevant ids cost a query."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import fakeredis
import pytest

from mappings import load_default_mapping
from worker.context import WorkerContext
from worker.listener.dispatch import Dispatched, Dispatcher
from worker.listener.process import Listener
from worker.listener.stream import Delivery
from worker.salesforce.events.auth import Authenticator
from worker.salesforce.events.relevance import Triage, Verdict
from worker.settings import Settings
from worker.state.keys import Keys
from worker.state.listener import ListenerState
from worker.state.store import SyncStore

OPPS = "/data/OpportunityChangeEvent"
ACCOUNTS = "/data/AccountChangeEvent"


class RecordingDispatcher(Dispatcher):
    def __init__(self, ctx: WorkerContext, *, failures: int = 0) -> None:
        super().__init__(ctx)
        self.syncs: list[tuple[list[str], list[str]]] = []
        self.polls: list[str] = []
        self.failures = failures
        self.replay_at_sync: list[bytes | None] = []
        self.state: ListenerState | None = None

    def sync(self, opportunity_ids: Sequence[str], account_ids: Sequence[str]) -> Dispatched:
        assert self.state is not None
        self.replay_at_sync.append(self.state.replay_id(OPPS))
        if self.failures:
            self.failures -= 1
            raise ConnectionError("Salesforce is down")
        self.syncs.append((list(opportunity_ids), list(account_ids)))
        return Dispatched(len(opportunity_ids) + len(account_ids), 1)

    def poll_now(self, why: str) -> None:
        self.polls.append(why)


@pytest.fixture
def parts() -> tuple[Listener, ListenerState, RecordingDispatcher]:
    server = fakeredis.FakeServer()
    store = SyncStore(fakeredis.FakeRedis(server=server, decode_responses=True), Keys())
    state = ListenerState(fakeredis.FakeRedis(server=server), Keys())
    ctx = WorkerContext(settings=Settings(), store=store, mapping=load_default_mapping())
    dispatcher = RecordingDispatcher(ctx)
    dispatcher.state = state
    listener = Listener(
        ctx,
        state,
        client=object(),  # type: ignore[arg-type] # the processor never calls it
        auth=Authenticator(lambda: pytest.fail("no login expected")),
        dispatcher=dispatcher,
    )
    lease = state.try_acquire(60)
    assert lease is not None
    listener._lease = lease
    return listener, state, dispatcher


def delivery(topic: str, n: int, verdict: Verdict, *ids: str, if_known: bool = False) -> Delivery:
    triage = Triage(verdict, tuple(ids), if_known=if_known) if verdict else None
    return Delivery(topic, bytes([n]), triage)


def handle(listener: Listener, burst: list[Delivery], halt: Any = None) -> bool:
    return listener._handle(burst, halt or threading.Event())


def test_a_burst_is_one_enqueue_then_each_topics_newest_replay_id(parts: Any) -> None:
    listener, state, dispatcher = parts
    burst = [
        delivery(OPPS, 1, Verdict.OPPORTUNITY, "006A"),
        delivery(ACCOUNTS, 2, Verdict.SKIP),
        delivery(OPPS, 3, Verdict.OPPORTUNITY, "006B"),
        Delivery(OPPS, bytes([4]), None),  # a keepalive
        delivery(ACCOUNTS, 5, Verdict.ACCOUNT, "001A", if_known=True),  # unknown: dropped
    ]
    assert handle(listener, burst)
    assert dispatcher.syncs == [(["006A", "006B"], [])]
    assert (state.replay_id(OPPS), state.replay_id(ACCOUNTS)) == (bytes([4]), bytes([5]))
    assert state.topic_stats(ACCOUNTS)["skipped"] == "1"


def test_known_records_only_for_if_known_verdicts(parts: Any) -> None:
    listener, _state, dispatcher = parts
    store = listener.ctx.store
    store.mark_won(["006Known"])
    store.remember_customer("001Known", "customer-1")
    burst = [
        delivery(OPPS, 1, Verdict.OPPORTUNITY, "006Known", "006New", if_known=True),
        delivery(ACCOUNTS, 2, Verdict.ACCOUNT, "001Known", "001New", if_known=True),
    ]
    assert handle(listener, burst)
    assert dispatcher.syncs == [(["006Known"], ["001Known"])]


def test_nothing_relevant_costs_no_query_but_moves_the_replay_id(parts: Any) -> None:
    listener, state, dispatcher = parts
    assert handle(listener, [delivery(OPPS, 9, Verdict.SKIP)])
    assert dispatcher.syncs == [] and state.replay_id(OPPS) == bytes([9])


def test_a_failed_enqueue_is_retried_and_the_replay_id_waits_for_it(
    parts: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    listener, state, dispatcher = parts
    dispatcher.failures = 2
    halt = threading.Event()
    monkeypatch.setattr(halt, "wait", lambda timeout=None: False)  # no backoff in tests
    assert handle(listener, [delivery(OPPS, 7, Verdict.OPPORTUNITY, "006A")], halt)
    assert dispatcher.replay_at_sync == [None, None, None]  # never stored before success
    assert dispatcher.syncs == [(["006A"], [])] and state.replay_id(OPPS) == bytes([7])


def test_a_halt_during_retries_stores_nothing(parts: Any) -> None:
    listener, state, dispatcher = parts
    dispatcher.failures = 1
    halt = threading.Event()
    halt.set()
    assert not handle(listener, [delivery(OPPS, 7, Verdict.OPPORTUNITY, "006A")], halt)
    assert state.replay_id(OPPS) is None


def test_a_listener_that_lost_its_lease_cannot_move_the_replay_id(parts: Any) -> None:
    listener, state, _dispatcher = parts
    state.client.delete(state.keys.listener_lease)  # expired...
    newer = state.try_acquire(60)  # ...and taken by another listener
    assert newer is not None and newer.fence > listener._lease.fence
    assert not handle(listener, [delivery(OPPS, 8, Verdict.OPPORTUNITY, "006A")])
    assert state.replay_id(OPPS) is None
    assert listener._lost.is_set()


def test_the_poll_requests_of_a_burst_are_one_poll(parts: Any) -> None:
    listener, state, dispatcher = parts
    burst = [
        Delivery(OPPS, b"", Triage(Verdict.POLL, why="no stored replay id")),
        Delivery(ACCOUNTS, b"", Triage(Verdict.POLL, why="no stored replay id")),
        Delivery(OPPS, b"\x02", Triage(Verdict.POLL, why="gap overflow")),
    ]
    assert handle(listener, burst)
    assert dispatcher.polls == ["no stored replay id; gap overflow"] and dispatcher.syncs == []
    assert state.replay_id(OPPS) == b"\x02" and state.replay_id(ACCOUNTS) is None
