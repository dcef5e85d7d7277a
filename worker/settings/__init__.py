"""Settings: every knob crmsync has, read from the environment or an optional ``.env`` file.

Each field is read from one environment variable, named by one rule (``environment.py``:
``SALESFORCE_USERNAME``, ``CRMSYNC_POLL_INTERVAL_S``); the five fields whose variable breaks it
say so with their own ``validation_alias``. The names are the operators' interface: the
compose file, the README and this model are checked against each other mechanically. Secrets
are ``SecretStr``: they print as ``**********`` in reprs, logs and error messages; each can
come from a file (``secrets.py``). Which SALESFORCE_* variables make a login is
``salesforce_login.py``.

``load_settings`` turns pydantic's validation errors into one :class:`SettingsError` whose
message names each variable and what is wrong with it; the CLI prints that message instead of
a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import (
    AliasChoices,
    AliasGenerator,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import SettingsConfigDict

from worker.settings.environment import (
    SETTINGS_PREFIXES,
    child_environment,
    default_data_dir,
    variable_for,
)
from worker.settings.errors import NotConfigured, SettingsError
from worker.settings.listener import ListenerSettings
from worker.settings.salesforce_login import (
    SalesforceAuthMode,
    salesforce_auth_mode,
    salesforce_mode_variables,
)
from worker.settings.secrets import SECRET_FILES, read_secret_file, url_with_password
from worker.settings.sentinel import SentinelTarget, is_sentinel_url, parse_hosts

__all__ = [
    "SECRET_FILES",
    "SETTINGS_PREFIXES",
    "NotConfigured",
    "SalesforceAuthMode",
    "Settings",
    "SettingsError",
    "child_environment",
    "default_data_dir",
    "describe_validation_error",
    "environment_variable_names",
    "load_settings",
    "salesforce_auth_mode",
    "salesforce_mode_variables",
]


class Settings(ListenerSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        # An empty variable is an unset one: compose passes `${VAR:-}` through as "", which
        # would otherwise be a present (empty) password or Path("."), i.e. a login mode.
        env_ignore_empty=True,
        extra="ignore",
        populate_by_name=True,
        frozen=True,
        alias_generator=AliasGenerator(validation_alias=variable_for),
    )

    # --- Redis -------------------------------------------------------------------------
    # repr=False: the URL may carry the password (REDIS_PASSWORD is merged into it).
    redis_url: str | None = Field(default=None, repr=False)
    data_dir: Path = Field(default_factory=default_data_dir)
    redis_prefix: str = Field(
        default="crmsync", validation_alias=AliasChoices("CRMSYNC_REDIS_PREFIX", "redis_prefix")
    )
    redis_password: SecretStr | None = Field(
        default=None,
        description=(
            "Password for REDIS_URL, kept out of the URL so it can come from a secret file "
            "(REDIS_PASSWORD_FILE); it is put into the URL when settings are read."
        ),
    )
    redis_password_file: Path | None = None
    redis_sentinels: str | None = Field(
        default=None,
        description=(
            "host:port,host:port of Redis Sentinels, instead of REDIS_URL: every client then "
            "asks them for the primary named by REDIS_SENTINEL_MASTER and follows a failover "
            "(REDIS_PASSWORD is the primary's password)."
        ),
    )
    redis_sentinel_master: str | None = None
    redis_sentinel_password: SecretStr | None = None
    redis_sentinel_password_file: Path | None = None
    redis_sentinel_tls: bool = False
    redis_wait_s: float = Field(
        default=60.0,
        ge=0,
        le=3_600,
        validation_alias=AliasChoices("CRMSYNC_REDIS_WAIT_S", "redis_wait_s"),
        description=(
            "How long worker, run and beat wait for Redis at start before they exit with one "
            "line saying why (an orchestrator restarts them; Celery alone would retry forever "
            "and a wrong password would never be reported as such)."
        ),
    )

    # --- Metronome ---------------------------------------------------------------------
    metronome_bearer_token: SecretStr | None = None
    metronome_bearer_token_file: Path | None = None
    metronome_base_url: str = "https://api.metronome.com"
    metronome_timeout_s: float = Field(default=20.0, gt=0)
    metronome_max_rps: float = Field(
        default=50.0,
        gt=0,
        le=10_000,
        description=(
            "Requests per second to Metronome for the whole deployment (every process shares "
            "one budget in Redis). Metronome publishes no number for these endpoints: 50 is "
            "25 new customers a second, a 10,000-account backfill in about 7 minutes, while "
            "leaving room for the other users of the same API client; on 429s the governor "
            "goes lower by itself, and never higher than this."
        ),
    )
    metronome_max_attempts: int = Field(default=5, ge=1, le=20)

    # --- Salesforce --------------------------------------------------------------------
    salesforce_username: str | None = None
    salesforce_password: SecretStr | None = None
    salesforce_password_file: Path | None = None
    salesforce_security_token: SecretStr | None = None
    salesforce_security_token_file: Path | None = None
    salesforce_consumer_key: str | None = None
    salesforce_consumer_secret: SecretStr | None = None
    salesforce_consumer_secret_file: Path | None = None
    salesforce_private_key: SecretStr | None = None
    salesforce_private_key_file: Path | None = None
    salesforce_instance_url: str | None = None
    salesforce_session_id: SecretStr | None = None
    salesforce_session_id_file: Path | None = None
    salesforce_domain: str = "login"
    salesforce_api_version: str = Field(default="59.0", pattern=r"^\d{2,3}\.0$")
    salesforce_timeout_s: float = Field(default=30.0, gt=0)
    salesforce_quota_fraction: float = Field(default=0.8, gt=0, le=1)

    salesforce_emulator_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("CRMSYNC_SALESFORCE_EMULATOR_URL", "salesforce_emulator_url"),
        description=(
            "Route the Salesforce client's https:// requests to a local emulator (crmsync demo, "
            "sandbox and tests). Loopback only, so real credentials can never leave for it."
        ),
    )

    # --- Pipeline ----------------------------------------------------------------------
    mapping_file: Path | None = Field(
        default=None, validation_alias=AliasChoices("CRMSYNC_MAPPING", "mapping_file")
    )
    poll_interval_s: float = Field(default=60.0, ge=1, le=86_400)
    overlap_s: float = Field(default=300.0, ge=0, le=86_400)
    events_interval_s: float = Field(
        default=300.0,
        ge=0,
        le=86_400,
        description=(
            "How often a poll also reads re-opened deals and deleted/merged accounts (0: every "
            "poll). In between, a quiet poll costs one Salesforce query."
        ),
    )
    concurrency: int = Field(default=4, ge=1, le=64)
    sync_threads: int = Field(
        default=8,
        ge=1,
        le=64,
        description=(
            "Accounts of one batch each worker process syncs at once (threads). Calls in "
            "flight = processes x threads must exceed rate x latency: 4 x 8 = 32 covers "
            "50 req/s up to 600 ms per call, 200 req/s up to 150 ms."
        ),
    )
    max_task_retries: int = Field(
        default=3,
        ge=0,
        le=50,
        description=(
            "Quick retries of a sync that failed for a transient reason (2, 4, 8 s with "
            "jitter) before it is parked: enough for a blip, never a dead letter."
        ),
    )
    breaker_failures: int = Field(
        default=5,
        ge=1,
        le=1_000,
        description=(
            "Consecutive syncs that failed on Metronome for a transient reason (or polls that "
            "failed on Salesforce) before that API's circuit breaker opens for the whole "
            "deployment."
        ),
    )
    breaker_probe_s: float = Field(
        default=30.0,
        ge=0.1,
        le=3_600,
        description=(
            "While a breaker is open, one probe (a parked sync, or a poll) is let through this "
            "often, one at a time across the deployment; its success closes the breaker."
        ),
    )
    park_backoff_max_s: float = Field(
        default=300.0,
        ge=0.1,
        le=3_600,
        description=(
            "A parked sync is retried with a backoff that doubles up to this (minutes, not "
            "hours); after a breaker closes every parked sync is sent at once."
        ),
    )
    park_max_age_s: float = Field(
        default=86_400.0,
        ge=1,
        le=7 * 86_400,
        description=(
            "A sync parked this long and still failing becomes a dead letter (with an alert). "
            "24 h: Metronome keeps an Idempotency-Key's answer at least that long."
        ),
    )
    salesforce_quota_probe_s: float = Field(
        default=900.0,
        ge=1,
        le=86_400,
        validation_alias=AliasChoices(
            "CRMSYNC_SALESFORCE_QUOTA_PROBE_S", "salesforce_quota_probe_s"
        ),
        description=(
            "After the Salesforce daily quota stopped a poll, polls pause and one is tried "
            "this often (the quota is a rolling 24 h window: it frees up gradually)."
        ),
    )
    login_backoff_max_s: float = Field(
        default=900.0,
        ge=1,
        le=86_400,
        description=(
            "While Salesforce keeps refusing the login or its session, every process waits "
            "1 s, 2 s, 4 s ... between logins, at most this long (one login per this many "
            "seconds); a changed SALESFORCE_* setting is tried at once."
        ),
    )
    metronome_token_backoff_max_s: float = Field(
        default=900.0,
        ge=1,
        le=86_400,
        validation_alias=AliasChoices(
            "CRMSYNC_METRONOME_TOKEN_BACKOFF_MAX_S", "metronome_token_backoff_max_s"
        ),
        description=(
            "While Metronome refuses METRONOME_BEARER_TOKEN (401, or 403 for a token without "
            "the permission), syncs park and every process stops calling it; one probe asks "
            "again after 1 s, 2 s, 4 s ... at most this long. A changed token is tried at once."
        ),
    )
    visibility_timeout_s: int = Field(
        default=900,
        ge=30,
        le=43_200,
        description=(
            "Redis broker visibility timeout: how long before an unacknowledged message (its "
            "worker was killed) is delivered again. Retry countdowns are capped at a quarter "
            "of it so no retry is delivered twice."
        ),
    )
    retry_immediately: bool = Field(
        default=False,
        description="Testing switch (as stamina's): retries skip their backoff waits.",
    )
    ledger_max_entries: int = Field(default=100_000, ge=100)

    # --- Operations --------------------------------------------------------------------
    flower_user: str | None = None
    flower_password: SecretStr | None = None
    flower_password_file: Path | None = None
    alert_webhook_url: str | None = None
    log_format: str = Field(default="auto", pattern=r"^(auto|json|console)$")
    log_level: str = Field(
        default="INFO",
        pattern=r"^(DEBUG|INFO|WARNING|ERROR)$",
        description=(
            "Log level of worker, run, beat and flower (their --loglevel wins); DEBUG also "
            "makes every command print the traceback behind a one-line error, as --debug does."
        ),
    )
    alert_lag_threshold_s: float = Field(
        default=900.0,
        gt=0,
        description=(
            "Alert when a cursor is older than this: polls are failing or stopped for quota. "
            "Must exceed poll interval + overlap, or a healthy sync would alert."
        ),
    )
    alert_check_interval_s: float = Field(
        default=15.0,
        ge=0.1,
        le=3_600,
        description="How often a worker looks for new dead letters and cursor lag to alert on.",
    )
    metrics_dir: Path | None = Field(
        default=None,
        description=(
            "prometheus-client multiprocess directory for `crmsync worker --metrics-port` "
            "(unset: a fresh temporary directory). Wiped at start: stale files double-count."
        ),
    )
    beat_lock_timeout_s: float = Field(
        default=60.0,
        ge=2,
        le=3_600,
        description=(
            "How long a dead beat keeps the scheduler lock before a standby takes over; a "
            "stopped beat releases it at once."
        ),
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("metronome_base_url", "salesforce_instance_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/") if value else value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        if not value.startswith(("redis://", "rediss://", "unix://", "redis-sentinel://")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL (or REDIS_SENTINELS)")
        return value

    @field_validator("salesforce_emulator_url")
    @classmethod
    def _loopback_only(cls, value: str | None) -> str | None:
        if not value:
            return None
        if not value.startswith(("http://127.0.0.1:", "http://localhost:")):
            raise ValueError("must be an http://127.0.0.1:PORT URL (a local emulator)")
        return value.rstrip("/")

    # The validators below run in this order: secrets are read from their files before the
    # Salesforce login mode is decided from which secrets are present.
    @model_validator(mode="after")
    def _secrets_from_files(self) -> Settings:
        """``X_FILE`` holds X's value (compose/Kubernetes secrets): read it once, here.

        Both set is refused (which one would win is a guess).
        """
        for secret, file_field in SECRET_FILES.items():
            path = getattr(self, file_field)
            if path is None:
                continue
            if getattr(self, secret) is not None:
                raise ValueError(
                    f"{_variable(secret)} and {_variable(file_field)} are both set; set one"
                )
            value = read_secret_file(path, _variable(file_field))
            object.__setattr__(self, secret, value)  # frozen: set during validation
        return self

    @model_validator(mode="after")
    def _sentinels_into_url(self) -> Settings:
        """REDIS_SENTINELS becomes a ``redis-sentinel://`` URL in redis_url (worker/settings/
        sentinel.py), the one value every Redis client reads; a plain REDIS_URL beside it is
        refused (which one would win is a guess)."""
        if not self.redis_sentinels:
            return self
        if self.redis_url and not is_sentinel_url(self.redis_url):
            raise ValueError("REDIS_SENTINELS and REDIS_URL are both set; set one")
        if not self.redis_sentinel_master:
            raise ValueError("REDIS_SENTINELS is set but REDIS_SENTINEL_MASTER is not")
        secret = self.redis_sentinel_password
        target = SentinelTarget(
            sentinels=parse_hosts(self.redis_sentinels),
            service_name=self.redis_sentinel_master,
            sentinel_password=secret.get_secret_value() if secret else None,
            tls=self.redis_sentinel_tls,
        )
        object.__setattr__(self, "redis_url", target.url())
        return self

    @model_validator(mode="after")
    def _redis_password_into_url(self) -> Settings:
        """REDIS_PASSWORD goes into REDIS_URL, the one value every Redis client here reads."""
        if self.redis_password is None:
            return self
        if not self.redis_url:
            raise ValueError(
                "REDIS_PASSWORD is set but REDIS_URL is not (the embedded Redis has no password)"
            )
        object.__setattr__(
            self, "redis_url", url_with_password(self.redis_url, self.redis_password)
        )
        return self

    @model_validator(mode="after")
    def _one_salesforce_mode(self) -> Settings:
        try:
            salesforce_auth_mode(self)  # raises ValueError on a mix or an incomplete set
        except ValueError as exc:
            # Someone is configuring a real deployment: name everything still missing at once.
            if self.metronome_bearer_token is None:
                raise ValueError(f"{exc}; Metronome also needs METRONOME_BEARER_TOKEN") from None
            raise
        return self

    @property
    def salesforce_configured(self) -> bool:
        return salesforce_auth_mode(self) is not None

    @property
    def metronome_configured(self) -> bool:
        return self.metronome_bearer_token is not None


def _variable(field_name: str) -> str:
    """The environment variable of a field, as an operator sets it."""
    alias = Settings.model_fields[field_name].validation_alias
    return str(alias.choices[0]) if isinstance(alias, AliasChoices) else field_name.upper()


def load_settings(**overrides: Any) -> Settings:
    """Read settings, turning every validation problem into one readable SettingsError."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise SettingsError(describe_validation_error(exc)) from None


def describe_validation_error(exc: ValidationError) -> list[str]:
    """One line per problem, naming the variable (never echoing its value: it may be secret)."""
    lines = []
    for error in exc.errors(include_url=False, include_input=False):
        location = ".".join(str(part) for part in error["loc"])
        env_name = _variable(location) if location in Settings.model_fields else location.upper()
        message = str(error["msg"]).removeprefix("Value error, ")
        lines.append(f"{env_name}: {message}" if location else message)
    return lines


def environment_variable_names() -> set[str]:
    """Every variable the settings model reads (for checking compose files and docs)."""
    return {_variable(name) for name in Settings.model_fields}
