"""Build a logged-in simple-salesforce client from settings, on a session with timeouts.

simple-salesforce sets no timeout on any request (DESIGN.md "Salesforce facts"): one dead TCP
connection would hang a poll -- and the per-poll lock with it -- forever. Every client here
runs on a :class:`TimeoutSession`, which applies (connect, read) timeouts to each request that
does not bring its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import requests
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource
from simple_salesforce.api import Salesforce

from worker.settings import NotConfigured, SalesforceAuthMode, Settings, salesforce_auth_mode
from worker.telemetry.metrics import record_salesforce_response

if TYPE_CHECKING:
    from worker.sandbox.salesforce.auth import SandboxCredentials

CONNECT_TIMEOUT_S = 10.0


#: No SALESFORCE_* login is configured: crmsync's one "not configured" error, under the name
#: this package has always exported.
SalesforceNotConfigured = NotConfigured


class TimeoutSession(requests.Session):
    """A ``requests.Session`` that never waits forever: default (connect, read) timeouts."""

    def __init__(self, read_timeout_s: float, connect_timeout_s: float = CONNECT_TIMEOUT_S) -> None:
        super().__init__()
        self.default_timeout = (min(connect_timeout_s, read_timeout_s), read_timeout_s)

    def request(
        self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any
    ) -> requests.Response:
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.default_timeout
        response = super().request(method, url, *args, **kwargs)
        record_salesforce_response(method, url, response.status_code)  # worker/telemetry/metrics.py
        return response


def _secret(value: Any) -> str | None:
    return None if value is None else str(value.get_secret_value())


def build_salesforce(settings: Settings, session: requests.Session | None = None) -> Salesforce:
    """Log in with whichever mode the settings describe (``salesforce_auth_mode``).

    The SOAP, OAuth-password, JWT and client-credentials modes keep a login callable inside
    the client, so an expired session is renewed on the next query. The pre-issued session mode
    cannot renew: the source turns its 401 into :class:`~worker.salesforce.source.SessionExpired`.
    """
    mode = salesforce_auth_mode(settings)
    if mode is None:
        raise SalesforceNotConfigured(
            "Salesforce is not configured: set SALESFORCE_* variables (see README) "
            "or run `crmsync demo` to try crmsync against the local emulators"
        )
    http = session or TimeoutSession(settings.salesforce_timeout_s)
    common: dict[str, Any] = {"session": http, "version": settings.salesforce_api_version}
    domain = settings.salesforce_domain
    if mode is SalesforceAuthMode.SESSION:
        return Salesforce(
            session_id=_secret(settings.salesforce_session_id),
            instance_url=settings.salesforce_instance_url,
            **common,
        )
    if mode is SalesforceAuthMode.SOAP_PASSWORD:
        return Salesforce(
            username=settings.salesforce_username,
            password=_secret(settings.salesforce_password),
            security_token=_secret(settings.salesforce_security_token),
            domain=domain,
            **common,
        )
    if mode is SalesforceAuthMode.OAUTH_PASSWORD:
        return Salesforce(
            username=settings.salesforce_username,
            password=_secret(settings.salesforce_password),
            consumer_key=settings.salesforce_consumer_key,
            consumer_secret=_secret(settings.salesforce_consumer_secret),
            domain=domain,
            **common,
        )
    if mode is SalesforceAuthMode.JWT_BEARER:
        key = _secret(settings.salesforce_private_key)
        key_file = settings.salesforce_private_key_file
        return Salesforce(
            username=settings.salesforce_username,
            consumer_key=settings.salesforce_consumer_key,
            privatekey=key,
            privatekey_file=str(key_file) if key is None and key_file is not None else None,
            domain=domain,
            **common,
        )
    return Salesforce(
        consumer_key=settings.salesforce_consumer_key,
        consumer_secret=_secret(settings.salesforce_consumer_secret),
        domain=domain,
        **common,
    )


class _ExplicitSettings(Settings):
    """Settings from the given values only: the sandbox client must not pick up SALESFORCE_*
    variables from the environment (a real org's credentials would mix into the demo's)."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def build_sandbox_salesforce(
    emulator_url: str,
    credentials: SandboxCredentials | None = None,
    *,
    mode: SalesforceAuthMode = SalesforceAuthMode.SOAP_PASSWORD,
    timeout_s: float = 30.0,
    session_id: str | None = None,
    private_key_pem: str | None = None,
) -> Salesforce:
    """A client logged in to the local emulator in ``mode`` (SOAP password by default).

    Goes through :func:`build_salesforce` with settings made from ``credentials``, so the demo
    and the tests exercise the exact code path a real deployment uses; only the transport
    differs (``https://`` is routed to the emulator).
    """
    from worker.sandbox.salesforce.auth import INSTANCE_URL, SandboxCredentials
    from worker.sandbox.salesforce.transport import emulator_session

    creds = credentials or SandboxCredentials()
    values: dict[str, Any] = {"salesforce_timeout_s": timeout_s}
    if mode is SalesforceAuthMode.SOAP_PASSWORD:
        values |= {
            "salesforce_username": creds.username,
            "salesforce_password": creds.password,
            "salesforce_security_token": creds.security_token,
        }
    elif mode is SalesforceAuthMode.OAUTH_PASSWORD:
        values |= {
            "salesforce_username": creds.username,
            "salesforce_password": creds.password,
            "salesforce_consumer_key": creds.consumer_key,
            "salesforce_consumer_secret": creds.consumer_secret,
        }
    elif mode is SalesforceAuthMode.JWT_BEARER:
        if private_key_pem is None:
            raise ValueError("JWT bearer mode needs private_key_pem")
        values |= {
            "salesforce_username": creds.username,
            "salesforce_consumer_key": creds.consumer_key,
            "salesforce_private_key": private_key_pem,
        }
    elif mode is SalesforceAuthMode.CLIENT_CREDENTIALS:
        values |= {
            "salesforce_consumer_key": creds.consumer_key,
            "salesforce_consumer_secret": creds.consumer_secret,
            "salesforce_domain": "crmsync-sandbox.my",
        }
    else:
        if session_id is None:
            raise ValueError("session mode needs session_id (SalesforceEmulator.issue_session())")
        values |= {"salesforce_session_id": session_id, "salesforce_instance_url": INSTANCE_URL}
    settings = _ExplicitSettings(**values)
    return build_salesforce(settings, emulator_session(emulator_url, timeout_s))
