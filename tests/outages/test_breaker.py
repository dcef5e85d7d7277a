"""The circuit breaker: its state machine on a pinned clock (fakeredis with Lua), one probe at
a time across many processes on a real Redis, and the gateway's gate (no request while open).

No assertion is about wall time: the clock is pinned, or the test reads what was admitted.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from pathlib import Path

import fakeredis
import pytest
import redis

from tests.support.breaker_probe import ask
from tests.support.metronome_emulator import TOKEN
from worker.metronome import MetronomeGateway
from worker.outages.breaker import GO, PROBE, WAIT, CircuitBreaker, Policy, breaker_state
from worker.outages.metronome import BreakerOpenError, MetronomeBreaker
from worker.sandbox.metronome import MetronomeEmulator, MetronomeFaults
from worker.state.keys import Keys
from worker.state.server import RedisServer

KEYS = Keys("brk")
POLICY = Policy(failures=3, probe_s=10.0, probe_lease_s=60.0)


class Clock:
    def __init__(self) -> None:
        self.now_ms = 1_000_000.0

    def __call__(self) -> float:
        return self.now_ms

    def advance(self, seconds: float) -> None:
        self.now_ms += seconds * 1000


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def breaker(clock: Clock) -> CircuitBreaker:
    return CircuitBreaker(fakeredis.FakeRedis(), KEYS, "metronome", POLICY, server_now_ms=clock)


def test_it_opens_after_n_consecutive_failures_and_a_success_resets_the_count(
    breaker: CircuitBreaker,
) -> None:
    assert breaker.admit().decision == GO
    assert breaker.failed("503") == "counted"
    assert breaker.failed("503") == "counted"
    assert breaker.succeeded(probe=False) is False  # not consecutive any more
    assert [breaker.failed("503") for _ in range(3)] == ["counted", "counted", "opened"]
    state = breaker.state()
    assert state.state == "open" and state.reason == "503" and state.opens == 1
    assert breaker.admit().decision == WAIT


def test_one_account_failing_again_and_again_does_not_open_it_alone(
    breaker: CircuitBreaker,
) -> None:
    assert [breaker.failed("500", subject="A") for _ in range(10)] == ["counted"] * 10
    assert breaker.failed("500", subject="B") == "counted"
    assert breaker.failed("500", subject="C") == "opened"  # three different syncs


def test_one_probe_after_the_pause_and_only_its_success_closes_it(
    breaker: CircuitBreaker, clock: Clock
) -> None:
    for _ in range(3):
        breaker.failed("no answer")
    clock.advance(9.9)
    assert breaker.admit().decision == WAIT
    assert breaker.succeeded(probe=False) is False  # a call sent before it opened: no proof
    assert breaker.state().state == "open"
    clock.advance(0.2)
    probe = breaker.admit()
    assert probe.decision == PROBE and probe.token
    # While the probe is out, nobody else goes, however long it takes (within its lease).
    assert [breaker.admit().decision for _ in range(5)] == [WAIT] * 5
    clock.advance(30)
    assert breaker.admit().decision == WAIT
    assert breaker.succeeded(probe=True) is True
    state = breaker.state()
    assert state.state == "closed" and state.failures == 0 and state.probes == 1
    assert breaker.admit().decision == GO


def test_a_failed_probe_keeps_it_open_for_another_pause(
    breaker: CircuitBreaker, clock: Clock
) -> None:
    for _ in range(3):
        breaker.failed("500")
    clock.advance(10)
    assert breaker.admit().probe
    assert breaker.failed("still 500", probe=True) == "reopened"
    assert breaker.admit().decision == WAIT
    clock.advance(10)
    assert breaker.admit().probe
    assert breaker.state().opens == 1  # one episode, two probes
    assert breaker.state().probes == 2


def test_a_probe_that_died_or_made_no_call_gives_its_turn_back(
    breaker: CircuitBreaker, clock: Clock
) -> None:
    for _ in range(3):
        breaker.failed("500")
    clock.advance(10)
    unused = breaker.admit()
    assert unused.probe
    breaker.release(unused.token)  # it made no call: the next caller probes at once
    died = breaker.admit()
    assert died.probe
    clock.advance(POLICY.probe_lease_s + 1)  # its process was killed: the lease runs out
    assert breaker.admit().probe


def test_a_quota_opens_at_once_with_its_own_pause(breaker: CircuitBreaker, clock: Clock) -> None:
    assert breaker.failed("quota", force=True, probe_after_s=900) == "opened"
    clock.advance(899)
    assert breaker.admit().decision == WAIT
    clock.advance(2)
    assert breaker.admit().probe


def test_state_of_a_breaker_never_used_is_closed() -> None:
    state = breaker_state(fakeredis.FakeRedis(), KEYS, "salesforce")
    assert state.state == "closed" and not state.is_open and state.as_dict()["since"] is None


# --- many processes, one Redis --------------------------------------------------------------


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    running = RedisServer(data_dir=tmp_path / "redis").start()
    try:
        yield running
    finally:
        running.stop()


def test_many_processes_asking_at_once_get_exactly_one_probe(server: RedisServer) -> None:
    opener = CircuitBreaker(redis.Redis.from_url(server.url), KEYS, "metronome", POLICY)
    opener.failed("503", force=True, probe_after_s=0)
    context = multiprocessing.get_context("spawn")
    start, results = context.Event(), context.Queue()
    processes = [
        context.Process(target=ask, args=(server.url, KEYS, POLICY, start, results))
        for _ in range(6)
    ]
    for process in processes:
        process.start()
    start.set()
    decisions = [d for _ in processes for d in results.get(timeout=120)]
    for process in processes:
        process.join(timeout=30)
    assert decisions.count(PROBE) == 1 and decisions.count(WAIT) == len(decisions) - 1


# --- the gateway's gate ---------------------------------------------------------------------


def test_no_request_leaves_while_open_but_the_probes_do(server: RedisServer) -> None:
    client = redis.Redis.from_url(server.url)
    shared = CircuitBreaker(client, KEYS, "metronome", Policy(failures=1, probe_s=0.1))
    metronome_breaker = MetronomeBreaker(shared, cache_s=0.0)
    with MetronomeEmulator(token=TOKEN, faults=MetronomeFaults(server_error_rate=1.0)) as api:
        gateway = MetronomeGateway(
            TOKEN, api.url, retry_immediately=True, gate=metronome_breaker.gate
        )
        try:
            with pytest.raises(Exception, match="answered 500"):
                gateway.list_customers(salesforce_account_ids=["001000000000001AAA"])
            assert metronome_breaker.failed("answered 500") == "opened"
            sent = api.total_requests()
            for _ in range(10):
                with pytest.raises(BreakerOpenError, match="breaker open"):
                    gateway.list_customers(salesforce_account_ids=["001000000000001AAA"])
            assert api.total_requests() == sent  # not one request while open
            api.set_faults(MetronomeFaults())
            admission = metronome_breaker.admit()
            while not admission.probe:  # the 0.1 s pause: ask again, as a sync would
                admission = metronome_breaker.admit()
            with metronome_breaker.probing(admission):
                assert gateway.list_customers(salesforce_account_ids=["001000000000001AAA"]) == []
                assert metronome_breaker.succeeded() is True
            assert api.total_requests() == sent + 1
            gateway.list_customers(salesforce_account_ids=["001000000000001AAA"])  # closed: go
        finally:
            gateway.close()


def test_a_success_after_a_failure_resets_the_count() -> None:
    """Chaos run (short, seed 11): failures separated by successes added up to an open
    breaker, because a success trusted a state read before the failure and skipped the
    reset."""
    policy = Policy(failures=2, probe_s=10)
    breaker = MetronomeBreaker(CircuitBreaker(fakeredis.FakeRedis(), KEYS, "metronome", policy))
    breaker.gate()  # read: closed, no failure
    for account in ("A", "B", "C"):
        assert breaker.failed("500", account=account) == "counted"
        assert breaker.succeeded() is False  # the next sync worked: the count starts again
    assert breaker.shared.state().failures == 0
