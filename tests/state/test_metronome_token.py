"""The shared record of Metronome refusing the token (worker/state/metronome_token.py), on
fakeredis with Lua. Time passing is the record's ``next_at`` moved into the past, never a
sleep."""

from __future__ import annotations

import random

import fakeredis
import pytest

from worker.state.keys import Keys
from worker.state.metronome_token import GO, OTHER, PROBE, WAIT, TokenRefusals

KEYS = Keys("tok")
MINE = "aaaaaaaaaaaa https://api.metronome.com"
ROTATED = "bbbbbbbbbbbb https://api.metronome.com"


@pytest.fixture
def client() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis()


def record(client: fakeredis.FakeRedis, *, max_wait_s: float = 60.0) -> TokenRefusals:
    return TokenRefusals(client, KEYS, max_wait_s=max_wait_s, rng=random.Random(7))


def refuse(
    refusals: TokenRefusals, *, identity: str = MINE, probe: bool = False
) -> tuple[int, float, bool]:
    return refusals.refused(
        identity,
        fingerprint=identity[:12],
        base_url=identity.split()[1],
        status=401,
        reason="Unauthorized on list",
        probe=probe,
    )


def time_passes(client: fakeredis.FakeRedis) -> None:
    client.hset(KEYS.metronome_token, "next_at", "0")


def test_nothing_refused_lets_every_caller_go(client: fakeredis.FakeRedis) -> None:
    refusals = record(client)
    assert refusals.admit(MINE).decision == GO
    state = refusals.state()
    assert not state.refusing and state.line() == "" and state.as_dict()["since"] is None


def test_the_first_refusal_starts_an_episode_the_status_line_names_the_setting(
    client: fakeredis.FakeRedis,
) -> None:
    refusals = record(client)
    count, wait, started = refuse(refusals)
    assert (count, started) == (1, True)
    assert 0.75 <= wait <= 1.25
    state = refusals.state()
    assert state.refusing and state.identity == MINE and state.fingerprint == "aaaaaaaaaaaa"
    line = state.line()
    assert line.startswith("Metronome refuses the token since ")
    assert "401 Unauthorized on list" in line and "METRONOME_BEARER_TOKEN" in line
    assert "sha256:aaaaaaaaaaaa at https://api.metronome.com" in line
    assert "parked, not dead-lettered" in line
    assert client.ttl(KEYS.metronome_token) >= 86_000  # kept while it can matter


def test_calls_already_on_the_wire_do_not_count_only_refused_probes_do(
    client: fakeredis.FakeRedis,
) -> None:
    refusals = record(client, max_wait_s=8.0)
    refuse(refusals)
    since = refusals.state().since
    # Twenty syncs were mid-call when the token was revoked: still one refusal.
    for _ in range(20):
        count, _wait, started = refuse(refusals)
        assert (count, started) == (1, False)
    waits = [refuse(refusals, probe=True)[1] for _ in range(5)]
    for wait, nominal in zip(waits, [2, 4, 8, 8, 8], strict=True):
        assert nominal * 0.75 <= wait <= nominal * 1.25
    state = refusals.state()
    assert state.refusals == 6 and state.since == since  # one episode throughout


def test_one_probe_per_interval_the_turn_is_held_against_other_processes(
    client: fakeredis.FakeRedis,
) -> None:
    worker_a, worker_b = record(client), record(client)
    refuse(worker_a)
    waiting = worker_b.admit(MINE)
    assert waiting.decision == WAIT and waiting.wait_s > 0 and not waiting.go
    time_passes(client)
    assert worker_a.admit(MINE).decision == PROBE
    assert worker_b.admit(MINE).decision == WAIT  # the turn is held: one probe at a time


def test_another_token_is_tried_at_once(client: fakeredis.FakeRedis) -> None:
    refusals = record(client)
    refuse(refusals)
    rotated = refusals.admit(ROTATED)
    assert rotated.decision == OTHER and rotated.go
    assert refusals.admit(MINE).decision == WAIT  # the refused one still waits


def test_a_call_that_got_through_clears_only_when_it_proves_the_token(
    client: fakeredis.FakeRedis,
) -> None:
    refusals = record(client)
    refuse(refusals)
    # A call of the refused token sent before the refusal was recorded proves nothing.
    assert refusals.accepted(MINE, probe=False) is False
    assert refusals.state().refusing
    assert refusals.accepted(MINE, probe=True) is True
    assert not refusals.state().refusing and refusals.admit(MINE).decision == GO
    refuse(refusals)
    assert refusals.accepted(ROTATED, probe=False) is True  # another token works: over
    assert refusals.accepted(MINE, probe=True) is False  # nothing left to clear


def test_a_refusal_of_another_token_starts_a_new_episode(client: fakeredis.FakeRedis) -> None:
    refusals = record(client)
    refuse(refusals)
    refuse(refusals, probe=True)
    count, _wait, started = refuse(refusals, identity=ROTATED)
    assert (count, started) == (1, True)
    state = refusals.state()
    assert state.identity == ROTATED and state.fingerprint == ROTATED[:12]
    assert refusals.admit(MINE).decision == OTHER


def test_an_operator_can_ask_for_a_probe_now(client: fakeredis.FakeRedis) -> None:
    refusals = record(client, max_wait_s=900.0)
    assert refusals.probe_now() is False and not client.exists(KEYS.metronome_token)
    refuse(refusals)
    refuse(refusals, probe=True)
    assert refusals.admit(MINE).decision == WAIT
    assert refusals.probe_now() is True  # `crmsync parked retry-now`
    assert refusals.admit(MINE).decision == PROBE
