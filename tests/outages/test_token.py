"""The token gate (worker/outages/token.py): what a process does when Metronome refuses its
bearer token -- the real gateway against the emulator, the shared record on fakeredis.

Several "processes" are several MetronomeToken objects on one Redis (each has its own cache
and its own one-line announcement, as a process does).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator

import fakeredis
import pytest

from tests.support.metronome_emulator import TOKEN
from worker.metronome import MetronomeGateway
from worker.metronome.errors import TokenRefusedError
from worker.outages.token import MetronomeToken, token_fingerprint
from worker.sandbox.metronome import MetronomeEmulator
from worker.state.keys import Keys
from worker.state.metronome_token import PROBE, WAIT, TokenRefusals

KEYS = Keys("gate")
WRONG = "revoked-token-value-0123"


@pytest.fixture(scope="module")
def api() -> Iterator[MetronomeEmulator]:
    with MetronomeEmulator(token=TOKEN) as emulator:
        yield emulator


@pytest.fixture
def client() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis()


def process(
    client: fakeredis.FakeRedis, url: str, token: str = WRONG
) -> tuple[MetronomeToken, MetronomeGateway]:
    """One process's token gate and gateway, wired as worker/context.py wires them."""
    refusals = TokenRefusals(client, KEYS, max_wait_s=60.0, rng=random.Random(3))
    gate = MetronomeToken(refusals, fingerprint=token_fingerprint(token), base_url=url)
    gateway = MetronomeGateway(
        token,
        url,
        timeout_s=5.0,
        max_attempts=3,
        retry_immediately=True,
        gate=gate.gate,
        on_refused=gate.refused,
    )
    return gate, gateway


def time_passes(client: fakeredis.FakeRedis) -> None:
    client.hset(KEYS.metronome_token, "next_at", "0")


def test_the_fingerprint_is_a_short_sha256_prefix_never_the_token() -> None:
    fingerprint = token_fingerprint(WRONG)
    assert len(fingerprint) == 12 and WRONG not in fingerprint
    assert fingerprint == token_fingerprint("revoked-token-value-0123")
    assert fingerprint != token_fingerprint(TOKEN)


def test_the_first_401_stops_every_process_from_asking(
    api: MetronomeEmulator, client: fakeredis.FakeRedis
) -> None:
    api.reset()
    first, first_gateway = process(client, api.url)
    second, second_gateway = process(client, api.url)
    try:
        with pytest.raises(TokenRefusedError) as refused:
            first_gateway.list_customers()
        assert refused.value.sent and refused.value.status == 401
        assert first_gateway.calls == 1  # a 401 is never retried
        # Both processes now stop before sending: no request reaches Metronome.
        for gateway in (first_gateway, second_gateway, first_gateway):
            with pytest.raises(TokenRefusedError) as unsent:
                gateway.list_customers()
            assert not unsent.value.sent
            assert "METRONOME_BEARER_TOKEN" in str(unsent.value)
        assert api.total_requests() == 1
        assert second.admit().decision == WAIT and first.admit().decision == WAIT
    finally:
        first_gateway.close()
        second_gateway.close()


def test_one_line_per_process_naming_the_setting_and_never_the_token(
    api: MetronomeEmulator, client: fakeredis.FakeRedis, caplog: pytest.LogCaptureFixture
) -> None:
    api.reset()
    caplog.set_level(logging.INFO, logger="worker.outages.token")
    first, first_gateway = process(client, api.url)
    second, second_gateway = process(client, api.url)
    try:
        for _ in range(10):  # ten accounts' syncs in each process
            for gate, gateway in ((first, first_gateway), (second, second_gateway)):
                if gate.admit().go:
                    with pytest.raises(TokenRefusedError):
                        gateway.list_customers()
    finally:
        first_gateway.close()
        second_gateway.close()
    lines = [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and "METRONOME_BEARER_TOKEN" in r.getMessage()
    ]
    assert len(lines) == 2, lines  # one per process
    for line in lines:
        assert line.startswith("Metronome refuses the token since ")
        assert "METRONOME_BEARER_TOKEN" in line and "401" in line
        assert f"sha256:{token_fingerprint(WRONG)}" in line
        assert WRONG not in line
    assert api.total_requests() == 1


def test_a_probe_per_interval_and_when_it_gets_through_the_refusal_ends(
    api: MetronomeEmulator, client: fakeredis.FakeRedis
) -> None:
    api.reset()
    gate, gateway = process(client, api.url)
    other, other_gateway = process(client, api.url)
    try:
        with pytest.raises(TokenRefusedError):
            gateway.list_customers()
        time_passes(client)
        admission = gate.admit()
        assert admission.decision == PROBE
        assert other.admit().decision == WAIT  # one probe across the processes
        with gate.probing(admission), pytest.raises(TokenRefusedError) as refused:
            gateway.list_customers()  # the probe is sent, and refused again
        assert refused.value.sent
        state = gate.state()
        assert state.refusals == 2 and state.next_in_s > 1.0  # the wait doubled
        assert api.total_requests() == 2
        # Metronome accepts the token again (re-enabled): the next probe ends the refusal.
        api.set_token(WRONG)
        time_passes(client)
        admission = gate.admit()
        with gate.probing(admission):
            assert gateway.list_customers() == []
            assert gate.accepted() is True
        assert not gate.state().refusing
        assert other.admit().go  # every process calls again
        assert other_gateway.list_customers() == []
    finally:
        api.set_token(TOKEN)
        gateway.close()
        other_gateway.close()


def test_a_process_with_another_token_tries_at_once_and_ends_the_refusal(
    api: MetronomeEmulator, client: fakeredis.FakeRedis
) -> None:
    api.reset()
    old, old_gateway = process(client, api.url)
    new, new_gateway = process(client, api.url, token=TOKEN)  # rotated and restarted
    try:
        with pytest.raises(TokenRefusedError):
            old_gateway.list_customers()
        assert new.admit().go
        assert new_gateway.list_customers() == []  # not held back by the old token's refusal
        assert new.accepted() is True
        assert old.admit().go  # the refusal is over for everyone
    finally:
        old_gateway.close()
        new_gateway.close()


def test_a_call_sent_before_the_refusal_was_known_does_not_end_it(
    api: MetronomeEmulator, client: fakeredis.FakeRedis
) -> None:
    api.reset()
    gate, gateway = process(client, api.url)
    try:
        with pytest.raises(TokenRefusedError):
            gateway.list_customers()
        assert gate.accepted() is False  # not the probe, same token: proves nothing
        assert gate.state().refusing
    finally:
        gateway.close()
