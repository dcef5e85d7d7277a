"""What the CLI says when a command fails in a way an operator can cause: one line and a code.

Every ``crmsync`` command runs inside :func:`worker.cli.main`, which hands whatever escaped the
command to :func:`explain`. An *expected* failure -- a wrong setting or mapping, a service that
is down or refuses the credentials, a malformed id -- becomes one line on stderr that says what
failed, with which setting, and what to try. Anything else is a bug and keeps its traceback.
``--debug`` (or ``CRMSYNC_LOG_LEVEL=DEBUG``) prints the traceback of expected failures too.

The matching lives here, by exception type, so a new command gets it without a line of its
own. The exception and its causes (``raise ... from``, and the exception being handled when it
was raised) are searched outermost first: kombu re-raises a Redis ``ConnectionError`` as its
``OperationalError``, simple-salesforce lets ``requests`` errors through, and the answer is in
whichever link we recognise first.

Exit codes (README "Commands")::

    1    a service failed or could not be reached: Redis, Salesforce, Metronome; try again,
         or fix that side
    2    the configuration or the command's input is wrong: change it and run again
    130  interrupted (Ctrl-C)
    141  stdout was closed by the reader (``crmsync status | head``), as for any Unix tool
         killed by SIGPIPE; nothing is printed

Messages never carry a secret: URLs are shown without their password, and third-party text
goes through :func:`worker.logs.scrub`.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from mappings.errors import MappingFileError
from worker.commands.error_text import flat, origin, short, url_path
from worker.logs import redacted_url
from worker.settings import (
    NotConfigured,
    SalesforceAuthMode,
    Settings,
    SettingsError,
    salesforce_auth_mode,
    salesforce_mode_variables,
)

if TYPE_CHECKING:
    from worker.salesforce.trouble import SalesforceTroubleError

EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141


class UsageError(Exception):
    """A command's input is wrong (an unknown choice, a bad combination); the message says
    what is accepted. Commands raise it; the CLI prints it and exits 2."""


class StartupFailure(Exception):
    """An expected reason a command cannot start (a port in use): the message is the one line
    to print, naming what to change; exit 1."""


@dataclass(frozen=True)
class Failure:
    """An expected failure as the operator reads it."""

    message: str
    exit_code: int


def explain(exc: BaseException, settings: Settings | None = None) -> Failure | None:
    """The one-line explanation of ``exc``, or None when it is not an expected failure.

    ``settings`` (when they could be read) let a message name the value in use, e.g. which
    METRONOME_BASE_URL could not be reached.
    """
    for matchers in (_MATCHERS, _FALLBACKS):
        for link in causes(exc):
            for matcher in matchers:
                if not any(name in sys.modules for name in _NEEDS.get(matcher, ("sys",))):
                    continue
                failure = matcher(link, settings)
                if failure is not None:
                    return failure
    return None


def causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and the exceptions behind it, outermost first, each once."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


# -- crmsync's own ---------------------------------------------------------------------------


def _ours(exc: BaseException, settings: Settings | None) -> Failure | None:
    from mappings.ids import InvalidSalesforceId
    from worker.state.server import EmbeddedRedisError, NoCrmsyncRunning

    if isinstance(exc, MappingFileError):
        return Failure(mapping_problems(exc), EXIT_CONFIG)
    if isinstance(exc, SettingsError | NotConfigured):
        return Failure(str(exc), EXIT_CONFIG)
    if isinstance(exc, UsageError):
        return Failure(f"crmsync: {exc}", EXIT_CONFIG)
    if isinstance(exc, NoCrmsyncRunning):
        return Failure(str(exc), EXIT_FAILED)
    if isinstance(exc, InvalidSalesforceId):
        return Failure(
            f"crmsync: {exc}; give the Account's 15- or 18-character id (as in its Salesforce "
            "URL, e.g. 001Hp00000AbCdEIAV)",
            EXIT_CONFIG,
        )
    if isinstance(exc, StartupFailure):
        return Failure(str(exc), EXIT_FAILED)
    if isinstance(exc, EmbeddedRedisError):
        return Failure(
            f"crmsync: the embedded Redis did not start: {exc}; set REDIS_URL to use a Redis "
            "of your own",
            EXIT_FAILED,
        )
    return None


def _ours_downstream(exc: BaseException, settings: Settings | None) -> Failure | None:
    """crmsync's own errors of the jobs and the Salesforce side, each looked for only when its
    module is imported (:func:`_loaded`)."""
    if isinstance(exc, _loaded("worker.salesforce.org_schema", "SchemaMismatch")):
        return Failure(str(exc), EXIT_CONFIG)
    # Their own message says what to change. A deferred login is made of refusals a person
    # must see to: like the refusal.
    to_change = (
        _loaded("tasks.resync", "ResyncRequestError")
        + _loaded("worker.salesforce.logins", "LoginRefused", "LoginDeferred")
        + _loaded("worker.salesforce.errors", "SessionExpired")
    )
    if isinstance(exc, to_change):
        return Failure(f"crmsync: {exc}", EXIT_CONFIG)
    if isinstance(exc, _loaded("worker.salesforce.errors", "QuotaReached")):
        return Failure(
            f"crmsync: {exc}; wait for the rolling 24 h quota to recover, or raise "
            "SALESFORCE_QUOTA_FRACTION",
            EXIT_FAILED,
        )
    if isinstance(exc, _loaded("worker.salesforce.trouble", "SalesforceTroubleError")):
        # A login refused or deferred (kind "login") reaches `crmsync poll` as this error:
        # like LoginRefused and LoginDeferred above, a person must fix the login settings.
        trouble = cast("SalesforceTroubleError", exc)
        config = trouble.kind == "login" or not trouble.transient
        return Failure(f"crmsync: {exc}", EXIT_CONFIG if config else EXIT_FAILED)
    return None


def _loaded(module: str, *names: str) -> tuple[type[BaseException], ...]:
    """The named exception classes of ``module`` when it is imported, else none: a class never
    imported was never raised, and importing it to ask would cost a failing command the
    Salesforce client and Celery (~0.5 s of CPU)."""
    found = sys.modules.get(module)
    return tuple(getattr(found, name) for name in names) if found is not None else ()


def mapping_problems(exc: MappingFileError) -> str:
    """One line per problem, each naming the file, the line and the key."""
    return "\n".join(
        f"crmsync: invalid mapping {exc.source}:{line or '?'}: key {key or '<top>'}: {message}"
        for key, line, message in exc.problems
    )


# -- Redis -----------------------------------------------------------------------------------


def _redis(exc: BaseException, settings: Settings | None) -> Failure | None:
    import redis

    where = _redis_where(settings)
    if isinstance(exc, redis.AuthenticationError) or (
        isinstance(exc, redis.ResponseError)
        and re.match(r"(NOAUTH|WRONGPASS|invalid password)", str(exc))
    ):
        return Failure(
            f"crmsync: Redis{where} refused the credentials ({short(exc)}); set the password "
            "Redis expects in REDIS_PASSWORD (or REDIS_PASSWORD_FILE, or in REDIS_URL)",
            EXIT_CONFIG,
        )
    if isinstance(exc, redis.BusyLoadingError):
        return Failure(
            f"crmsync: Redis{where} is still loading its data; try again in a few seconds",
            EXIT_FAILED,
        )
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
        return Failure(
            f"crmsync: cannot reach Redis{where} (REDIS_URL): {short(exc)}; start Redis or "
            "correct REDIS_URL",
            EXIT_FAILED,
        )
    return None


def _kombu(exc: BaseException, settings: Settings | None) -> Failure | None:
    """kombu's own errors when nothing behind them was recognised (it lost the cause)."""
    from kombu.exceptions import OperationalError

    if isinstance(exc, OperationalError):
        return Failure(
            f"crmsync: cannot reach Redis{_redis_where(settings)} (REDIS_URL): {short(exc)}; "
            "start Redis or correct REDIS_URL",
            EXIT_FAILED,
        )
    return None


def _redis_where(settings: Settings | None) -> str:
    import os

    url = os.environ.get("REDIS_URL") or (settings.redis_url if settings else None)
    return f" at {redacted_url(url)}" if url else ""


# -- Salesforce ------------------------------------------------------------------------------


def _salesforce(exc: BaseException, settings: Settings | None) -> Failure | None:
    from simple_salesforce.exceptions import (
        SalesforceAuthenticationFailed,
        SalesforceError,
        SalesforceExpiredSession,
        SalesforceRefusedRequest,
    )

    if isinstance(exc, SalesforceAuthenticationFailed):
        return Failure(
            f"crmsync: Salesforce refused the login ({exc.code}: {flat(exc.auth_message)}) "
            f"{_login_settings(settings)}; check them (a password change also resets the "
            "security token) and SALESFORCE_DOMAIN (login, test or your My Domain)",
            EXIT_CONFIG,
        )
    if isinstance(exc, SalesforceExpiredSession):
        if settings is not None and _mode(settings) is SalesforceAuthMode.SESSION:
            return Failure(
                "crmsync: the pre-issued Salesforce session (SALESFORCE_SESSION_ID) expired or "
                "was revoked and cannot be renewed: issue a new one, or configure a login mode",
                EXIT_CONFIG,
            )
        return Failure(
            "crmsync: Salesforce refused the session (INVALID_SESSION_ID) and logging in "
            f"again did not help {_login_settings(settings)}; run `crmsync check`",
            EXIT_FAILED,
        )
    if isinstance(exc, SalesforceRefusedRequest):
        code = _salesforce_code(exc.content)
        if code == "REQUEST_LIMIT_EXCEEDED":
            return Failure(
                "crmsync: Salesforce refused the call: the org's daily API quota is exhausted "
                "(REQUEST_LIMIT_EXCEEDED); wait for the rolling 24 h quota to recover",
                EXIT_FAILED,
            )
        return Failure(
            f"crmsync: Salesforce refused the request (403 {code or 'forbidden'}); give the "
            "integration user read access to the fields `crmsync mapping check` lists",
            EXIT_CONFIG,
        )
    if isinstance(exc, SalesforceError):
        from worker.salesforce.trouble import diagnose

        trouble = diagnose(exc)
        if trouble is not None and trouble.kind in ("field", "not_found"):
            return Failure(f"crmsync: {trouble.line}", EXIT_CONFIG)
        code = _salesforce_code(exc.content) or "no error code"
        return Failure(
            f"crmsync: Salesforce answered {exc.status} ({code}) for {url_path(exc.url)}; "
            "run `crmsync check`, or try again later",
            EXIT_FAILED,
        )
    return None


def _salesforce_network(exc: BaseException, settings: Settings | None) -> Failure | None:
    """requests' errors: only the Salesforce client uses requests in a crmsync command."""
    import requests

    if not isinstance(exc, requests.ConnectionError | requests.Timeout):
        return None
    request = getattr(exc, "request", None)
    url = getattr(request, "url", None)
    host = f" at {origin(url)}" if url else ""
    setting = "SALESFORCE_DOMAIN"
    if settings is not None and settings.salesforce_emulator_url:
        setting = "CRMSYNC_SALESFORCE_EMULATOR_URL"
        host = f" at {settings.salesforce_emulator_url}"
    elif settings is not None:
        setting = f"SALESFORCE_DOMAIN={settings.salesforce_domain}"
    return Failure(
        f"crmsync: cannot reach Salesforce{host} ({setting}): {short(exc)}; check the network "
        "and the setting",
        EXIT_FAILED,
    )


def _mode(settings: Settings) -> SalesforceAuthMode | None:
    try:
        return salesforce_auth_mode(settings)
    except ValueError:
        return None


def _login_settings(settings: Settings | None) -> str:
    mode = _mode(settings) if settings is not None else None
    if settings is None or mode is None:
        return "with the SALESFORCE_* settings"
    user = f" as {settings.salesforce_username}" if settings.salesforce_username else ""
    return f"for the {mode.value} login{user} ({', '.join(salesforce_mode_variables(mode))})"


def _salesforce_code(content: object) -> str | None:
    if isinstance(content, list) and content and isinstance(content[0], dict):
        code = content[0].get("errorCode")
        return str(code) if code is not None else None
    return None


# -- Metronome -------------------------------------------------------------------------------


def _metronome(exc: BaseException, settings: Settings | None) -> Failure | None:
    from worker.metronome.errors import ConnectionFailedError, MetronomeError

    if not isinstance(exc, MetronomeError):
        return None
    where = f" at {settings.metronome_base_url}" if settings else ""
    if exc.status == 401:
        return Failure(
            f"crmsync: Metronome{where} refused the token (401): check METRONOME_BEARER_TOKEN "
            "(mistyped, revoked, or for another environment than METRONOME_BASE_URL)",
            EXIT_CONFIG,
        )
    if exc.status == 403:
        return Failure(
            f"crmsync: Metronome{where} answered 403 forbidden ({flat(exc.message)}): the "
            "token in METRONOME_BEARER_TOKEN may not do this; use a token with write access",
            EXIT_CONFIG,
        )
    if isinstance(exc, ConnectionFailedError):
        attempts = f" after {settings.metronome_max_attempts} attempts" if settings else ""
        return Failure(
            f"crmsync: cannot reach Metronome{where} (METRONOME_BASE_URL): no answer{attempts}; "
            "check the network and METRONOME_BASE_URL, or raise METRONOME_TIMEOUT_S",
            EXIT_FAILED,
        )
    return Failure(f"crmsync: Metronome{where}: {flat(exc.message)}", EXIT_FAILED)


_MATCHERS: tuple[Callable[[BaseException, Settings | None], Failure | None], ...] = (
    _ours,
    _ours_downstream,
    _salesforce,
    _metronome,
    _redis,
    _salesforce_network,
)
#: Tried on every link only after nothing more specific matched anywhere in the chain.
_FALLBACKS: tuple[Callable[[BaseException, Settings | None], Failure | None], ...] = (_kombu,)
#: Packages of the exception classes each matcher looks for: a class never imported was never
#: raised, so not importing it spares a failing health check Celery and the Salesforce client.
_NEEDS: dict[Callable[[BaseException, Settings | None], Failure | None], tuple[str, ...]] = {
    _salesforce: ("simple_salesforce.exceptions",),
    _metronome: ("worker.metronome.errors",),
    _redis: ("redis",),
    _salesforce_network: ("requests",),
    _kombu: ("kombu",),
}
