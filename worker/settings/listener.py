"""The change-event listener's settings (``crmsync listen``), one group of the settings model.

A base class of :class:`worker.settings.Settings`, so each field is read from its environment
variable by the same naming rule (``CRMSYNC_LISTENER_*``, ``SALESFORCE_ORG_ID``) and validated
with the rest; kept apart only so the model stays one screenful per group.
"""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings


class ListenerSettings(BaseSettings):
    """Fields of the Pub/Sub listener; :class:`worker.settings.Settings` holds the config."""

    pubsub_endpoint: str = Field(
        default="api.pubsub.salesforce.com:7443",
        description="Salesforce Pub/Sub API host:port (TLS, verified with the system's roots).",
    )
    pubsub_emulator_address: str | None = Field(
        default=None,
        description=(
            "Talk plaintext gRPC to a local Pub/Sub emulator at 127.0.0.1:PORT instead "
            "(crmsync demo, sandbox and tests). Loopback only, like the REST emulator URL."
        ),
    )
    salesforce_org_id: str | None = Field(
        default=None,
        description="The org id sent as Pub/Sub `tenantid` (default: read from the session id).",
    )
    listener_topics: str = Field(
        default="/data/OpportunityChangeEvent,/data/AccountChangeEvent",
        description=(
            "Comma-separated channels to subscribe to: the two change event channels, "
            "/data/ChangeEvents, or a custom channel /data/Name__chn."
        ),
    )
    listener_keepalive_timeout_s: float = Field(
        default=300.0,
        ge=1,
        le=3_600,
        description=(
            "A stream silent this long is torn down and resubscribed. Salesforce sends a "
            "keepalive at least every 270 s, so keep it above that in production."
        ),
    )
    listener_coalesce_s: float = Field(
        default=0.2,
        ge=0,
        le=30,
        description="How long events are gathered so a burst becomes one Salesforce query.",
    )
    listener_lease_s: float = Field(
        default=15.0,
        ge=1,
        le=600,
        description="The active listener's Redis lease; a standby takes over within this long.",
    )
    listener_max_outage_s: float = Field(
        default=600.0,
        ge=1,
        le=259_200,
        description=(
            "After a longer silence (listener down, stream broken) resume from now and run a "
            "poll instead of replaying: one query instead of a flood of deliveries."
        ),
    )
    listener_limit_backoff_s: float = Field(
        default=3_600.0,
        ge=1,
        le=86_400,
        description=(
            "After the org's daily delivery allocation ran out, wait this long before "
            "subscribing again; polls run every CRMSYNC_POLL_INTERVAL_S meanwhile."
        ),
    )
    listener_crash_after_enqueue: bool = Field(
        default=False,
        description=(
            "Testing switch: SIGKILL the listener after its first enqueue, before the replay "
            "id is stored (proves a crash there loses and duplicates nothing)."
        ),
    )

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
