"""Salesforce login modes: which SALESFORCE_* variables make which login, and which clash.

Five ways to log in (simple-salesforce supports each), told apart only by which variables are
set. The rule: exactly one mode must be complete and none of another mode's secrets may be
present (a second mode's secret is a leftover that would silently not be used); nothing set at
all means Salesforce is not configured. The errors name the variables, as an operator sets them.

It sits beside the settings model, not in ``worker/salesforce/``, because the model checks it
while the settings are read (``load_settings`` reports a mix or an incomplete set as a
configuration error), and the settings are a floor below the Salesforce client that uses the
mode to log in. It reads the values through :class:`LoginVariables`, so it needs no import of
the model either.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Protocol

from pydantic import SecretStr


class SalesforceAuthMode(enum.StrEnum):
    """How the Salesforce client logs in, chosen by which SALESFORCE_* variables are set."""

    SOAP_PASSWORD = "soap_password"  # noqa: S105 -- username + password + security token
    OAUTH_PASSWORD = "oauth_password"  # noqa: S105 -- username + password + consumer key/secret
    JWT_BEARER = "jwt_bearer"  # username + consumer key + private key
    CLIENT_CREDENTIALS = "client_credentials"  # consumer key/secret + My Domain
    SESSION = "session"  # pre-issued session id + instance URL (cannot refresh)


class LoginVariables(Protocol):
    """The settings the rule reads by name (``salesforce_username`` and the others are read
    with ``getattr``); :class:`worker.settings.Settings` is one."""

    @property
    def salesforce_domain(self) -> str: ...
    @property
    def salesforce_private_key(self) -> SecretStr | None: ...
    @property
    def salesforce_private_key_file(self) -> Path | None: ...


# Which variables each auth mode needs, and which it must not see (a second mode's secret).
_MODE_REQUIRES: dict[SalesforceAuthMode, tuple[str, ...]] = {
    SalesforceAuthMode.SOAP_PASSWORD: (
        "salesforce_username",
        "salesforce_password",
        "salesforce_security_token",
    ),
    SalesforceAuthMode.OAUTH_PASSWORD: (
        "salesforce_username",
        "salesforce_password",
        "salesforce_consumer_key",
        "salesforce_consumer_secret",
    ),
    SalesforceAuthMode.JWT_BEARER: ("salesforce_username", "salesforce_consumer_key", "_key"),
    SalesforceAuthMode.CLIENT_CREDENTIALS: (
        "salesforce_consumer_key",
        "salesforce_consumer_secret",
    ),
    SalesforceAuthMode.SESSION: ("salesforce_session_id", "salesforce_instance_url"),
}
_MODE_FORBIDS: dict[SalesforceAuthMode, tuple[str, ...]] = {
    SalesforceAuthMode.SESSION: (
        "salesforce_username",
        "salesforce_password",
        "salesforce_security_token",
        "salesforce_consumer_key",
        "salesforce_consumer_secret",
        "_key",
    ),
    SalesforceAuthMode.JWT_BEARER: (
        "salesforce_password",
        "salesforce_security_token",
        "salesforce_consumer_secret",
        "salesforce_session_id",
    ),
    SalesforceAuthMode.OAUTH_PASSWORD: ("_key", "salesforce_session_id"),
    SalesforceAuthMode.SOAP_PASSWORD: (
        "salesforce_consumer_key",
        "salesforce_consumer_secret",
        "_key",
        "salesforce_session_id",
    ),
    SalesforceAuthMode.CLIENT_CREDENTIALS: (
        "salesforce_username",
        "salesforce_password",
        "salesforce_security_token",
        "_key",
        "salesforce_session_id",
    ),
}
_ALL_SALESFORCE = (
    "salesforce_username",
    "salesforce_password",
    "salesforce_security_token",
    "salesforce_consumer_key",
    "salesforce_consumer_secret",
    "_key",
    "salesforce_session_id",
    "salesforce_instance_url",
)


def _present(settings: LoginVariables, name: str) -> bool:
    if name == "_key":
        return (
            settings.salesforce_private_key is not None
            or settings.salesforce_private_key_file is not None
        )
    return getattr(settings, name) not in (None, "")


def _env_name(name: str) -> str:
    if name == "_key":
        return "SALESFORCE_PRIVATE_KEY (or SALESFORCE_PRIVATE_KEY_FILE)"
    return name.upper()


def salesforce_mode_variables(mode: SalesforceAuthMode) -> list[str]:
    """The variables a login mode reads, as an operator would set them."""
    return [_env_name(name) for name in _MODE_REQUIRES[mode]]


def salesforce_auth_mode(settings: LoginVariables) -> SalesforceAuthMode | None:
    """The one auth mode the SALESFORCE_* variables describe, or None when none are set.

    Raises ValueError naming the variables when they describe no complete mode, or two.
    """
    present = {name for name in _ALL_SALESFORCE if _present(settings, name)}
    if not present:
        return None
    complete = [
        mode for mode, needs in _MODE_REQUIRES.items() if all(name in present for name in needs)
    ]
    for mode in complete:
        clashing = [name for name in _MODE_FORBIDS[mode] if name in present]
        if not clashing:
            if mode is SalesforceAuthMode.CLIENT_CREDENTIALS and settings.salesforce_domain in (
                "login",
                "test",
            ):
                raise ValueError(
                    "SALESFORCE_DOMAIN: the client-credentials flow needs your My Domain "
                    "(e.g. 'acme.my'), not 'login' or 'test'"
                )
            return mode
    if complete:
        first = complete[0]
        mixed = ", ".join(_env_name(n) for n in _MODE_FORBIDS[first] if n in present)
        raise ValueError(
            f"Salesforce settings mix two auth modes: {first.value} is complete but {mixed} "
            "belong(s) to another mode; unset one of them"
        )
    best = max(_MODE_REQUIRES.items(), key=lambda item: sum(name in present for name in item[1]))
    missing = ", ".join(_env_name(n) for n in best[1] if n not in present)
    raise ValueError(
        f"Salesforce settings are incomplete: for {best[0].value} login also set {missing}"
    )
