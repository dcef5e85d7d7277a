"""Metronome's answers read into our values of what it holds (worker/metronome/actual.py).

The SDK builds its models without validating them, so every field is checked here as it is
read: a wrong shape raises TypeError/AttributeError, which the gateway's ``read_answer`` turns
into an UnexpectedAnswerError instead of a crash deep in an engine.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, TypeVar

from worker.metronome.actual import (
    CatalogEntry,
    ContractState,
    CreatedContract,
    CustomerState,
    ProductState,
    SubscriptionIds,
)

_T = TypeVar("_T")
CUSTOM_FIELD_ENTITY: Literal["customer"] = "customer"


def required_text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError(f"expected a non-empty string, got {type(value).__name__}")
    return value


def next_page_cursor(page: Any) -> str | None:
    cursor = page.next_page
    if cursor is not None and not isinstance(cursor, str):
        raise TypeError(f"next_page is a {type(cursor).__name__}, not a string")
    return cursor or None


def page_customers(page: Any) -> list[CustomerState]:
    return [customer_state(item) for item in page.data]


def page_keys(page: Any, entity: str = CUSTOM_FIELD_ENTITY) -> list[tuple[str, bool]]:
    return [
        (required_text(item.key), bool(item.enforce_uniqueness))
        for item in page.data
        if item.entity == entity
    ]


def customer_state(item: Any) -> CustomerState:
    config = getattr(item, "customer_config", None)
    return CustomerState(
        id=required_text(item.id),
        name=required_text(item.name),
        ingest_aliases=tuple(item.ingest_aliases or ()),
        custom_fields=dict(item.custom_fields or {}),
        salesforce_account_id=getattr(config, "salesforce_account_id", None),
        archived=getattr(item, "archived_at", None) is not None,
    )


def page_items(page: Any, convert: Callable[[Any], _T]) -> list[_T]:
    return [convert(item) for item in page.data]


def body_cursor(page: Any) -> str | None:
    """v2 lists page with a ``cursor`` field in the body, not ``next_page``."""
    cursor = getattr(page, "cursor", None)
    if cursor is not None and not isinstance(cursor, str):
        raise TypeError(f"cursor is a {type(cursor).__name__}, not a string")
    return cursor or None


def page_contracts(page: Any) -> list[ContractState]:
    return [contract_state(item) for item in page.data]


def contract_state(item: Any) -> ContractState:
    return ContractState(
        id=required_text(item.id),
        uniqueness_key=getattr(item, "uniqueness_key", None),
        custom_fields=dict(getattr(item, "custom_fields", None) or {}),
        archived=getattr(item, "archived_at", None) is not None,
        starting_at=str(getattr(item, "starting_at", "") or ""),
        ending_before=(
            str(item.ending_before) if getattr(item, "ending_before", None) is not None else None
        ),
        subscriptions=subscription_ids(item),
    )


def subscription_ids(contract: Any, field: str = "subscriptions") -> SubscriptionIds | None:
    """(product id, billing frequency) -> subscription id of a contract as Metronome shows it
    (create's ``data.contract``, ContractV2; an edit's ``add_subscriptions`` with ``field``):
    a contract showing no ``subscriptions`` has none. None when a subscription lacks what is
    needed (the spec makes ``id`` optional): unknown, rather than a map missing one."""
    items = getattr(contract, field, None) or []
    if not isinstance(items, list):
        return None
    found: SubscriptionIds = {}
    for item in items:
        rate = getattr(item, "subscription_rate", None)
        product = getattr(getattr(rate, "product", None), "id", None)
        frequency = getattr(rate, "billing_frequency", None)
        subscription = getattr(item, "id", None)
        if not all(isinstance(v, str) and v for v in (product, frequency, subscription)):
            return None
        found[(str(product), str(frequency).upper())] = str(subscription)
    return found


def created_contract(data: Any) -> CreatedContract:
    """The create's answer: the id, and the subscriptions when it carries the contract."""
    contract = getattr(data, "contract", None)
    return CreatedContract(
        id=required_text(data.id),
        subscriptions=None if contract is None else subscription_ids(contract),
    )


def product_state(item: Any) -> ProductState:
    current = getattr(item, "current", None)
    return ProductState(
        id=required_text(item.id),
        name=str(getattr(current, "name", None) or getattr(item, "name", "") or ""),
        type=str(item.type),
        archived=getattr(item, "archived_at", None) is not None,
    )


def catalog_entry(item: Any) -> CatalogEntry:
    aliases = getattr(item, "aliases", None) or []
    return CatalogEntry(
        id=required_text(item.id),
        name=str(getattr(item, "name", "") or ""),
        aliases=tuple(str(getattr(a, "name", a)) for a in aliases),
    )
