"""A simple-salesforce client logged in to the emulated org, in any of the five login modes.

It goes through the worker's own :func:`~worker.salesforce.client.build_salesforce` with settings
made from the sandbox credentials, so the demo and the tests exercise the exact code path a real
deployment uses; only the transport differs (``https://`` is routed to the emulator). It lives
here, not beside ``build_salesforce``, because the worker never reaches for the emulators: the
sandbox and demo commands hand them in.
"""

from __future__ import annotations

from typing import Any

from pydantic_settings import BaseSettings, PydanticBaseSettingsSource
from simple_salesforce.api import Salesforce

from worker.salesforce.client import build_salesforce
from worker.sandbox.salesforce.auth import INSTANCE_URL, SandboxCredentials
from worker.sandbox.salesforce.transport import emulator_session
from worker.settings import SalesforceAuthMode, Settings


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
