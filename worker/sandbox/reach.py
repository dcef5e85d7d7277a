"""Where a running sandbox answers, for the commands that edit it or list what it holds
(``crmsync sandbox add-account|add-deal|close|reopen|rename|customers|contracts``).

The flag wins, else the ``.env`` that ``crmsync sandbox`` printed, else the default port. The
SALESFORCE_* credentials are used only when CRMSYNC_SALESFORCE_EMULATOR_URL says the
configuration is a sandbox one: a real org's password is never sent anywhere from here.
"""

from __future__ import annotations

from worker.sandbox.salesforce.auth import SandboxCredentials
from worker.settings import load_settings

_DEFAULTS = SandboxCredentials()


def salesforce_login(flag_url: str | None, default_url: str) -> tuple[str, SandboxCredentials]:
    """The sandbox org's URL and the login to use there."""
    settings = load_settings()
    url = flag_url or settings.salesforce_emulator_url or default_url
    credentials = _DEFAULTS
    if settings.salesforce_emulator_url and settings.salesforce_username:
        password = settings.salesforce_password
        token = settings.salesforce_security_token
        credentials = SandboxCredentials(
            username=settings.salesforce_username,
            password=password.get_secret_value() if password else _DEFAULTS.password,
            security_token=token.get_secret_value() if token else _DEFAULTS.security_token,
        )
    return url, credentials


def metronome_url(flag_url: str | None, default_url: str) -> str:
    """The sandbox's Metronome URL: METRONOME_BASE_URL only in a sandbox configuration."""
    if flag_url:
        return flag_url.rstrip("/")
    settings = load_settings()
    if settings.salesforce_emulator_url and settings.metronome_base_url:
        return str(settings.metronome_base_url).rstrip("/")
    return default_url
