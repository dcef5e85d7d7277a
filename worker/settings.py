"""Settings: every knob crmsync has, read from the environment or an optional ``.env`` file.

Each field's alias *is* its environment variable (DESIGN.md "Contracts"), so the compose file,
the README and this model can be checked against each other mechanically. Secrets are
``SecretStr``: they print as ``**********`` in reprs, logs and error messages.

``load_settings`` turns pydantic's validation errors into one :class:`SettingsError` whose
message names each variable and what is wrong with it; the CLI prints that message instead of
a traceback.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Prefixes of every variable crmsync reads (Flower's credentials included). A child process
#: started for one configuration (a test's stack, a benchmark, the demo's worker) must not
#: inherit another's: real credentials in the caller's environment would mix into it.
SETTINGS_PREFIXES = ("CRMSYNC_", "SALESFORCE_", "METRONOME_", "REDIS_", "FLOWER_")


def child_environment(configuration: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without crmsync's variables, plus ``configuration``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(SETTINGS_PREFIXES)}
    env.update(configuration)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


class SettingsError(Exception):
    """The configuration cannot be used; the message is meant for an operator's eyes.

    ``problems`` holds one line per wrong variable (``VARIABLE: what is wrong``), so
    ``crmsync check`` can print each on its own line and the CLI can print them without a
    traceback.
    """

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(f"crmsync: configuration: {p}" for p in problems))


class SalesforceAuthMode(enum.StrEnum):
    """How the Salesforce client logs in, chosen by which SALESFORCE_* variables are set."""

    SOAP_PASSWORD = "soap_password"  # noqa: S105 -- username + password + security token
    OAUTH_PASSWORD = "oauth_password"  # noqa: S105 -- username + password + consumer key/secret
    JWT_BEARER = "jwt_bearer"  # username + consumer key + private key
    CLIENT_CREDENTIALS = "client_credentials"  # consumer key/secret + My Domain
    SESSION = "session"  # pre-issued session id + instance URL (cannot refresh)


def default_data_dir() -> Path:
    """Where embedded Redis keeps its files: ``$XDG_DATA_HOME/crmsync`` or ``~/.local/share``."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "crmsync"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        # An empty variable is an unset one: compose passes `${VAR:-}` through as "", which
        # would otherwise be a present (empty) password or Path("."), i.e. a login mode.
        env_ignore_empty=True,
        extra="ignore",
        populate_by_name=True,
        frozen=True,
    )

    # --- Redis -------------------------------------------------------------------------
    # repr=False: the URL may carry the password (REDIS_PASSWORD is merged into it).
    redis_url: str | None = Field(
        default=None, validation_alias=AliasChoices("REDIS_URL", "redis_url"), repr=False
    )
    data_dir: Path = Field(
        default_factory=default_data_dir,
        validation_alias=AliasChoices("CRMSYNC_DATA_DIR", "data_dir"),
    )
    redis_prefix: str = Field(
        default="crmsync", validation_alias=AliasChoices("CRMSYNC_REDIS_PREFIX", "redis_prefix")
    )
    redis_password: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("REDIS_PASSWORD", "redis_password"),
        description=(
            "Password for REDIS_URL, kept out of the URL so it can come from a secret file "
            "(REDIS_PASSWORD_FILE); it is put into the URL when settings are read."
        ),
    )
    redis_password_file: Path | None = Field(
        default=None,
        validation_alias=AliasChoices("REDIS_PASSWORD_FILE", "redis_password_file"),
    )
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
    metronome_bearer_token: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("METRONOME_BEARER_TOKEN", "metronome_bearer_token"),
    )
    metronome_bearer_token_file: Path | None = Field(
        default=None,
        validation_alias=AliasChoices("METRONOME_BEARER_TOKEN_FILE", "metronome_bearer_token_file"),
    )
    metronome_base_url: str = Field(
        default="https://api.metronome.com",
        validation_alias=AliasChoices("METRONOME_BASE_URL", "metronome_base_url"),
    )
    metronome_timeout_s: float = Field(
        default=20.0,
        gt=0,
        validation_alias=AliasChoices("METRONOME_TIMEOUT_S", "metronome_timeout_s"),
    )
    metronome_max_rps: float = Field(
        default=50.0,
        gt=0,
        le=10_000,
        validation_alias=AliasChoices("METRONOME_MAX_RPS", "metronome_max_rps"),
        description=(
            "Requests per second to Metronome for the whole deployment (every process shares "
            "one budget in Redis). Metronome publishes no number for these endpoints: 50 is "
            "25 new customers a second, a 10,000-account backfill in about 7 minutes, while "
            "leaving room for the other users of the same API client; on 429s the governor "
            "goes lower by itself, and never higher than this."
        ),
    )
    metronome_max_attempts: int = Field(
        default=5,
        ge=1,
        le=20,
        validation_alias=AliasChoices("METRONOME_MAX_ATTEMPTS", "metronome_max_attempts"),
    )

    # --- Salesforce --------------------------------------------------------------------
    salesforce_username: str | None = Field(
        default=None, validation_alias=AliasChoices("SALESFORCE_USERNAME", "salesforce_username")
    )
    salesforce_password: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("SALESFORCE_PASSWORD", "salesforce_password")
    )
    salesforce_password_file: Path | None = Field(
        default=None,
        validation_alias=AliasChoices("SALESFORCE_PASSWORD_FILE", "salesforce_password_file"),
    )
    salesforce_security_token: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("SALESFORCE_SECURITY_TOKEN", "salesforce_security_token"),
    )
    salesforce_security_token_file: Path | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "SALESFORCE_SECURITY_TOKEN_FILE", "salesforce_security_token_file"
        ),
    )
    salesforce_consumer_key: str | None = Field(
        default=None,
        validation_alias=AliasChoices("SALESFORCE_CONSUMER_KEY", "salesforce_consumer_key"),
    )
    salesforce_consumer_secret: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("SALESFORCE_CONSUMER_SECRET", "salesforce_consumer_secret"),
    )
    salesforce_consumer_secret_file: Path | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "SALESFORCE_CONSUMER_SECRET_FILE", "salesforce_consumer_secret_file"
        ),
    )
    salesforce_private_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("SALESFORCE_PRIVATE_KEY", "salesforce_private_key"),
    )
    salesforce_private_key_file: Path | None = Field(
        default=None,
        validation_alias=AliasChoices("SALESFORCE_PRIVATE_KEY_FILE", "salesforce_private_key_file"),
    )
    salesforce_instance_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("SALESFORCE_INSTANCE_URL", "salesforce_instance_url"),
    )
    salesforce_session_id: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("SALESFORCE_SESSION_ID", "salesforce_session_id"),
    )
    salesforce_session_id_file: Path | None = Field(
        default=None,
        validation_alias=AliasChoices("SALESFORCE_SESSION_ID_FILE", "salesforce_session_id_file"),
    )
    salesforce_domain: str = Field(
        default="login",
        validation_alias=AliasChoices("SALESFORCE_DOMAIN", "salesforce_domain"),
    )
    salesforce_api_version: str = Field(
        default="59.0",
        pattern=r"^\d{2,3}\.0$",
        validation_alias=AliasChoices("SALESFORCE_API_VERSION", "salesforce_api_version"),
    )
    salesforce_timeout_s: float = Field(
        default=30.0,
        gt=0,
        validation_alias=AliasChoices("SALESFORCE_TIMEOUT_S", "salesforce_timeout_s"),
    )
    salesforce_quota_fraction: float = Field(
        default=0.8,
        gt=0,
        le=1,
        validation_alias=AliasChoices("SALESFORCE_QUOTA_FRACTION", "salesforce_quota_fraction"),
    )

    salesforce_emulator_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("CRMSYNC_SALESFORCE_EMULATOR_URL", "salesforce_emulator_url"),
        description=(
            "Route the Salesforce client's https:// requests to a local emulator (crmsync demo, "
            "sandbox and tests). Loopback only, so real credentials can never leave for it."
        ),
    )

    # --- Change events: `crmsync listen` (worker/salesforce/events) --------------------
    pubsub_endpoint: str = Field(
        default="api.pubsub.salesforce.com:7443",
        validation_alias=AliasChoices("CRMSYNC_PUBSUB_ENDPOINT", "pubsub_endpoint"),
        description="Salesforce Pub/Sub API host:port (TLS, verified with the system's roots).",
    )
    pubsub_emulator_address: str | None = Field(
        default=None,
        validation_alias=AliasChoices("CRMSYNC_PUBSUB_EMULATOR_ADDRESS", "pubsub_emulator_address"),
        description=(
            "Talk plaintext gRPC to a local Pub/Sub emulator at 127.0.0.1:PORT instead "
            "(crmsync demo, sandbox and tests). Loopback only, like the REST emulator URL."
        ),
    )
    salesforce_org_id: str | None = Field(
        default=None,
        validation_alias=AliasChoices("SALESFORCE_ORG_ID", "salesforce_org_id"),
        description="The org id sent as Pub/Sub `tenantid` (default: read from the session id).",
    )
    listener_topics: str = Field(
        default="/data/OpportunityChangeEvent,/data/AccountChangeEvent",
        validation_alias=AliasChoices("CRMSYNC_LISTENER_TOPICS", "listener_topics"),
        description=(
            "Comma-separated channels to subscribe to: the two change event channels, "
            "/data/ChangeEvents, or a custom channel /data/Name__chn."
        ),
    )
    listener_keepalive_timeout_s: float = Field(
        default=300.0,
        ge=1,
        le=3_600,
        validation_alias=AliasChoices(
            "CRMSYNC_LISTENER_KEEPALIVE_TIMEOUT_S", "listener_keepalive_timeout_s"
        ),
        description=(
            "A stream silent this long is torn down and resubscribed. Salesforce sends a "
            "keepalive at least every 270 s, so keep it above that in production."
        ),
    )
    listener_coalesce_s: float = Field(
        default=0.2,
        ge=0,
        le=30,
        validation_alias=AliasChoices("CRMSYNC_LISTENER_COALESCE_S", "listener_coalesce_s"),
        description="How long events are gathered so a burst becomes one Salesforce query.",
    )
    listener_lease_s: float = Field(
        default=15.0,
        ge=1,
        le=600,
        validation_alias=AliasChoices("CRMSYNC_LISTENER_LEASE_S", "listener_lease_s"),
        description="The active listener's Redis lease; a standby takes over within this long.",
    )
    listener_max_outage_s: float = Field(
        default=600.0,
        ge=1,
        le=259_200,
        validation_alias=AliasChoices("CRMSYNC_LISTENER_MAX_OUTAGE_S", "listener_max_outage_s"),
        description=(
            "After a longer silence (listener down, stream broken) resume from now and run a "
            "poll instead of replaying: one query instead of a flood of deliveries."
        ),
    )
    listener_limit_backoff_s: float = Field(
        default=3_600.0,
        ge=1,
        le=86_400,
        validation_alias=AliasChoices(
            "CRMSYNC_LISTENER_LIMIT_BACKOFF_S", "listener_limit_backoff_s"
        ),
        description=(
            "After the org's daily delivery allocation ran out, wait this long before "
            "subscribing again; polls run every CRMSYNC_POLL_INTERVAL_S meanwhile."
        ),
    )
    listener_crash_after_enqueue: bool = Field(
        default=False,
        validation_alias=AliasChoices(
            "CRMSYNC_LISTENER_CRASH_AFTER_ENQUEUE", "listener_crash_after_enqueue"
        ),
        description=(
            "Testing switch: SIGKILL the listener after its first enqueue, before the replay "
            "id is stored (proves a crash there loses and duplicates nothing)."
        ),
    )

    # --- Pipeline ----------------------------------------------------------------------
    mapping_file: Path | None = Field(
        default=None, validation_alias=AliasChoices("CRMSYNC_MAPPING", "mapping_file")
    )
    poll_interval_s: float = Field(
        default=60.0,
        ge=1,
        le=86_400,
        validation_alias=AliasChoices("CRMSYNC_POLL_INTERVAL_S", "poll_interval_s"),
    )
    overlap_s: float = Field(
        default=300.0,
        ge=0,
        le=86_400,
        validation_alias=AliasChoices("CRMSYNC_OVERLAP_S", "overlap_s"),
    )
    events_interval_s: float = Field(
        default=300.0,
        ge=0,
        le=86_400,
        validation_alias=AliasChoices("CRMSYNC_EVENTS_INTERVAL_S", "events_interval_s"),
        description=(
            "How often a poll also reads re-opened deals and deleted/merged accounts (0: every "
            "poll). In between, a quiet poll costs one Salesforce query."
        ),
    )
    concurrency: int = Field(
        default=4, ge=1, le=64, validation_alias=AliasChoices("CRMSYNC_CONCURRENCY", "concurrency")
    )
    sync_threads: int = Field(
        default=8,
        ge=1,
        le=64,
        validation_alias=AliasChoices("CRMSYNC_SYNC_THREADS", "sync_threads"),
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
        validation_alias=AliasChoices("CRMSYNC_MAX_TASK_RETRIES", "max_task_retries"),
        description=(
            "Quick retries of a sync that failed for a transient reason (2, 4, 8 s with "
            "jitter) before it is parked: enough for a blip, never a dead letter."
        ),
    )
    breaker_failures: int = Field(
        default=5,
        ge=1,
        le=1_000,
        validation_alias=AliasChoices("CRMSYNC_BREAKER_FAILURES", "breaker_failures"),
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
        validation_alias=AliasChoices("CRMSYNC_BREAKER_PROBE_S", "breaker_probe_s"),
        description=(
            "While a breaker is open, one probe (a parked sync, or a poll) is let through this "
            "often, one at a time across the deployment; its success closes the breaker."
        ),
    )
    park_backoff_max_s: float = Field(
        default=300.0,
        ge=0.1,
        le=3_600,
        validation_alias=AliasChoices("CRMSYNC_PARK_BACKOFF_MAX_S", "park_backoff_max_s"),
        description=(
            "A parked sync is retried with a backoff that doubles up to this (minutes, not "
            "hours); after a breaker closes every parked sync is sent at once."
        ),
    )
    park_max_age_s: float = Field(
        default=86_400.0,
        ge=1,
        le=7 * 86_400,
        validation_alias=AliasChoices("CRMSYNC_PARK_MAX_AGE_S", "park_max_age_s"),
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
        validation_alias=AliasChoices("CRMSYNC_LOGIN_BACKOFF_MAX_S", "login_backoff_max_s"),
        description=(
            "While Salesforce keeps refusing the login or its session, every process waits "
            "1 s, 2 s, 4 s ... between logins, at most this long (one login per this many "
            "seconds); a changed SALESFORCE_* setting is tried at once."
        ),
    )
    visibility_timeout_s: int = Field(
        default=900,
        ge=30,
        le=43_200,
        validation_alias=AliasChoices("CRMSYNC_VISIBILITY_TIMEOUT_S", "visibility_timeout_s"),
        description=(
            "Redis broker visibility timeout: how long before an unacknowledged message (its "
            "worker was killed) is delivered again. Retry countdowns are capped at a quarter "
            "of it so no retry is delivered twice."
        ),
    )
    retry_immediately: bool = Field(
        default=False,
        validation_alias=AliasChoices("CRMSYNC_RETRY_IMMEDIATELY", "retry_immediately"),
        description="Testing switch (as stamina's): retries skip their backoff waits.",
    )
    ledger_max_entries: int = Field(
        default=100_000,
        ge=100,
        validation_alias=AliasChoices("CRMSYNC_LEDGER_MAX_ENTRIES", "ledger_max_entries"),
    )

    # --- Operations --------------------------------------------------------------------
    flower_user: str | None = Field(
        default=None, validation_alias=AliasChoices("FLOWER_USER", "flower_user")
    )
    flower_password: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("FLOWER_PASSWORD", "flower_password")
    )
    flower_password_file: Path | None = Field(
        default=None,
        validation_alias=AliasChoices("FLOWER_PASSWORD_FILE", "flower_password_file"),
    )
    alert_webhook_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("CRMSYNC_ALERT_WEBHOOK_URL", "alert_webhook_url"),
    )
    log_format: str = Field(
        default="auto",
        pattern=r"^(auto|json|console)$",
        validation_alias=AliasChoices("CRMSYNC_LOG_FORMAT", "log_format"),
    )
    log_level: str = Field(
        default="INFO",
        pattern=r"^(DEBUG|INFO|WARNING|ERROR)$",
        validation_alias=AliasChoices("CRMSYNC_LOG_LEVEL", "log_level"),
        description=(
            "Log level of worker, run, beat and flower (their --loglevel wins); DEBUG also "
            "makes every command print the traceback behind a one-line error, as --debug does."
        ),
    )
    alert_lag_threshold_s: float = Field(
        default=900.0,
        gt=0,
        validation_alias=AliasChoices("CRMSYNC_ALERT_LAG_THRESHOLD_S", "alert_lag_threshold_s"),
        description=(
            "Alert when a cursor is older than this: polls are failing or stopped for quota. "
            "Must exceed poll interval + overlap, or a healthy sync would alert."
        ),
    )
    alert_check_interval_s: float = Field(
        default=15.0,
        ge=0.1,
        le=3_600,
        validation_alias=AliasChoices("CRMSYNC_ALERT_CHECK_INTERVAL_S", "alert_check_interval_s"),
        description="How often a worker looks for new dead letters and cursor lag to alert on.",
    )
    metrics_dir: Path | None = Field(
        default=None,
        validation_alias=AliasChoices("CRMSYNC_METRICS_DIR", "metrics_dir"),
        description=(
            "prometheus-client multiprocess directory for `crmsync worker --metrics-port` "
            "(unset: a fresh temporary directory). Wiped at start: stale files double-count."
        ),
    )
    beat_lock_timeout_s: float = Field(
        default=60.0,
        ge=2,
        le=3_600,
        validation_alias=AliasChoices("CRMSYNC_BEAT_LOCK_TIMEOUT_S", "beat_lock_timeout_s"),
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
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value

    @field_validator("salesforce_emulator_url")
    @classmethod
    def _loopback_only(cls, value: str | None) -> str | None:
        if not value:
            return None
        if not value.startswith(("http://127.0.0.1:", "http://localhost:")):
            raise ValueError("must be an http://127.0.0.1:PORT URL (a local emulator)")
        return value.rstrip("/")

    @field_validator("pubsub_emulator_address")
    @classmethod
    def _loopback_address(cls, value: str | None) -> str | None:
        if not value:
            return None
        if not value.startswith(("127.0.0.1:", "localhost:")):
            raise ValueError("must be 127.0.0.1:PORT (a local emulator: plaintext gRPC)")
        return value

    @property
    def listener_topic_list(self) -> list[str]:
        return [t.strip() for t in self.listener_topics.split(",") if t.strip()]

    # The validators below run in this order: secrets are read from their files before the
    # Salesforce login mode is decided from which secrets are present.
    @model_validator(mode="after")
    def _secrets_from_files(self) -> Settings:
        """``X_FILE`` holds X's value (compose/Kubernetes secrets): read it once, here.

        Both set is refused (which one would win is a guess); a trailing newline (``echo``,
        editors) is dropped because no token or password ends with one.
        """
        for secret, file_field in SECRET_FILES.items():
            path = getattr(self, file_field)
            if path is None:
                continue
            if getattr(self, secret) is not None:
                raise ValueError(
                    f"{_env_name(secret)} and {_env_name(file_field)} are both set; set one"
                )
            try:
                value = path.read_text(encoding="utf-8").rstrip("\r\n")
            except (OSError, UnicodeDecodeError) as exc:
                reason = getattr(exc, "strerror", None) or type(exc).__name__
                raise ValueError(f"{_env_name(file_field)}: cannot read {path}: {reason}") from None
            if not value:
                raise ValueError(f"{_env_name(file_field)}: {path} is empty")
            object.__setattr__(self, secret, SecretStr(value))  # frozen: set during validation
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


def _present(settings: Settings, name: str) -> bool:
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


#: Secret -> the field naming a file that holds it (``X_FILE``). The private key's file is
#: read by simple-salesforce itself (SALESFORCE_PRIVATE_KEY_FILE), so it is not listed here.
SECRET_FILES: dict[str, str] = {
    "metronome_bearer_token": "metronome_bearer_token_file",
    "salesforce_password": "salesforce_password_file",
    "salesforce_security_token": "salesforce_security_token_file",
    "salesforce_consumer_secret": "salesforce_consumer_secret_file",
    "salesforce_session_id": "salesforce_session_id_file",
    "flower_password": "flower_password_file",
    "redis_password": "redis_password_file",
}


def url_with_password(url: str, password: SecretStr) -> str:
    """``url`` with ``password`` as its credential (refused if the URL already has one)."""
    parts = urlsplit(url)
    if parts.password:
        raise ValueError("REDIS_URL already carries a password and REDIS_PASSWORD is set too")
    secret = quote(password.get_secret_value(), safe="")
    if parts.scheme == "unix":
        query = f"{parts.query}&password={secret}" if parts.query else f"password={secret}"
        return urlunsplit(parts._replace(query=query))
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:{secret}@{host}"))


def salesforce_mode_variables(mode: SalesforceAuthMode) -> list[str]:
    """The variables a login mode reads, as an operator would set them."""
    return [_env_name(name) for name in _MODE_REQUIRES[mode]]


def salesforce_auth_mode(settings: Settings) -> SalesforceAuthMode | None:
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
        field = Settings.model_fields.get(location)
        env_name = location.upper()
        if field is not None and isinstance(field.validation_alias, AliasChoices):
            env_name = str(field.validation_alias.choices[0])
        message = str(error["msg"]).removeprefix("Value error, ")
        lines.append(f"{env_name}: {message}" if location else message)
    return lines


def environment_variable_names() -> set[str]:
    """Every variable the settings model reads (for checking compose files and docs)."""
    names: set[str] = set()
    for field in Settings.model_fields.values():
        if isinstance(field.validation_alias, AliasChoices):
            names.add(str(field.validation_alias.choices[0]))
    return names
