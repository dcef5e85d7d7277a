"""Each expected failure reads as one line naming the setting, with the right exit code.

These build the exceptions the libraries really raise; tests/integration/test_failures.py
drives the real commands into the same failures.
"""

from __future__ import annotations

from pathlib import Path

import kombu.exceptions
import pytest
import redis
import requests
from simple_salesforce.exceptions import (
    SalesforceAuthenticationFailed,
    SalesforceExpiredSession,
    SalesforceRefusedRequest,
)

from mappings import MappingFileError
from mappings.ids import InvalidSalesforceId
from worker.commands.errors import EXIT_CONFIG, EXIT_FAILED, UsageError, explain
from worker.metronome.errors import ConnectionFailedError, PermanentError, ServerError
from worker.salesforce.source import QuotaReached
from worker.settings import Settings, load_settings
from worker.state.server import NoCrmsyncRunning

SOAP = {
    "salesforce_username": "ops@acme.test",
    "salesforce_password": "hunter2-password",
    "salesforce_security_token": "tok-123",
    "metronome_bearer_token": "mtr-secret",
    "redis_url": "redis://:redis-secret@redis.internal:6379/0",
}


@pytest.fixture
def settings() -> Settings:
    return load_settings(**SOAP)


def _chained(outer: BaseException, inner: BaseException) -> BaseException:
    try:
        try:
            raise inner
        except BaseException as exc:
            raise outer from exc
    except BaseException as caught:
        return caught


@pytest.mark.parametrize(
    ("exc", "code", "words"),
    [
        (
            SalesforceAuthenticationFailed("INVALID_LOGIN", "Invalid username, password"),
            EXIT_CONFIG,
            ["refused the login", "INVALID_LOGIN", "SALESFORCE_PASSWORD", "ops@acme.test"],
        ),
        (
            SalesforceExpiredSession("https://x/query", 401, "query", b"INVALID_SESSION_ID"),
            EXIT_FAILED,
            ["INVALID_SESSION_ID", "crmsync check"],
        ),
        (
            SalesforceRefusedRequest(
                "https://x/q",
                403,
                "q",
                [{"errorCode": "REQUEST_LIMIT_EXCEEDED"}],  # type: ignore[arg-type]
            ),
            EXIT_FAILED,
            ["quota is exhausted"],
        ),
        (QuotaReached("usage 90/100 reached 80%"), EXIT_FAILED, ["SALESFORCE_QUOTA_FRACTION"]),
        (
            PermanentError("Metronome listKeys answered 401", status=401),
            EXIT_CONFIG,
            ["METRONOME_BEARER_TOKEN", "401", "https://api.metronome.com"],
        ),
        (
            PermanentError("forbidden", status=403),
            EXIT_CONFIG,
            ["403", "METRONOME_BEARER_TOKEN"],
        ),
        (
            ConnectionFailedError("Metronome listKeys: no answer (APIConnectionError)"),
            EXIT_FAILED,
            ["cannot reach Metronome", "METRONOME_BASE_URL", "after 5 attempts"],
        ),
        (ServerError("Metronome answered 503", status=503), EXIT_FAILED, ["503"]),
        (
            redis.ConnectionError("Error 111 connecting to redis.internal:6379. Refused."),
            EXIT_FAILED,
            ["cannot reach Redis", "redis://***@redis.internal:6379/0", "REDIS_URL", "Refused"],
        ),
        (
            redis.AuthenticationError("WRONGPASS invalid username-password pair"),
            EXIT_CONFIG,
            ["refused the credentials", "REDIS_PASSWORD"],
        ),
        (InvalidSalesforceId("not a Salesforce id: 'x'"), EXIT_CONFIG, ["15- or 18-character"]),
        (UsageError("unknown kind 'nope'; known kinds: a, b"), EXIT_CONFIG, ["known kinds"]),
        (NoCrmsyncRunning(Path("/data")), EXIT_FAILED, ["crmsync run", "REDIS_URL"]),
        (
            MappingFileError("m.yaml", [("nmae", 3, "unknown key")]),
            EXIT_CONFIG,
            ["m.yaml:3: key nmae"],
        ),
    ],
)
def test_expected_failures_are_explained(
    settings: Settings, exc: BaseException, code: int, words: list[str]
) -> None:
    failure = explain(exc, settings)
    assert failure is not None
    assert failure.exit_code == code
    for word in words:
        assert word in failure.message
    for secret in ("hunter2-password", "tok-123", "mtr-secret", "redis-secret"):
        assert secret not in failure.message


def test_the_cause_behind_a_wrapper_is_found(settings: Settings) -> None:
    """kombu re-raises Redis' errors as its own: the auth refusal must still be named."""
    wrapped = _chained(
        kombu.exceptions.OperationalError("boom"),
        redis.AuthenticationError("invalid password"),
    )
    failure = explain(wrapped, settings)
    assert failure is not None and "refused the credentials" in failure.message


def test_kombu_alone_still_means_redis(settings: Settings) -> None:
    failure = explain(kombu.exceptions.OperationalError("Error 111 connecting"), settings)
    assert failure is not None and "cannot reach Redis" in failure.message


def test_salesforce_unreachable_names_the_host_and_setting(settings: Settings) -> None:
    request = requests.Request("POST", "https://login.salesforce.com/services/Soap/u/59.0")
    exc = requests.ConnectionError(
        "HTTPSConnectionPool(host='login.salesforce.com', port=443): Max retries exceeded "
        "(Caused by NewConnectionError(': Failed to establish a new connection: [Errno 111] "
        "Connection refused'))",
        request=request.prepare(),
    )
    failure = explain(exc, settings)
    assert failure is not None
    assert failure.message == (
        "crmsync: cannot reach Salesforce at https://login.salesforce.com "
        "(SALESFORCE_DOMAIN=login): Connection refused; check the network and the setting"
    )


def test_a_bug_is_not_explained_away(settings: Settings) -> None:
    assert explain(KeyError("oops"), settings) is None
    assert explain(ZeroDivisionError(), settings) is None


def test_every_message_is_one_line(settings: Settings) -> None:
    for exc in (
        redis.ConnectionError("Error 111 connecting to h:1.\nConnection refused."),
        PermanentError("line one\nline two", status=400),
    ):
        failure = explain(exc, settings)
        assert failure is not None
        assert "\n" not in failure.message, failure.message
