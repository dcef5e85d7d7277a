"""A contract's commits: the ``CommitInput`` rules of POST /v1/contracts/create and the
``CommitV2`` shape POST /v2/contracts/list answers with.

The rules are the ones that decide whether a deal's money reaches Metronome as the seller
meant it (``CommitInput`` in the official spec):

- a commit draws on a FIXED product (a USAGE or SUBSCRIPTION product is refused);
- ``access_schedule.schedule_items`` (amount, starting_at, ending_before) is required and
  amounts are never negative;
- PREPAID: ``invoice_schedule`` is optional, and without one the commit is complimentary;
- POSTPAID: one access item and exactly one invoice item whose amount equals the access
  total (the spec: "the total must match access_schedule amount");
- an invoice item is priced by ``amount`` or by ``unit_price`` x ``quantity``.

Amounts are USD cents unless a ``credit_type_id`` names another of the account's fiat
credit types.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from typing import Any

from worker.sandbox.metronome import rules
from worker.sandbox.metronome.catalog import FIAT_CREDIT_TYPES, USD_CENTS, Catalog
from worker.sandbox.metronome.rules import bad_request, rfc3339

COMMIT_TYPES = ("PREPAID", "POSTPAID")
RATE_TYPES = ("COMMIT_RATE", "LIST_RATE")
#: CommitInput fields the emulator models; anything else in the spec is refused below.
MODELLED = frozenset(
    {
        "type", "rate_type", "name", "product_id", "access_schedule", "invoice_schedule",
        "description", "rollover_fraction", "priority", "applicable_product_ids",
        "applicable_product_tags", "custom_fields", "temporary_id",
    }
)  # fmt: skip
#: In the spec, available only to some clients or behind a feature flag (``x-mint`` groups).
GATED = frozenset({"netsuite_sales_order_id", "spend_tracker_attributes"})
#: In the spec but not modelled: refused, so a test never passes on terms the emulator drops.
UNMODELLED = {
    "amount": "is deprecated (the spec: use access_schedule and invoice_schedule)",
    "specifiers": "is not modelled by the emulator",
    "hierarchy_configuration": "is not modelled by the emulator",
}

INVOICE_SCHEDULE_FIELDS = frozenset(
    {"credit_type_id", "schedule_items", "do_not_invoice", "recurring_schedule"}
)
#: Checks custom field values against the keys registered for an entity ("commit" here).
FieldCheck = Callable[[str, dict[str, str]], None]


def parse_commits(
    raw: Any, *, contract_id: str, created_at: str, catalog: Catalog, check_fields: FieldCheck
) -> list[dict[str, Any]]:
    """The ``commits`` of a create request as CommitV2 objects, or the 400 it deserves."""
    if not isinstance(raw, list):
        raise bad_request("commits must be an array")
    return [
        _commit(
            item,
            f"commits[{n}]",
            contract_id=contract_id,
            created_at=created_at,
            catalog=catalog,
            check_fields=check_fields,
        )
        for n, item in enumerate(raw)
    ]


def _commit(
    item: Any,
    where: str,
    *,
    contract_id: str,
    created_at: str,
    catalog: Catalog,
    check_fields: FieldCheck,
) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise bad_request(f"{where} must be an object")
    rules.only_fields(item, MODELLED | GATED | frozenset(UNMODELLED), where)
    gated = sorted(GATED & set(item))
    if gated:
        raise bad_request(f"{where}.{gated[0]} is not available to this Metronome client")
    for name, why in UNMODELLED.items():
        if name in item:
            raise bad_request(f"{where}.{name} {why}")
    kind = rules.upper_enum(item.get("type"), COMMIT_TYPES, f"{where}.type")
    product = catalog.product(str(item.get("product_id")))
    if product is None or product.type != "FIXED" or product.archived_at is not None:
        raise bad_request(
            f"{where}.product_id must be an existing, unarchived FIXED product, "
            f"got {item.get('product_id')!r}"
        )
    access = _access_schedule(item.get("access_schedule"), f"{where}.access_schedule")
    access_total = sum(i["amount"] for i in access["schedule_items"])
    invoice = None
    if "invoice_schedule" in item:
        invoice = _invoice_schedule(item["invoice_schedule"], f"{where}.invoice_schedule")
    if kind == "POSTPAID":
        _check_postpaid(where, access, invoice, access_total)
    commit: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "type": kind,
        "product": {"id": product.id, "name": product.name},
        "contract": {"id": contract_id},
        "access_schedule": access,
        "created_at": created_at,
        "created_by": rules.API_CLIENT,
    }
    if invoice is not None:
        commit["invoice_schedule"] = invoice
    commit.update(_optional_terms(item, where, catalog, check_fields))
    return commit


def _check_postpaid(
    where: str, access: dict[str, Any], invoice: dict[str, Any] | None, access_total: float
) -> None:
    if len(access["schedule_items"]) != 1:
        raise bad_request(f"{where}: a POSTPAID commit takes exactly one access schedule item")
    items = [] if invoice is None else invoice["schedule_items"]
    if len(items) != 1:
        raise bad_request(f"{where}: a POSTPAID commit needs exactly one invoice schedule item")
    if not math.isclose(items[0]["amount"], access_total, abs_tol=1e-9):
        raise bad_request(
            f"{where}: a POSTPAID commit's invoice amount ({items[0]['amount']}) must equal "
            f"its access schedule total ({access_total})"
        )


def _optional_terms(
    item: dict[str, Any], where: str, catalog: Catalog, check_fields: FieldCheck
) -> dict[str, Any]:
    """The optional CommitInput terms, checked and echoed as CommitV2 spells them."""
    out: dict[str, Any] = {}
    if "name" in item:
        out["name"] = _text(item["name"], f"{where}.name")
    if "rate_type" in item:
        out["rate_type"] = rules.upper_enum(item["rate_type"], RATE_TYPES, f"{where}.rate_type")
    for name in ("priority", "rollover_fraction"):
        if name in item:
            out[name] = rules.number(item[name], f"{where}.{name}")
    if "rollover_fraction" in out and not 0 <= out["rollover_fraction"] <= 1:
        raise bad_request(f"{where}.rollover_fraction must be between 0 and 1")
    if "applicable_product_ids" in item:
        ids = rules.strings(item["applicable_product_ids"], f"{where}.applicable_product_ids")
        unknown = [i for i in ids if catalog.product(i) is None]
        if unknown:
            raise bad_request(f"{where}.applicable_product_ids: unknown products {unknown}")
        out["applicable_product_ids"] = ids
    if "applicable_product_tags" in item:
        tags = rules.strings(item["applicable_product_tags"], f"{where}.applicable_product_tags")
        out["applicable_product_tags"] = tags
    if "custom_fields" in item:
        fields = rules.string_map(item["custom_fields"], f"{where}.custom_fields")
        check_fields("commit", fields)
        out["custom_fields"] = fields
    for name in ("description", "temporary_id"):
        if name in item:
            _text(item[name], f"{where}.{name}")  # checked; CommitV2 has no place for it
    return out


def _access_schedule(raw: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise bad_request(
            f"{where} is required: schedule_items of amount, starting_at, ending_before"
        )
    rules.only_fields(raw, frozenset({"credit_type_id", "schedule_items"}), where)
    credit_type = credit_type_of(raw, where)
    items = raw.get("schedule_items")
    if not isinstance(items, list) or not items:
        raise bad_request(f"{where}.schedule_items must be a non-empty array")
    parsed = []
    for n, entry in enumerate(items):
        at = f"{where}.schedule_items[{n}]"
        if not isinstance(entry, dict):
            raise bad_request(f"{at} must be an object")
        rules.only_fields(entry, frozenset({"amount", "starting_at", "ending_before"}), at)
        start = rules.timestamp(entry.get("starting_at"), f"{at}.starting_at")
        end = rules.timestamp(entry.get("ending_before"), f"{at}.ending_before")
        if end <= start:
            raise bad_request(f"{at}.ending_before must be after its starting_at")
        parsed.append(
            {
                "id": str(uuid.uuid4()),
                "amount": _amount(entry.get("amount"), f"{at}.amount"),
                "starting_at": rfc3339(start),
                "ending_before": rfc3339(end),
            }
        )
    return {"credit_type": credit_type, "schedule_items": parsed}


def _invoice_schedule(raw: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise bad_request(f"{where} must be an object")
    rules.only_fields(raw, INVOICE_SCHEDULE_FIELDS, where)
    if "recurring_schedule" in raw:
        raise bad_request(f"{where}.recurring_schedule is not modelled by the emulator")
    credit_type = credit_type_of(raw, where)
    do_not_invoice = raw.get("do_not_invoice", False)
    if not isinstance(do_not_invoice, bool):
        raise bad_request(f"{where}.do_not_invoice must be a boolean")
    items = raw.get("schedule_items", [])
    if not isinstance(items, list):
        raise bad_request(f"{where}.schedule_items must be an array")
    parsed = []
    for n, entry in enumerate(items):
        at = f"{where}.schedule_items[{n}]"
        if not isinstance(entry, dict):
            raise bad_request(f"{at} must be an object")
        rules.only_fields(entry, frozenset({"timestamp", "amount", "unit_price", "quantity"}), at)
        moment = rules.timestamp(entry.get("timestamp"), f"{at}.timestamp")
        amount, unit_price, quantity = _priced(entry, at)
        parsed.append(
            {
                "id": str(uuid.uuid4()),
                "invoice_id": None,
                "amount": amount,
                "unit_price": unit_price,
                "quantity": quantity,
                "timestamp": rfc3339(moment),
            }
        )
    return {
        "credit_type": credit_type,
        "schedule_items": parsed,
        "do_not_invoice": do_not_invoice,
    }


def _priced(entry: dict[str, Any], at: str) -> tuple[float, float, float]:
    """(amount, unit_price, quantity): ``amount`` alone is one unit at that price;
    ``unit_price`` and ``quantity`` go together; all three must agree."""
    has_amount = "amount" in entry
    has_unit = "unit_price" in entry or "quantity" in entry
    if not has_amount and not has_unit:
        raise bad_request(f"{at} needs an amount, or a unit_price and a quantity")
    if has_unit:
        if "unit_price" not in entry or "quantity" not in entry:
            raise bad_request(f"{at}: unit_price and quantity go together")
        unit_price = _amount(entry["unit_price"], f"{at}.unit_price")
        quantity = _amount(entry["quantity"], f"{at}.quantity")
        amount = unit_price * quantity
        if has_amount and not math.isclose(
            _amount(entry["amount"], f"{at}.amount"), amount, abs_tol=1e-9
        ):
            raise bad_request(f"{at}: amount must equal unit_price x quantity")
        return amount, unit_price, quantity
    amount = _amount(entry["amount"], f"{at}.amount")
    return amount, amount, 1


def _amount(value: Any, where: str) -> float:
    number = rules.number(value, where)
    if number < 0:
        raise bad_request(f"{where} must not be negative")
    return number


def credit_type_of(raw: dict[str, Any], where: str) -> dict[str, str]:
    """The credit type ``raw`` names by ``credit_type_id`` (USD cents when absent): one of
    the account's fiat credit types, or a 400."""
    wanted = raw.get("credit_type_id", USD_CENTS["id"])
    found = FIAT_CREDIT_TYPES.get(str(wanted))
    if found is None:
        raise bad_request(f"{where}.credit_type_id {wanted!r} is not a credit type of this account")
    return dict(found)


def invoice_schedule(raw: Any, where: str) -> dict[str, Any]:
    """A ``SchedulePointInTimeInput`` (commit invoices, scheduled charges) as answered."""
    return _invoice_schedule(raw, where)


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise bad_request(f"{where} must be a non-empty string")
    return value
