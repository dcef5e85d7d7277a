"""The request rules the Metronome emulator enforces, and the error it raises.

Kept apart from the store so the store reads as the data model; each constant here is a
limit or enum from Metronome's official OpenAPI spec or its API guides.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

T = TypeVar("T")

NAME_MAX = 160
ALIAS_MAX = 128
ALIASES_MAX = 2000
CUSTOM_FIELD_VALUE_MAX = 200
LIST_IDS_MAX = 100
LIST_LIMIT_MAX = 100
#: POST /v2/contracts/list pages with body ``cursor``/``limit`` (metronome-sdk 4.12: "Range:
#: 1-20. Default: 20"); the spec names neither, the SDK pages by them.
CONTRACT_PAGE_MAX = 20
#: ``created_by`` of what the API creates: Metronome records the API client that made it.
API_CLIENT = "api"
#: Contract uniqueness_key (spec schema UniquenessKey).
UNIQUENESS_KEY_MAX = 128

#: Required configuration keys per provider (POST /v1/setCustomerBillingProviderConfigurations).
PROVIDER_REQUIRED_KEYS: dict[str, tuple[str, ...]] = {
    "aws_marketplace": ("aws_customer_id", "aws_product_code", "aws_region"),
    "azure_marketplace": ("azure_subscription_id",),
    "gcp_marketplace": ("gcp_entitlement_id", "gcp_service_name"),
    "stripe": ("stripe_customer_id", "stripe_collection_method"),
    "netsuite": ("netsuite_customer_id",),
}
DELIVERY_METHODS = ("direct_to_billing_provider", "aws_sqs", "tackle", "aws_sns")
ENTITIES = (
    "alert", "billable_metric", "charge", "commit", "contract_credit", "contract_product",
    "contract", "customer", "discount", "invoice", "professional_service", "product",
    "rate_card", "scheduled_charge", "subscription", "package_commit", "package_credit",
    "package_subscription", "package_scheduled_charge",
)  # fmt: skip


class ApiError(Exception):
    """A refusal the API would answer with ``status`` and body ``{"message": ..., **extra}``."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"message": self.message, **self.extra}


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)


def validate_configuration(item: Any, *, require_customer: bool) -> None:
    if not isinstance(item, dict):
        raise bad_request("billing provider configuration must be an object")
    if require_customer and not isinstance(item.get("customer_id"), str):
        raise bad_request("customer_id is required")
    provider = item.get("billing_provider")
    if provider not in PROVIDER_REQUIRED_KEYS:
        raise bad_request(f"unsupported billing_provider {provider!r}")
    method = item.get("delivery_method")
    if method not in DELIVERY_METHODS:
        raise bad_request(f"delivery_method must be one of {', '.join(DELIVERY_METHODS)}")
    configuration = item.get("configuration") or {}
    if not isinstance(configuration, dict):
        raise bad_request("configuration must be an object")
    missing = [k for k in PROVIDER_REQUIRED_KEYS[provider] if k not in configuration]
    if missing:
        raise bad_request(f"{provider} configuration is missing {', '.join(missing)}")


def aliases(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
        raise bad_request("ingest_aliases must be an array of strings")
    if len(value) > ALIASES_MAX:
        raise bad_request(f"at most {ALIASES_MAX} ingest aliases")
    for alias in value:
        if not 1 <= len(alias) <= ALIAS_MAX:
            raise bad_request(f"ingest alias length must be 1 to {ALIAS_MAX} characters")
    return list(dict.fromkeys(value))


def string_map(value: Any, name: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise bad_request(f"{name} must be an object of strings")
    return dict(value)


def required_str(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise bad_request(f"{name} is required")
    return value


def entity(body: dict[str, Any]) -> str:
    entity = body.get("entity")
    if entity not in ENTITIES:
        raise bad_request(f"entity must be one of {', '.join(ENTITIES)}")
    return str(entity)


def int_param(raw: str | None, name: str, *, default: int) -> int:
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise bad_request(f"{name} must be an integer") from exc


def timestamp(value: Any, name: str) -> datetime:
    """An RFC 3339 date-time (the spec's ``format: date-time``), in UTC.

    The offset is required: a time without one names no instant, and Metronome's contract
    boundaries are instants.
    """
    if not isinstance(value, str) or "T" not in value.upper():
        raise bad_request(f"{name} must be an RFC 3339 date-time, got {value!r}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise bad_request(f"{name} must be an RFC 3339 date-time, got {value!r}") from exc
    if parsed.tzinfo is None:
        raise bad_request(f"{name} must carry a UTC offset (RFC 3339), got {value!r}")
    return parsed.astimezone(UTC)


def rfc3339(moment: datetime) -> str:
    """How Metronome writes a date-time back: UTC, milliseconds, ``Z``."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def paged(
    items: Sequence[T], query: dict[str, str], *, default_limit: int
) -> tuple[list[T], str | None]:
    """One page of a ``limit``/``next_page`` list (spec parameters PageLimit, NextPage):
    ``limit`` 1-100 in the query, ``next_page`` an opaque cursor (here an offset)."""
    limit = int_param(query.get("limit"), "limit", default=default_limit)
    if not 1 <= limit <= LIST_LIMIT_MAX:
        raise bad_request(f"limit must be between 1 and {LIST_LIMIT_MAX}")
    offset = int_param(query.get("next_page"), "next_page", default=0)
    if offset < 0:
        raise bad_request("next_page is not a cursor this list gave out")
    more = offset + limit < len(items)
    return list(items[offset : offset + limit]), (str(offset + limit) if more else None)


def only_fields(body: dict[str, Any], allowed: frozenset[str], what: str) -> None:
    """Refuse fields ``what`` does not take: a misspelt or misplaced field must fail loudly,
    not be dropped (the worker would believe it had set it)."""
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise bad_request(f"{what} does not accept {', '.join(unknown)}")


def number(value: Any, name: str) -> float:
    """A JSON number (``type: number``); a boolean is not one, though Python says it is."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise bad_request(f"{name} must be a number")
    return value


def strings(value: Any, name: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise bad_request(f"{name} must be an array of strings")
    return list(value)


def upper_enum(value: Any, allowed: tuple[str, ...], name: str) -> str:
    """The spec's request enums take both spellings ("PREPAID", "prepaid"); answers use the
    upper-case one."""
    if not isinstance(value, str) or value not in (*allowed, *(a.lower() for a in allowed)):
        raise bad_request(f"{name} must be one of {', '.join(allowed)}")
    return value.upper()
