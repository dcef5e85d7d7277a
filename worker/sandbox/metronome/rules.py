"""The request rules the Metronome emulator enforces, and the error it raises.

Kept apart from the store so the store reads as the data model; each constant here is a
limit or enum from ``reference/metronome-openapi.json`` or DESIGN.md "Metronome API facts".
"""

from __future__ import annotations

from typing import Any

NAME_MAX = 160
ALIAS_MAX = 128
ALIASES_MAX = 2000
CUSTOM_FIELD_VALUE_MAX = 200
LIST_IDS_MAX = 100
LIST_LIMIT_MAX = 100

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
