"""POST /v2/contracts/edit and POST /v2/contracts/get: how an expansion reaches a live
contract, and how a client reads one contract back.

The rules the worker's expansions lean on (``reference/metronome-openapi.json``,
``EditContractPayload``, and Metronome's guide to editing contracts):

- an unknown customer is a 400 ``{code: "CustomerNotFound"}``, a contract that is not this
  customer's (or is archived) a 400 ``{code: "ContractNotFound"}``;
- contract editing is enabled per Metronome client: when it is not, every edit is refused
  (a 400 whose message says so -- an operator's matter, not something a retry fixes);
- ``uniqueness_key`` (1-128) makes an edit exactly once: a key used before -- by an edit or
  by a contract, the emulator keeps one registry for the account -- is a 409 "This
  uniqueness key has already been used." and changes nothing;
- ``add_subscriptions``, ``add_commits``, ``add_recurring_commits``, ``add_overrides`` and
  ``add_scheduled_charges`` follow the create's rules (the subscription's rate against the
  contract's rate card); ``update_subscriptions`` changes a subscription of *this* contract
  by ``quantity_updates`` (``quantity`` >= 0 or a non-zero ``quantity_delta`` that leaves it
  non-negative, from ``starting_at``);
- the fields the spec gates to some clients are refused, and so are the ones the emulator
  does not model (rather than silently dropped): no automatic end-date change, archive or
  removal can pass through it unnoticed.

The edit is all or nothing: every part is checked before anything changes.
"""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, datetime
from typing import Any

from worker.sandbox.metronome import line_terms, rules
from worker.sandbox.metronome.commits import parse_commits
from worker.sandbox.metronome.contracts import UNIQUENESS_KEY_USED, Contract, ContractStore
from worker.sandbox.metronome.rules import ApiError, bad_request, rfc3339
from worker.sandbox.metronome.terms import uniqueness_key

EDITING_NOT_ENABLED = (
    "Contract editing is not enabled for this client. Reach out to your Metronome "
    "representative to enable it."
)
MODELLED = frozenset(
    {"customer_id", "contract_id", "uniqueness_key", "add_commits", "add_recurring_commits",
     "add_overrides", "add_scheduled_charges", "add_subscriptions", "update_subscriptions"}
)  # fmt: skip
GATED = frozenset(
    {"add_discounts", "add_professional_services", "add_reseller_royalties",
     "add_revenue_system_configuration_update", "add_spend_trackers", "archive_spend_trackers"}
)  # fmt: skip
UNMODELLED = frozenset(
    {"add_credits", "add_recurring_credits", "add_spend_threshold_configuration",
     "add_prepaid_balance_threshold_configuration", "add_billing_provider_configuration_update",
     "update_contract_name", "update_scheduled_charges", "update_commits", "update_credits",
     "update_recurring_commits", "update_recurring_credits",
     "update_spend_threshold_configuration", "update_prepaid_balance_threshold_configuration",
     "update_contract_end_date", "update_net_payment_terms_days",
     "allow_contract_ending_before_finalized_invoice", "archive_commits", "archive_credits",
     "archive_scheduled_charges", "remove_overrides"}
)  # fmt: skip
GET_FIELDS = frozenset(
    {"customer_id", "contract_id", "include_ledgers", "as_of_date", "include_balance"}
)


def find_contract(store: ContractStore, body: dict[str, Any]) -> Contract:
    """The live contract ``body`` names for its customer, or the spec's coded 400."""
    customer_id = rules.required_str(body, "customer_id")
    if customer_id not in store.directory.customers:
        raise ApiError(400, f"customer {customer_id} not found", code="CustomerNotFound")
    contract_id = rules.required_str(body, "contract_id")
    contract = store.contracts.get(contract_id)
    if contract is None or contract.customer_id != customer_id:
        raise ApiError(400, f"contract {contract_id} not found", code="ContractNotFound")
    return contract


def get(store: ContractStore, body: dict[str, Any]) -> dict[str, Any]:
    """POST /v2/contracts/get: the ContractV2 shape (archived contracts included)."""
    rules.only_fields(body, GET_FIELDS, "POST /v2/contracts/get")
    if "as_of_date" in body and body.get("include_ledgers"):
        raise bad_request("as_of_date cannot be used with include_ledgers")
    return store.v2(find_contract(store, body))


def edit(store: ContractStore, body: dict[str, Any]) -> dict[str, Any]:
    """POST /v2/contracts/edit: checks the request, then applies it whole; the ContractEdit
    it recorded."""
    _check_field_set(body)
    key = uniqueness_key(body)
    contract = find_contract(store, body)
    if contract.archived_at is not None:
        raise ApiError(400, f"contract {contract.id} is archived", code="ContractNotFound")
    if not store.editing_enabled:
        raise bad_request(EDITING_NOT_ENABLED)
    now = rfc3339(datetime.now(UTC))
    card = store.catalog.rate_card(str(contract.shown.get("rate_card_id")))
    context = line_terms.TermContext(
        store.catalog, card, contract.starting_at, contract.ending_before, now, contract.id
    )
    added = line_terms.parse_terms(body, context, edit=True)
    if "add_commits" in body:
        added["commits"] = parse_commits(
            body["add_commits"],
            contract_id=contract.id,
            created_at=now,
            catalog=store.catalog,
            check_fields=store.check_registered,
        )
    updates = _quantity_updates(contract, body.get("update_subscriptions", []), added)
    if key is not None and key in store.used_keys:
        raise ApiError(409, UNIQUENESS_KEY_USED)
    for name, terms in added.items():
        contract.shown.setdefault(name, []).extend(terms)
    for subscription, schedule in updates:
        subscription["quantity_schedule"] = schedule
    record: dict[str, Any] = {"id": str(uuid.uuid4()), "timestamp": now}
    if key is not None:
        store.used_keys[key] = contract.id
        record["uniqueness_key"] = key
    record.update({f"add_{name}": copy.deepcopy(terms) for name, terms in added.items()})
    if updates:
        record["update_subscriptions"] = [
            {"id": s["id"], "quantity_updates": copy.deepcopy(schedule)} for s, schedule in updates
        ]
    contract.edits.append(record)
    return record


def _check_field_set(body: dict[str, Any]) -> None:
    rules.only_fields(body, MODELLED | GATED | UNMODELLED, "POST /v2/contracts/edit")
    gated = sorted(GATED & set(body))
    if gated:
        raise bad_request(f"{gated[0]} is not available to this Metronome client")
    unmodelled = sorted(n for n in UNMODELLED & set(body) if body[n] not in ([], {}, None))
    if unmodelled:
        raise bad_request(f"{unmodelled[0]} is not modelled by the emulator")


def _quantity_updates(
    contract: Contract, raw: Any, added: dict[str, list[Any]]
) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Each subscription ``update_subscriptions`` names (already on the contract) with its
    new quantity schedule; nothing is changed here."""
    where = "update_subscriptions"
    if not isinstance(raw, list):
        raise bad_request(f"{where} must be an array")
    existing = {s["id"]: s for s in contract.shown.get("subscriptions", [])}
    out = []
    for n, item in enumerate(raw):
        at = f"{where}[{n}]"
        if not isinstance(item, dict):
            raise bad_request(f"{at} must be an object")
        rules.only_fields(item, frozenset({"subscription_id", "quantity_updates"}), at)
        subscription = existing.get(str(item.get("subscription_id")))
        if subscription is None:
            raise bad_request(f"{at}.subscription_id is not a subscription of this contract")
        schedule = copy.deepcopy(subscription["quantity_schedule"])
        updates = item.get("quantity_updates", [])
        if not isinstance(updates, list):
            raise bad_request(f"{at}.quantity_updates must be an array")
        for m, update in enumerate(updates):
            schedule = _apply_quantity(schedule, update, f"{at}.quantity_updates[{m}]")
        out.append((subscription, schedule))
    del added  # new subscriptions cannot be updated in the same edit (they have no id yet)
    return out


def _apply_quantity(
    schedule: list[dict[str, Any]], update: Any, where: str
) -> list[dict[str, Any]]:
    if not isinstance(update, dict):
        raise bad_request(f"{where} must be an object")
    rules.only_fields(update, frozenset({"starting_at", "quantity", "quantity_delta"}), where)
    start = rules.timestamp(update.get("starting_at"), f"{where}.starting_at")
    if ("quantity" in update) == ("quantity_delta" in update):
        raise bad_request(f"{where} needs quantity or quantity_delta, not both")
    current = 0.0
    for entry in schedule:
        if rules.timestamp(entry["starting_at"], where) <= start:
            current = entry["quantity"]
    if "quantity" in update:
        quantity = rules.number(update["quantity"], f"{where}.quantity")
    else:
        delta = rules.number(update["quantity_delta"], f"{where}.quantity_delta")
        if delta == 0:
            raise bad_request(f"{where}.quantity_delta can't be zero")
        quantity = current + delta
    if quantity < 0:
        raise bad_request(f"{where}: the subscription's quantity can't be negative")
    kept = [e for e in schedule if rules.timestamp(e["starting_at"], where) < start]
    if kept:
        kept[-1] = {**kept[-1], "ending_before": rfc3339(start)}
    return [*kept, {"quantity": quantity, "starting_at": rfc3339(start)}]
