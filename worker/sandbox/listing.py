"""``crmsync sandbox customers|contracts``: one line per customer or contract the Metronome
emulator holds, and under a contract one line per term, so a deal sold as line items can be
checked by eye (its seats, commits, discounts and fees) without reading JSON.

Pure: it formats the emulator's ``/_sandbox/customers`` and ``/_sandbox/contracts`` items.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

#: Metronome's USD credit type counts cents.
_CENTS = "USD (cents)"


def describe_customer(item: dict[str, Any]) -> str:
    account = (item.get("custom_fields") or {}).get("sfdc_account_id", "-")
    return f"{item.get('id')}  {item.get('name')!r}  account {account}"


def describe_contract(item: dict[str, Any]) -> str:
    """The contract's line, then an indented line per term (subscription, commit, override,
    scheduled charge)."""
    pricing = item.get("rate_card_alias") or item.get("rate_card_id") or item.get("package_id")
    ending = item.get("ending_before") or "evergreen"
    head = (
        f"{item.get('id')}  customer {item.get('customer_id')}  {item.get('name') or '-'!s}  "
        f"priced by {pricing or '-'}  {item.get('starting_at')} .. {ending}"
    )
    return "\n".join([head, *(f"  {term}" for term in contract_terms(item))])


def contract_terms(item: dict[str, Any]) -> Iterator[str]:
    for subscription in item.get("subscriptions") or []:
        rate = subscription.get("subscription_rate") or {}
        steps = ", then ".join(
            f"{step.get('quantity')} from {_day(step.get('starting_at'))}"
            for step in subscription.get("quantity_schedule") or []
        )
        frequency = str(rate.get("billing_frequency") or "").lower() or "-"
        yield f"subscription {_product(rate)}: {steps} ({frequency}, {_collection(subscription)})"
    for commit in item.get("commits") or []:
        schedule = commit.get("access_schedule") or {}
        amounts = [_amount(i.get("amount"), schedule) for i in schedule.get("schedule_items") or []]
        kind = str(commit.get("type") or "").lower()
        yield f"{kind} commit {_product(commit)}: {', '.join(amounts) or '-'}"
    for override in item.get("overrides") or []:
        if override.get("type") == "MULTIPLIER":
            what = f"multiplier {override.get('multiplier')}"
        else:
            what = str(override.get("type") or "override").lower()
        yield f"override {_product(override)}: {what} from {_day(override.get('starting_at'))}"
    for charge in item.get("scheduled_charges") or []:
        schedule = charge.get("schedule") or {}
        when = [
            f"{_amount(i.get('amount'), schedule)} on {_day(i.get('timestamp'))}"
            for i in schedule.get("schedule_items") or []
        ]
        yield f"scheduled charge {_product(charge)}: {', '.join(when) or '-'}"


def _product(term: dict[str, Any]) -> str:
    product = term.get("product") or {}
    return str(product.get("name") or product.get("id") or "-")


def _collection(subscription: dict[str, Any]) -> str:
    schedule = str(subscription.get("collection_schedule") or "").lower()
    return f"billed in {schedule}" if schedule else "-"


def _amount(amount: Any, schedule: dict[str, Any]) -> str:
    credit_type = str((schedule.get("credit_type") or {}).get("name") or "")
    if credit_type == _CENTS and isinstance(amount, int | float):
        return f"${amount / 100:,.2f}"
    return f"{amount} {credit_type}".strip()


def _day(moment: Any) -> str:
    return str(moment or "-")[:10]
