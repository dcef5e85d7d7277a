"""The terms of a POST /v1/contracts/create request that need no stored state: which
fields may appear, the contract's boundaries, the uniqueness key's shape, the usage
statement schedule, and what a package brings -- each checked as Metronome's spec and
contract guides say, and turned into ContractV2's spelling.

The field sets come from ``CreateContractPayload``: the ones the emulator models, the ones
the spec marks (``x-mint``) as available only to one client's configuration or behind a
feature flag -- this emulated account has neither, so they are refused like a field the
spec does not have -- and the ones it does not model, refused unless empty so that a test
never passes on terms the emulator would silently drop.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from worker.sandbox.metronome import rules
from worker.sandbox.metronome.catalog import Package
from worker.sandbox.metronome.rules import UNIQUENESS_KEY_MAX, bad_request, rfc3339

#: CreateContractPayload's properties the emulator models.
MODELLED = frozenset(
    {
        "customer_id", "starting_at", "ending_before", "name", "uniqueness_key",
        "rate_card_id", "rate_card_alias", "package_id", "package_alias",
        "net_payment_terms_days", "usage_statement_schedule", "custom_fields",
        "billing_provider_configuration", "commits", "transition",
        "multiplier_override_prioritization", "scheduled_charges_on_usage_invoices",
        "subscriptions", "recurring_commits", "overrides", "scheduled_charges",
    }
)  # fmt: skip
#: In the spec, but ``x-mint``-gated to one client's configuration or a feature flag.
GATED = frozenset(
    {
        "netsuite_sales_order_id", "salesforce_opportunity_id", "total_contract_value",
        "discounts", "professional_services", "reseller_royalties",
        "revenue_system_configuration", "spend_trackers",
    }
)  # fmt: skip
#: In the spec but not modelled: accepted only empty, refused otherwise.
UNMODELLED = frozenset(
    {
        "credits", "recurring_credits", "usage_filter", "spend_threshold_configuration",
        "prepaid_balance_threshold_configuration", "hierarchy_configuration",
    }
)  # fmt: skip
#: With a package, only these (the spec, CreateContractPayload.package_id).
PACKAGE_FIELDS = frozenset(
    {"customer_id", "starting_at", "package_id", "package_alias", "uniqueness_key",
     "transition", "custom_fields"}
)  # fmt: skip
FREQUENCIES = ("MONTHLY", "QUARTERLY", "ANNUAL", "WEEKLY")
STATEMENT_DAYS = ("FIRST_OF_MONTH", "CONTRACT_START", "CUSTOM_DATE")
PRIORITIZATIONS = ("LOWEST_MULTIPLIER", "EXPLICIT")


def check_field_set(body: dict[str, Any]) -> None:
    """Which top-level fields may appear: the spec's, less the gated and unmodelled ones,
    and with a package only the spec's short list (its words: "only customer_id,
    starting_at, package_id, uniqueness_key, transition, and custom_fields are allowed")."""
    rules.only_fields(body, MODELLED | GATED | UNMODELLED, "POST /v1/contracts/create")
    nulls = sorted(name for name, value in body.items() if value is None)
    if nulls:  # the spec marks none of them nullable: leave a field out instead
        raise bad_request(f"{nulls[0]} must not be null")
    gated = sorted(GATED & set(body))
    if gated:
        raise bad_request(
            f"{gated[0]} is not available to this Metronome client (the spec: its "
            "availability depends on the client's configuration)"
        )
    unmodelled = sorted(name for name in UNMODELLED & set(body) if body[name] not in ([], {}))
    if unmodelled:
        raise bad_request(f"{unmodelled[0]} is not modelled by the emulator")
    if "package_id" in body or "package_alias" in body:
        extra = sorted(set(body) - PACKAGE_FIELDS)
        if extra:
            raise bad_request(
                "with a package only customer_id, starting_at, package_id or package_alias, "
                f"uniqueness_key, transition and custom_fields are allowed; got {', '.join(extra)}"
            )


def boundary(value: Any, name: str) -> datetime:
    """A contract boundary: RFC 3339 and on the hour in UTC (practitioners report Metronome
    refuses other times; crmsync sends midnight UTC, which always passes)."""
    if value is None:
        raise bad_request(f"{name} is required")
    moment = rules.timestamp(value, name)
    if (moment.minute, moment.second, moment.microsecond) != (0, 0, 0):
        raise bad_request(f"{name} must be on the hour (UTC), got {value!r}")
    return moment


def ending_before(body: dict[str, Any], starting_at: datetime) -> datetime | None:
    if body.get("ending_before") is None:
        return None
    ending_before = boundary(body["ending_before"], "ending_before")
    if ending_before <= starting_at:
        raise bad_request("ending_before must be after starting_at")
    return ending_before


def uniqueness_key(body: dict[str, Any]) -> str | None:
    key = body.get("uniqueness_key")
    if key is None:
        return None
    if not isinstance(key, str) or not 1 <= len(key) <= UNIQUENESS_KEY_MAX:
        raise bad_request(f"uniqueness_key must be 1 to {UNIQUENESS_KEY_MAX} characters")
    return key


def plain_terms(body: dict[str, Any], starting_at: datetime) -> dict[str, Any]:
    """The terms of a contract priced by a rate card, in ContractV2's spelling."""
    terms: dict[str, Any] = {
        "usage_statement_schedule": statement_schedule(
            body.get("usage_statement_schedule"), starting_at
        )
    }
    if "name" in body:
        if not isinstance(body["name"], str):
            raise bad_request("name must be a string")
        terms["name"] = body["name"]
    if "net_payment_terms_days" in body:
        days = rules.number(body["net_payment_terms_days"], "net_payment_terms_days")
        if days < 0:
            raise bad_request("net_payment_terms_days must not be negative")
        terms["net_payment_terms_days"] = days
    if "multiplier_override_prioritization" in body:
        terms["multiplier_override_prioritization"] = rules.upper_enum(
            body["multiplier_override_prioritization"],
            PRIORITIZATIONS,
            "multiplier_override_prioritization",
        )
    if "scheduled_charges_on_usage_invoices" in body:
        if body["scheduled_charges_on_usage_invoices"] != "ALL":
            raise bad_request("scheduled_charges_on_usage_invoices must be ALL")
        terms["scheduled_charges_on_usage_invoices"] = "ALL"
    return terms


def package_terms(package: Package, starting_at: datetime) -> dict[str, Any]:
    terms: dict[str, Any] = {
        "package_id": package.id,
        "rate_card_id": package.rate_card_id,
        "name": package.name,
        "commits": [],
        "usage_statement_schedule": statement_schedule(
            {"frequency": package.usage_statement_frequency}, starting_at
        ),
    }
    if package.net_payment_terms_days is not None:
        terms["net_payment_terms_days"] = package.net_payment_terms_days
    return terms


def statement_schedule(raw: Any, starting_at: datetime) -> dict[str, str]:
    """UsageStatementScheduleInput -> UsageStatementSchedule: the frequency and the date
    statements are anchored on (default: monthly on the first of the month)."""
    where = "usage_statement_schedule"
    raw = {"frequency": "MONTHLY"} if raw is None else raw
    if not isinstance(raw, dict):
        raise bad_request(f"{where} must be an object")
    rules.only_fields(
        raw,
        frozenset({"frequency", "day", "billing_anchor_date", "invoice_generation_starting_at"}),
        where,
    )
    frequency = rules.upper_enum(raw.get("frequency"), FREQUENCIES, f"{where}.frequency")
    day = rules.upper_enum(raw.get("day", "FIRST_OF_MONTH"), STATEMENT_DAYS, f"{where}.day")
    if "invoice_generation_starting_at" in raw:
        rules.timestamp(
            raw["invoice_generation_starting_at"], f"{where}.invoice_generation_starting_at"
        )
    if day == "CUSTOM_DATE":
        if "billing_anchor_date" not in raw:
            raise bad_request(f"{where}.billing_anchor_date is required with day CUSTOM_DATE")
        anchor = rules.timestamp(raw["billing_anchor_date"], f"{where}.billing_anchor_date")
    elif "billing_anchor_date" in raw:
        raise bad_request(f"{where}.billing_anchor_date is only used with day CUSTOM_DATE")
    elif day == "CONTRACT_START":
        anchor = starting_at
    else:
        anchor = starting_at.replace(day=1, hour=0)
    return {"frequency": frequency, "billing_anchor_date": rfc3339(anchor)}
