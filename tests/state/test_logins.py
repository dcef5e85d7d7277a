"""The shared login-refusal count (worker/state/logins.py) and the gate in front of every
Salesforce login (worker/salesforce/logins.py), against a real Redis."""

from __future__ import annotations

import pickle
import random
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from pydantic import SecretStr
from simple_salesforce.exceptions import SalesforceAuthenticationFailed

from worker.salesforce.logins import LoginDeferred, LoginGate, LoginRefused, login_fingerprint
from worker.settings import Settings
from worker.state.keys import Keys
from worker.state.logins import LoginBackoff
from worker.state.server import RedisServer


@pytest.fixture
def client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(redis_server.url)
    yield connection
    connection.close()


def backoff(client: redis.Redis, *, max_wait_s: float = 60.0, base: float = 1.0) -> LoginBackoff:
    return LoginBackoff(
        client, Keys("t"), max_wait_s=max_wait_s, base_wait_s=base, rng=random.Random(1)
    )


def soap_settings(password: str = "pw") -> Settings:  # noqa: S107 - a test value
    return Settings(
        salesforce_username="u@example.com",
        salesforce_password=SecretStr(password),
        salesforce_security_token=SecretStr("tok"),
    )


def test_consecutive_refusals_double_the_wait_up_to_the_maximum(client: redis.Redis) -> None:
    count = backoff(client, max_wait_s=8.0)
    waits = [count.refused("fp", "INVALID_LOGIN")[1] for _ in range(6)]
    nominal = [1, 2, 4, 8, 8, 8]
    for wait, expected in zip(waits, nominal, strict=True):
        assert expected * 0.75 <= wait <= expected * 1.25
    state = count.state()
    assert state.failures == 6
    assert state.line().startswith("Salesforce refuses the login since ")
    assert "INVALID_LOGIN" in state.line()


def test_a_login_waits_while_refusals_back_off_and_one_process_takes_the_turn(
    client: redis.Redis,
) -> None:
    first, second = backoff(client, base=0.2), backoff(client, base=0.2)
    assert first.admit("fp") == (0.0, 0)  # nothing refused: no wait, nothing held
    first.refused("fp", "refused")
    wait, failures = second.admit("fp")
    assert failures == 1
    assert 0 < wait <= 0.25
    deadline = time.monotonic() + 2
    while second.admit("fp")[0] > 0:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    # The one let through holds the turn: the other process waits for its outcome.
    assert first.admit("fp")[0] > 0


def test_a_working_session_or_new_login_settings_clear_the_refusals(client: redis.Redis) -> None:
    count = backoff(client)
    count.refused("fp", "refused")
    assert count.admit("other-settings") == (0.0, 1)
    assert not count.state().refusing
    count.refused("fp", "refused")
    count.accepted()
    assert count.state().line() == ""
    assert count.admit("fp") == (0.0, 0)


def test_the_refusal_count_expires_by_itself(client: redis.Redis) -> None:
    count = backoff(client, max_wait_s=900.0)
    count.refused("fp", "refused")
    assert 86_400 <= client.ttl("t:salesforce:login-refusals") <= 86_400 + 5


class FakeSalesforce:
    """What the gate touches on a simple-salesforce client."""

    def __init__(self, relogin: Any) -> None:
        import requests

        self.session = requests.Session()
        self._salesforce_login_partial = relogin


def test_a_refused_login_names_the_settings_and_pickles(client: redis.Redis) -> None:
    gate = LoginGate(soap_settings(), backoff(client))

    def refused() -> FakeSalesforce:
        raise SalesforceAuthenticationFailed("INVALID_LOGIN", "Invalid username or password")

    with pytest.raises(LoginRefused) as caught:
        gate.login(refused)  # type: ignore[arg-type]
    message = str(caught.value)
    assert message == (
        "Salesforce refused the login (INVALID_LOGIN: Invalid username or password): check "
        "SALESFORCE_USERNAME, SALESFORCE_PASSWORD, SALESFORCE_SECURITY_TOKEN, SALESFORCE_DOMAIN"
    )
    assert "{content}" not in message
    copy = pickle.loads(pickle.dumps(caught.value))  # noqa: S301 - our own bytes
    assert isinstance(copy, LoginRefused)
    assert str(copy) == message
    assert copy.wait_s == caught.value.wait_s > 0
    with pytest.raises(LoginDeferred) as deferred:
        gate.login(refused)  # type: ignore[arg-type]
    assert "Salesforce refuses the login since" in str(deferred.value)
    assert pickle.loads(pickle.dumps(deferred.value)).wait_s == deferred.value.wait_s  # noqa: S301


def test_a_refused_session_counts_once_per_login(client: redis.Redis) -> None:
    count = backoff(client, base=60.0)  # longer than the re-login waits for its turn
    gate = LoginGate(soap_settings(), count)
    logins = []

    def relogin() -> tuple[str, str]:
        logins.append(1)
        return ("session", "instance")

    sf: Any = gate.login(lambda: FakeSalesforce(relogin))  # type: ignore[arg-type,return-value]
    gate.session_refused("Pub/Sub auth.error")
    gate.session_refused("Pub/Sub auth.error")  # the same session, seen by a second stream
    assert count.state().failures == 1
    with pytest.raises(LoginDeferred):
        sf._salesforce_login_partial()  # simple-salesforce's re-login after a 401
    assert logins == []
    client.hset("t:salesforce:login-refusals", "next_at", "0")  # the wait is over
    sf._salesforce_login_partial()
    assert logins == [1]
    assert count.state().failures == 1  # the session refused before was already counted
    gate.accepted()
    assert not count.state().refusing


def test_a_relogin_waits_out_a_short_backoff_instead_of_failing(client: redis.Redis) -> None:
    count = backoff(client, base=0.05)
    gate = LoginGate(soap_settings(), count)
    logins = []

    def relogin() -> tuple[str, str]:
        logins.append(1)
        return ("session", "instance")

    sf: Any = gate.login(lambda: FakeSalesforce(relogin))  # type: ignore[arg-type,return-value]
    gate.session_refused("Pub/Sub auth.error")  # a fresh session refused: counted
    assert count.state().next_in_s > 0
    sf._salesforce_login_partial()  # waits for the turn, then logs in
    assert logins == [1]
    assert count.state().failures == 1


def test_an_expired_session_that_worked_is_not_a_refusal(client: redis.Redis) -> None:
    import requests

    count = backoff(client)
    gate = LoginGate(soap_settings(), count)
    logins = []

    def relogin() -> tuple[str, str]:
        logins.append(1)
        return ("session", "instance")

    sf: Any = gate.login(lambda: FakeSalesforce(relogin))  # type: ignore[arg-type,return-value]
    answered = requests.Response()
    answered.status_code = 200
    answered.url = "https://example.my.salesforce.com/services/data/v60.0/query"
    for hook in sf.session.hooks["response"]:
        hook(answered)  # a query answered: the session worked
    sf._salesforce_login_partial()  # later it expired (401): simple-salesforce logs in again
    assert logins == [1]
    assert not count.state().refusing


def test_new_settings_are_a_new_fingerprint() -> None:
    assert login_fingerprint(soap_settings("a")) != login_fingerprint(soap_settings("b"))
    assert "pw" not in login_fingerprint(soap_settings("pw"))
