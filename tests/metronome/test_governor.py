"""The rate governor: its GCRA and AIMD maths on a pinned clock (fakeredis with Lua), then its
behaviour on a real Redis: processes share one budget, a 429 storm slows everyone, the rate
recovers once the API stops refusing, and Redis away makes calls wait, never go ungoverned.

No assertion is about wall time: they read the slots the limiter handed out (its own clock)
and the rate it reports, with bounds derived from its maths.
"""

from __future__ import annotations

import itertools
import multiprocessing
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fakeredis
import pytest
import redis

from tests.support.metronome_emulator import TOKEN
from tests.support.waiting import wait_until
from worker.metronome import MetronomeGateway
from worker.metronome.governor import (
    GovernorUnavailable,
    Grant,
    Policy,
    RateGovernor,
    governor_state,
)
from worker.sandbox.metronome import MetronomeEmulator, MetronomeFaults
from worker.state.keys import Keys
from worker.state.server import RedisServer

KEY = Keys("gov").governor
#: Slots are stored to the microsecond; leave room for float rounding.
EPSILON_MS = 0.2


class PinnedClock:
    """The governor's clock in the maths tests: sleeping moves it, nothing else does."""

    def __init__(self, start_ms: float = 1_000_000.0) -> None:
        self.now_ms = start_ms
        self.slept: list[float] = []

    def now(self) -> float:
        return self.now_ms

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now_ms += seconds * 1000


def pinned(policy: Policy, clock: PinnedClock, client: Any = None) -> RateGovernor:
    return RateGovernor(
        client if client is not None else fakeredis.FakeRedis(),
        KEY,
        policy,
        sleep=clock.sleep,
        server_now_ms=clock.now,
    )


def assert_gcra(slots: list[float], policy: Policy, rate: float) -> None:
    """No window holds more requests than the limiter allows: after the burst tolerance,
    j - i further slots take at least (j - i) intervals."""
    interval = 1000 / rate
    tolerance = policy.burst_s * 1000
    ordered = sorted(slots)
    for i in range(len(ordered)):
        for j in range(i + 1, len(ordered)):
            assert ordered[j] - ordered[i] >= (j - i) * interval - tolerance - EPSILON_MS, (i, j)


# --- the maths, on a pinned clock ---------------------------------------------------------


def test_requests_are_paced_at_the_ceiling_after_a_small_burst() -> None:
    policy = Policy(max_rps=10, burst_s=0.1)
    clock = PinnedClock()
    governor = pinned(policy, clock)
    start = clock.now_ms
    slots = [governor.acquire().slot_ms for _ in range(12)]
    # 100 ms of tolerance at 100 ms per request: two go at once, then one every 100 ms.
    assert slots[:2] == [start, start]
    assert slots[2:] == pytest.approx([start + 100 * n for n in range(1, 11)], abs=EPSILON_MS)
    assert_gcra(slots, policy, 10)
    state = governor.state()
    assert state is not None and state.allowed_rps == 10 and not state.throttled


def test_a_client_429_lowers_the_rate_and_holds_everyone_for_the_time_asked() -> None:
    policy = Policy(max_rps=10)
    clock = PinnedClock()
    client = fakeredis.FakeRedis()
    first, other = pinned(policy, clock, client), pinned(policy, clock, client)
    grant = first.acquire()
    first.refused(grant, retry_after_s=2.0, limit_type="client")
    state = other.state()
    assert state is not None
    assert state.allowed_rps == pytest.approx(10 * policy.decrease)
    assert state.held_s == pytest.approx(2.0) and state.throttled
    assert state.refused == {"client": 1} and state.last_limit_type == "client"
    # The other "process" waits out the hold, then goes at the lowered rate, not in a burst.
    grants = [other.acquire() for _ in range(5)]
    assert grants[0].slot_ms == pytest.approx(grant.slot_ms + 2000, abs=EPSILON_MS)
    for before, after in itertools.pairwise(grants):
        # Slower than the ceiling (one interval at the rate of the moment, which is climbing
        # back by increase_share x max per second).
        assert before.rate < 10
        assert after.slot_ms - before.slot_ms == pytest.approx(1000 / before.rate, abs=EPSILON_MS)


def test_429s_of_requests_reserved_before_the_decrease_do_not_decrease_again() -> None:
    policy = Policy(max_rps=10)
    clock = PinnedClock()
    governor = pinned(policy, clock)
    in_flight = [governor.acquire() for _ in range(3)]  # sent at the old rate
    for grant in in_flight:
        governor.refused(grant, retry_after_s=0.0, limit_type="client")
    state = governor.state()
    assert state is not None and state.allowed_rps == pytest.approx(10 * policy.decrease)
    # A request reserved after the decrease and refused again: a second decrease.
    clock.now_ms += 1
    governor.refused(governor.acquire(), retry_after_s=0.0, limit_type="client")
    state = governor.state()
    assert state is not None
    assert state.allowed_rps == pytest.approx(10 * policy.decrease**2, rel=0.01)
    assert state.refused == {"client": 4}


def test_a_slot_reserved_before_a_decrease_is_given_back_and_taken_again() -> None:
    policy = Policy(max_rps=10, burst_s=0.0)
    clock = PinnedClock()
    governor = pinned(policy, clock)
    sibling = governor.acquire()  # another thread's request, answered 429 below
    refused_during_sleep: list[float] = []

    def sleep(seconds: float) -> None:
        clock.sleep(seconds)
        if not refused_during_sleep:  # while our thread sleeps towards its slot
            refused_during_sleep.append(clock.now_ms)
            governor.refused(sibling, retry_after_s=0.5, limit_type="client")

    governor._sleep = sleep
    grant = governor.acquire()
    state = governor.state()
    assert state is not None
    # Our first slot was reserved at the old rate: it was given back, and the one taken
    # instead lies after the hold and was reserved after the decrease.
    assert grant.reserved_ms >= refused_during_sleep[0]
    assert grant.slot_ms >= state.hold_until_ms - EPSILON_MS
    assert grant.rate == pytest.approx(10 * policy.decrease)


def test_slots_given_back_after_a_decrease_are_free_for_the_requests_after_it() -> None:
    policy = Policy(max_rps=10, burst_s=0.0, horizon_s=0.5)
    clock = PinnedClock()
    governor = pinned(policy, clock)
    start = clock.now_ms
    # Six threads hold slots up to the horizon (0, 100, ... 500 ms) when one request is
    # answered 429: every one of those slots was paced at the old rate and is given back.
    governor._sleep = lambda _seconds: None  # the six reserve at once, nobody sleeps
    reserved = [governor.acquire() for _ in range(6)]
    governor._sleep = clock.sleep
    assert [g.slot_ms - start for g in reserved] == pytest.approx(
        [0, 100, 200, 300, 400, 500], abs=EPSILON_MS
    )
    clock.now_ms += 1
    governor.refused(reserved[0], retry_after_s=0.0, limit_type="client")
    # The next request goes now, at the lowered rate: not behind the six void slots (which
    # cost half a second of the budget per decrease before).
    taken = [governor.acquire() for _ in range(3)]
    assert taken[0].slot_ms == pytest.approx(start + 1, abs=EPSILON_MS)
    interval = 1000 / (10 * policy.decrease)
    assert taken[2].slot_ms - taken[0].slot_ms == pytest.approx(2 * interval, rel=0.02)


def test_the_rate_never_falls_below_its_floor_and_climbs_back_linearly() -> None:
    policy = Policy(max_rps=10)
    clock = PinnedClock()
    governor = pinned(policy, clock)
    for _ in range(30):
        governor.refused(governor.acquire(), retry_after_s=0.0, limit_type="client")
    state = governor.state()
    floor = 10 * policy.floor_share
    assert state is not None and state.allowed_rps == pytest.approx(floor)
    clock.now_ms += 10_000  # ten quiet seconds: + 10 x increase_share x max
    state = governor.state()
    assert state is not None
    assert state.allowed_rps == pytest.approx(floor + 10 * 10 * policy.increase_share, rel=0.01)
    clock.now_ms += 1_000_000
    state = governor.state()
    assert state is not None and state.allowed_rps == 10 and not state.throttled


def test_a_customer_429_makes_only_its_caller_wait() -> None:
    policy = Policy(max_rps=10)
    clock = PinnedClock()
    governor = pinned(policy, clock)
    grant = governor.acquire()
    governor.refused(grant, retry_after_s=1.5, limit_type="customer")
    assert clock.slept[-1] == 1.5
    state = governor.state()
    assert state is not None
    assert state.allowed_rps == 10 and state.held_s == 0 and state.refused == {"customer": 1}


def test_a_429_without_retry_after_holds_for_the_default() -> None:
    policy = Policy(max_rps=10, hold_without_retry_after_s=1.0)
    clock = PinnedClock()
    governor = pinned(policy, clock)
    governor.refused(governor.acquire(), retry_after_s=None, limit_type=None)
    state = governor.state()
    assert state is not None and state.held_s == pytest.approx(1.0)
    assert state.refused == {"unknown": 1}


def test_slots_are_reserved_at_most_a_horizon_ahead() -> None:
    policy = Policy(max_rps=10, burst_s=0.0, horizon_s=0.5)
    clock = PinnedClock()
    governor = pinned(policy, clock)
    replies = [governor._run("acquire") for _ in range(10)]  # nobody sleeps: a queue forms
    granted = [reply for reply in replies if reply[0] == 1]
    # Slots at 0, 100, ..., 500 ms are within the horizon; the rest is not reserved.
    assert len(granted) == 6
    assert all(reply[1] > 500 for reply in replies[6:])


def test_state_is_none_before_the_first_request() -> None:
    assert governor_state(fakeredis.FakeRedis(), Keys("gov")) is None


# --- on a real Redis -----------------------------------------------------------------------


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    running = RedisServer(data_dir=tmp_path / "redis").start()
    try:
        yield running
    finally:
        running.stop()


def _acquire_slots(url: str, count: int, max_rps: float, out: Any) -> None:
    """A second process: its own Redis connection and governor on the same key."""
    governor = RateGovernor(redis.Redis.from_url(url), KEY, Policy(max_rps=max_rps))
    out.put([governor.acquire().slot_ms for _ in range(count)])


def test_two_processes_share_one_limit(server: RedisServer) -> None:
    policy = Policy(max_rps=100)
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    processes = [
        context.Process(target=_acquire_slots, args=(server.url, 40, policy.max_rps, results))
        for _ in range(2)
    ]
    for process in processes:
        process.start()
    slots_a, slots_b = results.get(timeout=120), results.get(timeout=120)
    for process in processes:
        process.join(timeout=30)
    both = slots_a + slots_b
    assert len(both) == 80
    # Together they kept to one limit: the 80 slots span what 80 requests at 100 req/s take
    # (minus the burst); two separate limits would have fit them in half of that.
    assert_gcra(both, policy, policy.max_rps)
    assert max(both) - min(both) >= (80 - 1) * 10 - policy.burst_s * 1000 - EPSILON_MS


def test_a_429_storm_slows_every_process_and_the_rate_recovers_after_it(
    server: RedisServer,
) -> None:
    # Recovery at 40 % of the ceiling per second (20x the default) keeps the test short; the
    # maths is the same.
    policy = Policy(max_rps=50, increase_share=0.4)
    storm = RateGovernor(redis.Redis.from_url(server.url), KEY, policy)
    bystander = RateGovernor(redis.Redis.from_url(server.url), KEY, policy)
    for _ in range(20):
        storm.refused(storm.acquire(), retry_after_s=0.05, limit_type="client")
    state = bystander.state()
    assert state is not None and state.throttled and state.refused == {"client": 20}
    # Each refusal came after the previous decrease: the rate went down to the floor.
    assert state.allowed_rps < policy.max_rps
    # The bystander waits out the hold, then goes at the lowered rate, one interval apart.
    grants = [bystander.acquire() for _ in range(3)]
    assert grants[0].slot_ms >= state.hold_until_ms - EPSILON_MS
    assert grants[0].rate < policy.max_rps
    for before, after in itertools.pairwise(grants):
        assert after.slot_ms - before.slot_ms >= 1000 / before.rate - EPSILON_MS
    # The API stops refusing: the rate climbs back to the ceiling while requests flow.
    seen = [state.allowed_rps]
    for _ in range(10_000):
        grant = bystander.acquire()
        seen.append(grant.rate)
        if grant.rate >= policy.max_rps:
            break
    assert seen[-1] == policy.max_rps
    assert seen == sorted(seen)  # it only climbed
    final = bystander.state()
    assert final is not None and not final.throttled


def test_a_429_costs_one_governed_resend_never_a_reread(server: RedisServer) -> None:
    limit = 10.0
    with MetronomeEmulator(token=TOKEN, faults=MetronomeFaults(rate_limit_rps=limit)) as api:
        # The ceiling is set 3x too high: the API's 429s must bring the shared rate down.
        governor = RateGovernor(redis.Redis.from_url(server.url), KEY, Policy(max_rps=30))
        gateway = MetronomeGateway(TOKEN, api.url, governor=governor)
        try:
            ids = [gateway.create_customer({"name": f"c{n}"}, key=f"create-{n}") for n in range(40)]
        finally:
            gateway.close()
        counts = api.request_counts()
    assert len(set(ids)) == 40
    # Every create went through once; each 429 was the same request sent again (same key:
    # a second create would have made a 41st customer or a 409), nothing was re-read.
    assert counts.get("POST /v1/customers 200") == 40
    assert set(counts) <= {"POST /v1/customers 200", "POST /v1/customers 429"}
    # Sent one at a time at up to 30 req/s against a limit of 10 (and a 10-request burst),
    # some were refused; each refusal lowered the shared rate.
    state = governor.state()
    assert state is not None
    assert state.refused["client"] == counts["POST /v1/customers 429"] > 0
    assert state.allowed_rps < 30


def test_calls_wait_while_redis_is_away_and_go_once_it_is_back(
    server: RedisServer, tmp_path: Path
) -> None:
    governor = RateGovernor(
        redis.Redis.from_url(server.url, socket_timeout=2, socket_connect_timeout=1),
        KEY,
        Policy(max_rps=50, redis_wait_s=120),
    )
    governor.acquire()
    port, data_dir = server.port, server.data_dir
    server.stop()
    granted: list[Grant] = []
    failed: list[BaseException] = []

    def call() -> None:
        try:
            granted.append(governor.acquire())
        except BaseException as exc:
            failed.append(exc)

    waiter = threading.Thread(target=call)
    waiter.start()
    wait_until(lambda: governor.redis_errors >= 2, timeout_s=60)
    assert not granted and not failed  # waiting, not sent
    back = RedisServer(data_dir, port=port).start()
    try:
        waiter.join(timeout=120)
        assert not waiter.is_alive()
        assert failed == [] and len(granted) == 1
    finally:
        back.stop()


def test_calls_give_up_as_a_redis_error_when_redis_stays_away(server: RedisServer) -> None:
    governor = RateGovernor(
        redis.Redis.from_url(server.url, socket_timeout=2, socket_connect_timeout=1),
        KEY,
        Policy(max_rps=50, redis_wait_s=0.3),
    )
    server.stop()
    with pytest.raises(GovernorUnavailable) as caught:
        governor.acquire()
    # A Redis error: the sync treats it as the outage it is (the task retries later).
    assert isinstance(caught.value, redis.ConnectionError)
    assert governor.redis_errors >= 1
