"""The contract terms a deal's line items become: ``subscriptions``, ``recurring_commits``,
``overrides`` and ``scheduled_charges`` -- of POST /v1/contracts/create and, spelled
``add_*``, of POST /v2/contracts/edit -- checked as Metronome checks them and turned into
ContractV2's spelling.

The rules the worker leans on (``reference/metronome-openapi.json``):

- a subscription names a SUBSCRIPTION product and a billing frequency, and the pair must be a
  rate on the contract's rate card (the spec: "together with product_id, must match
  between the subscription and the rate card"); ``collection_schedule`` and ``proration``
  are required, ``initial_quantity`` too (QUANTITY_ONLY, the only mode modelled), never
  negative;
- a recurring commit draws on a FIXED product, with ``access_amount {unit_price,
  credit_type_id, quantity?}``, ``priority``, ``commit_duration {value}`` and
  ``starting_at`` required;
- an override starts somewhere (``starting_at``), names what it overrides (a product or
  product tags), and is a MULTIPLIER (``multiplier`` >= 0) or an OVERWRITE (an
  ``overwrite_rate`` with a ``rate_type``; a FLAT price >= 0); TIERED is not modelled;
- a scheduled charge is on a FIXED product with a ``schedule`` of dated items (amount, or
  unit_price x quantity), as a commit's invoice schedule is.

Amounts are in the credit types :mod:`worker.sandbox.metronome.catalog` knows.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from worker.sandbox.metronome import rules
from worker.sandbox.metronome.catalog import Catalog, Product, RateCard
from worker.sandbox.metronome.commits import credit_type_of, invoice_schedule
from worker.sandbox.metronome.rules import bad_request, rfc3339

BILLING_FREQUENCIES = ("MONTHLY", "QUARTERLY", "ANNUAL", "WEEKLY")
COLLECTION_SCHEDULES = ("ADVANCE", "ARREARS")
INVOICE_BEHAVIORS = ("BILL_IMMEDIATELY", "BILL_ON_NEXT_COLLECTION_DATE")
OVERRIDE_TYPES = ("OVERWRITE", "MULTIPLIER", "TIERED")
OVERWRITE_RATE_TYPES = ("FLAT", "PERCENTAGE", "SUBSCRIPTION")
RECURRENCES = ("MONTHLY", "QUARTERLY", "ANNUAL", "WEEKLY", "DAILY")
RECURRING_PRORATIONS = ("NONE", "FIRST", "LAST", "FIRST_AND_LAST")

SUBSCRIPTION_FIELDS = frozenset(
    {"subscription_rate", "name", "description", "collection_schedule", "proration",
     "initial_quantity", "starting_at", "ending_before", "temporary_id",
     "quantity_management_mode"}
)  # fmt: skip
RECURRING_COMMIT_FIELDS = frozenset(
    {"name", "product_id", "access_amount", "description", "rollover_fraction", "priority",
     "applicable_product_ids", "applicable_product_tags", "temporary_id", "rate_type",
     "starting_at", "ending_before", "commit_duration", "recurrence_frequency", "proration",
     "invoice_amount"}
)  # fmt: skip
OVERRIDE_FIELDS = frozenset(
    {"starting_at", "ending_before", "entitled", "type", "multiplier", "priority",
     "overwrite_rate", "product_id", "applicable_product_tags", "target",
     "is_commit_specific"}
)  # fmt: skip
SCHEDULED_CHARGE_FIELDS = frozenset({"product_id", "name", "schedule"})


@dataclass(frozen=True, slots=True)
class TermContext:
    """What a term is checked against: the catalog, the contract's rate card, its start
    (the default start of a subscription) and end, and when the request came in."""

    catalog: Catalog
    rate_card: RateCard | None
    contract_start: datetime
    contract_end: datetime | None
    created_at: str
    contract_id: str

    def product(self, value: Any, where: str, *types: str) -> Product:
        product = self.catalog.product(str(value))
        if product is None or product.archived_at is not None or product.type not in types:
            raise bad_request(
                f"{where} must be an existing, unarchived {' or '.join(types)} product, "
                f"got {value!r}"
            )
        return product


def _array(raw: Any, where: str) -> list[Any]:
    if not isinstance(raw, list):
        raise bad_request(f"{where} must be an array")
    return raw


def _object(raw: Any, where: str, allowed: frozenset[str]) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise bad_request(f"{where} must be an object")
    rules.only_fields(raw, allowed, where)
    return raw


def _ref(product: Product) -> dict[str, str]:
    return {"id": product.id, "name": product.name}


# -- subscriptions -------------------------------------------------------------------------------


def parse_subscriptions(raw: Any, where: str, ctx: TermContext) -> list[dict[str, Any]]:
    return [_subscription(item, f"{where}[{n}]", ctx) for n, item in enumerate(_array(raw, where))]


def _subscription(raw: Any, where: str, ctx: TermContext) -> dict[str, Any]:
    item = _object(raw, where, SUBSCRIPTION_FIELDS)
    rate = _object(
        item.get("subscription_rate"),
        f"{where}.subscription_rate",
        frozenset({"billing_frequency", "product_id"}),
    )
    frequency = rules.upper_enum(
        rate.get("billing_frequency"),
        BILLING_FREQUENCIES,
        f"{where}.subscription_rate.billing_frequency",
    )
    product = ctx.product(
        rate.get("product_id"), f"{where}.subscription_rate.product_id", "SUBSCRIPTION"
    )
    if ctx.rate_card is None or not ctx.rate_card.has_rate(product.id, frequency):
        card = "the contract's rate card" if ctx.rate_card is None else repr(ctx.rate_card.name)
        raise bad_request(
            f"{where}.subscription_rate: {card} has no {frequency} rate for product "
            f"{product.name!r}: product and billing frequency must match a rate on the rate card"
        )
    mode = rules.upper_enum(
        item.get("quantity_management_mode", "QUANTITY_ONLY"),
        ("QUANTITY_ONLY", "SEAT_BASED"),
        f"{where}.quantity_management_mode",
    )
    if mode != "QUANTITY_ONLY":
        raise bad_request(f"{where}.quantity_management_mode SEAT_BASED is not modelled")
    if "initial_quantity" not in item:
        raise bad_request(f"{where}.initial_quantity is required with QUANTITY_ONLY")
    quantity = rules.number(item["initial_quantity"], f"{where}.initial_quantity")
    if quantity < 0:
        raise bad_request(f"{where}.initial_quantity must not be negative")
    start = (
        rules.timestamp(item["starting_at"], f"{where}.starting_at")
        if "starting_at" in item
        else ctx.contract_start
    )
    end = _moment(item.get("ending_before"), f"{where}.ending_before", ctx.contract_end)
    if end is not None and end <= start:
        raise bad_request(f"{where}.ending_before must be after its starting_at")
    out: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "subscription_rate": {"billing_frequency": frequency, "product": _ref(product)},
        "collection_schedule": rules.upper_enum(
            item.get("collection_schedule"), COLLECTION_SCHEDULES, f"{where}.collection_schedule"
        ),
        "proration": _proration(item.get("proration"), f"{where}.proration"),
        "quantity_schedule": [{"quantity": quantity, "starting_at": rfc3339(start)}],
        "starting_at": rfc3339(start),
        "quantity_management_mode": mode,
        "billing_periods": {},
        "fiat_credit_type_id": credit_type_of({}, where)["id"],
    }
    if end is not None:
        out["ending_before"] = rfc3339(end)
    for name in ("name", "description"):
        if name in item:
            out[name] = _text(item[name], f"{where}.{name}")
    return out


def _proration(raw: Any, where: str) -> dict[str, Any]:
    item = _object(raw, where, frozenset({"is_prorated", "invoice_behavior"}))
    prorated = item.get("is_prorated", True)
    if not isinstance(prorated, bool):
        raise bad_request(f"{where}.is_prorated must be a boolean")
    behavior = rules.upper_enum(
        item.get("invoice_behavior", "BILL_IMMEDIATELY"),
        INVOICE_BEHAVIORS,
        f"{where}.invoice_behavior",
    )
    return {"is_prorated": prorated, "invoice_behavior": behavior}


def _moment(value: Any, where: str, default: datetime | None) -> datetime | None:
    return default if value is None else rules.timestamp(value, where)


# -- recurring commits ---------------------------------------------------------------------------


def parse_recurring_commits(raw: Any, where: str, ctx: TermContext) -> list[dict[str, Any]]:
    items = _array(raw, where)
    return [_recurring_commit(item, f"{where}[{n}]", ctx) for n, item in enumerate(items)]


def _recurring_commit(raw: Any, where: str, ctx: TermContext) -> dict[str, Any]:
    item = _object(raw, where, RECURRING_COMMIT_FIELDS)
    product = ctx.product(item.get("product_id"), f"{where}.product_id", "FIXED")
    access = _object(
        item.get("access_amount"),
        f"{where}.access_amount",
        frozenset({"unit_price", "quantity", "credit_type_id"}),
    )
    if "credit_type_id" not in access:
        raise bad_request(f"{where}.access_amount.credit_type_id is required")
    credit = credit_type_of(access, f"{where}.access_amount")
    amount: dict[str, Any] = {
        "unit_price": _non_negative(access.get("unit_price"), f"{where}.access_amount.unit_price"),
        "credit_type_id": credit["id"],
    }
    if "quantity" not in access:
        raise bad_request(f"{where}.access_amount.quantity is required (no subscription_config)")
    amount["quantity"] = _non_negative(access["quantity"], f"{where}.access_amount.quantity")
    duration = _object(
        item.get("commit_duration"), f"{where}.commit_duration", frozenset({"value", "unit"})
    )
    value = rules.number(duration.get("value"), f"{where}.commit_duration.value")
    if value <= 0:
        raise bad_request(f"{where}.commit_duration.value must be positive")
    if "priority" not in item:
        raise bad_request(f"{where}.priority is required")
    start = rules.timestamp(item.get("starting_at"), f"{where}.starting_at")
    out: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "contract": {"id": ctx.contract_id},
        "product": _ref(product),
        "access_amount": amount,
        "priority": rules.number(item["priority"], f"{where}.priority"),
        "commit_duration": {"value": value, "unit": "PERIODS"},
        "starting_at": rfc3339(start),
        "rate_type": rules.upper_enum(
            item.get("rate_type", "COMMIT_RATE"), ("COMMIT_RATE", "LIST_RATE"), f"{where}.rate_type"
        ),
    }
    if "ending_before" in item:
        end = rules.timestamp(item["ending_before"], f"{where}.ending_before")
        if end <= start:
            raise bad_request(f"{where}.ending_before must be after its starting_at")
        out["ending_before"] = rfc3339(end)
    if "recurrence_frequency" in item:
        out["recurrence_frequency"] = rules.upper_enum(
            item["recurrence_frequency"], RECURRENCES, f"{where}.recurrence_frequency"
        )
    if "proration" in item:
        out["proration"] = rules.upper_enum(
            item["proration"], RECURRING_PRORATIONS, f"{where}.proration"
        )
    if "invoice_amount" in item:
        out["invoice_amount"] = _invoice_amount(item["invoice_amount"], f"{where}.invoice_amount")
    if "name" in item:
        out["name"] = _text(item["name"], f"{where}.name")
    return out


def _invoice_amount(raw: Any, where: str) -> dict[str, Any]:
    item = _object(raw, where, frozenset({"unit_price", "quantity", "credit_type_id"}))
    missing = [k for k in ("unit_price", "quantity", "credit_type_id") if k not in item]
    if missing:
        raise bad_request(f"{where} needs unit_price, quantity and credit_type_id")
    return {
        "unit_price": _non_negative(item["unit_price"], f"{where}.unit_price"),
        "quantity": _non_negative(item["quantity"], f"{where}.quantity"),
        "credit_type_id": credit_type_of(item, where)["id"],
    }


# -- overrides -----------------------------------------------------------------------------------


def parse_overrides(raw: Any, where: str, ctx: TermContext) -> list[dict[str, Any]]:
    return [_override(item, f"{where}[{n}]", ctx) for n, item in enumerate(_array(raw, where))]


def _override(raw: Any, where: str, ctx: TermContext) -> dict[str, Any]:
    item = _object(raw, where, OVERRIDE_FIELDS | frozenset({"override_specifiers", "tiers"}))
    for unmodelled in ("override_specifiers", "tiers"):
        if unmodelled in item:
            raise bad_request(f"{where}.{unmodelled} is not modelled by the emulator")
    start = rules.timestamp(item.get("starting_at"), f"{where}.starting_at")
    out: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "created_at": ctx.created_at,
        "starting_at": rfc3339(start),
    }
    if "ending_before" in item:
        end = rules.timestamp(item["ending_before"], f"{where}.ending_before")
        if end <= start:
            raise bad_request(f"{where}.ending_before must be after its starting_at")
        out["ending_before"] = rfc3339(end)
    if "product_id" in item:
        product = ctx.product(
            item["product_id"],
            f"{where}.product_id",
            "USAGE",
            "SUBSCRIPTION",
            "COMPOSITE",
            "FIXED",
            "PRO_SERVICE",
        )
        out["product"] = _ref(product)
    if "applicable_product_tags" in item:
        out["applicable_product_tags"] = rules.strings(
            item["applicable_product_tags"], f"{where}.applicable_product_tags"
        )
    if "product" not in out and "applicable_product_tags" not in out:
        raise bad_request(f"{where} must name a product_id or applicable_product_tags")
    kind = rules.upper_enum(item.get("type"), OVERRIDE_TYPES, f"{where}.type")
    out["type"] = kind
    if kind == "TIERED":
        raise bad_request(f"{where}: TIERED overrides are not modelled by the emulator")
    if kind == "MULTIPLIER":
        if "multiplier" not in item:
            raise bad_request(f"{where}.multiplier is required for a MULTIPLIER override")
        out["multiplier"] = _non_negative(item["multiplier"], f"{where}.multiplier")
    elif "multiplier" in item:
        raise bad_request(f"{where}.multiplier is only for a MULTIPLIER override")
    if kind == "OVERWRITE":
        out["overwrite_rate"] = _overwrite_rate(
            item.get("overwrite_rate"), f"{where}.overwrite_rate"
        )
    elif "overwrite_rate" in item:
        raise bad_request(f"{where}.overwrite_rate is only for an OVERWRITE override")
    for flag in ("entitled", "is_commit_specific"):
        if flag in item:
            if not isinstance(item[flag], bool):
                raise bad_request(f"{where}.{flag} must be a boolean")
            out[flag] = item[flag]
    if "priority" in item:
        out["priority"] = rules.number(item["priority"], f"{where}.priority")
    return out


def _overwrite_rate(raw: Any, where: str) -> dict[str, Any]:
    item = _object(
        raw, where, frozenset({"rate_type", "price", "quantity", "is_prorated", "credit_type_id"})
    )
    kind = rules.upper_enum(item.get("rate_type"), OVERWRITE_RATE_TYPES, f"{where}.rate_type")
    out: dict[str, Any] = {"rate_type": kind, "credit_type": credit_type_of(item, where)}
    if "price" not in item:
        raise bad_request(f"{where}.price is required for a {kind} rate")
    out["price"] = _non_negative(item["price"], f"{where}.price")
    if kind == "PERCENTAGE" and out["price"] > 1:
        raise bad_request(f"{where}.price of a PERCENTAGE rate is a fraction between 0 and 1")
    if "quantity" in item:
        out["quantity"] = _non_negative(item["quantity"], f"{where}.quantity")
    if "is_prorated" in item:
        if kind != "SUBSCRIPTION" or item["is_prorated"] is not True:
            raise bad_request(
                f"{where}.is_prorated is only for a SUBSCRIPTION rate, and must be true"
            )
        out["is_prorated"] = True
    return out


# -- scheduled charges ---------------------------------------------------------------------------


def parse_scheduled_charges(raw: Any, where: str, ctx: TermContext) -> list[dict[str, Any]]:
    items = _array(raw, where)
    return [_scheduled_charge(item, f"{where}[{n}]", ctx) for n, item in enumerate(items)]


def _scheduled_charge(raw: Any, where: str, ctx: TermContext) -> dict[str, Any]:
    item = _object(raw, where, SCHEDULED_CHARGE_FIELDS)
    product = ctx.product(item.get("product_id"), f"{where}.product_id", "FIXED")
    if "schedule" not in item:
        raise bad_request(f"{where}.schedule is required")
    schedule = invoice_schedule(item["schedule"], f"{where}.schedule")
    if not schedule["schedule_items"]:
        raise bad_request(f"{where}.schedule.schedule_items must not be empty")
    schedule.pop("do_not_invoice")
    out: dict[str, Any] = {"id": str(uuid.uuid4()), "product": _ref(product), "schedule": schedule}
    if "name" in item:
        out["name"] = _text(item["name"], f"{where}.name")
    return out


def _non_negative(value: Any, where: str) -> float:
    number = rules.number(value, where)
    if number < 0:
        raise bad_request(f"{where} must not be negative")
    return number


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise bad_request(f"{where} must be a non-empty string")
    return value


#: Each line-item term: its create field, its edit field, and its parser.
TERM_KINDS = (
    ("subscriptions", "add_subscriptions", parse_subscriptions),
    ("recurring_commits", "add_recurring_commits", parse_recurring_commits),
    ("overrides", "add_overrides", parse_overrides),
    ("scheduled_charges", "add_scheduled_charges", parse_scheduled_charges),
)


def parse_terms(body: dict[str, Any], ctx: TermContext, *, edit: bool) -> dict[str, list[Any]]:
    """The line-item terms of a create (``subscriptions`` ...) or an edit (``add_...``),
    keyed by their ContractV2 field; only the kinds the body names."""
    out: dict[str, list[Any]] = {}
    for shown, added, parse in TERM_KINDS:
        name = added if edit else shown
        if name in body:
            out[shown] = parse(body[name], name, ctx)
    return out
