"""Build a logged-in simple-salesforce client from settings, on a session with timeouts.

simple-salesforce sets no timeout on any request, and ``requests`` waits forever without one:
one dead TCP connection would hang a poll -- and the per-poll lock with it -- forever. Every
client here runs on a :class:`TimeoutSession`, which applies (connect, read) timeouts to each
request that does not bring its own. The session is handed in (``build_salesforce``'s
``session``), as httpx takes a transport: a worker started for the emulators gets the loopback
one (``loopback.py``), and the worker never imports the emulators themselves.
"""

from __future__ import annotations

from typing import Any

import requests
from simple_salesforce.api import Salesforce

from worker.salesforce.errors import SalesforceNotConfigured
from worker.settings import SalesforceAuthMode, Settings, salesforce_auth_mode
from worker.telemetry.metrics import record_salesforce_response

CONNECT_TIMEOUT_S = 10.0


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
    cannot renew: the source turns its 401 into :class:`~worker.salesforce.errors.SessionExpired`.
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
