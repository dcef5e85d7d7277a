"""An expansion deal as an edit of the live contract it expands: pure.

A won deal the mapping marks as an expansion (``contract.deal_kind``) gets no contract of its
own: its line items become ``add_*`` terms on the contract it expands, starting on the
expansion's start date, and a seat line on a product and frequency the contract already
subscribes to becomes a quantity update of that subscription (``quantity_delta``) rather
than a second subscription. Exactly once: the edit's ``uniqueness_key`` is derived from the
expansion deal's 18-character id, and after any ambiguous outcome the same key is sent again
(a 409 means the edit was applied).

Which contract it edits is the worker's to find (a lookup field on the deal, else the
account's one live contract on the start date); the mapping says where to look.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import date
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mappings.contracts.engine import opportunity_id, parse_salesforce_date
from mappings.contracts.lifecycle import credit_type, deal_kind
from mappings.contracts.line_items import TermWindow, map_line_items, midnight
from mappings.contracts.model import ContractRule
from mappings.contracts.terms import LineTerms
from mappings.errors import MappingError
from mappings.records import NotAScalarError

EDIT_KEY_FORMAT = "crmsync:sfdc-expansion:{opportunity_id}"


def edit_uniqueness_key(opportunity_id: str) -> str:
    return EDIT_KEY_FORMAT.format(opportunity_id=opportunity_id)


class DesiredEdit(BaseModel):
    """What one expansion deal adds to the contract it expands."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    salesforce_opportunity_id: str
    salesforce_account_id: str
    uniqueness_key: str
    #: The deal it expands, when the deal names it (else: the account's one live contract).
    parent_opportunity_id: str | None = None
    starting_at: str
    credit_type_id: str | None = None
    line_terms: LineTerms = Field(default_factory=LineTerms)

    def canonical(self) -> dict[str, Any]:
        return json.loads(self.model_dump_json())  # type: ignore[no-any-return]

    def canonical_json(self) -> str:
        return json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))

    def state_hash(self) -> str:
        return hashlib.sha256(self.canonical_json().encode("utf-8")).hexdigest()

    def differences(self, before: Mapping[str, Any]) -> list[str]:
        now = self.canonical()
        return sorted(key for key in now.keys() | before.keys() if now.get(key) != before.get(key))

    def request_body(
        self,
        customer_id: str,
        contract_id: str,
        subscriptions: Mapping[tuple[str, str], str] | None = None,
    ) -> dict[str, Any]:
        """The ``POST /v2/contracts/edit`` body. ``subscriptions`` maps (product id, billing
        frequency) to the id of the contract's subscription on it: a seat line on one of
        those becomes a quantity update of it."""
        existing = subscriptions or {}
        body: dict[str, Any] = {
            "customer_id": customer_id,
            "contract_id": contract_id,
            "uniqueness_key": self.uniqueness_key,
        }
        added = self.line_terms.edit_fields()
        added.pop("add_subscriptions", None)
        new_subscriptions = []
        updates: dict[str, float] = {}
        for subscription in self.line_terms.subscriptions:
            target = existing.get((subscription.product_id, subscription.billing_frequency))
            if target is None:
                bound = subscription.model_copy(update={"starting_at": self.starting_at})
                new_subscriptions.append(bound.body())
            else:
                updates[target] = updates.get(target, 0) + subscription.quantity
        if new_subscriptions:
            added["add_subscriptions"] = new_subscriptions
        body.update(added)
        if updates:
            body["update_subscriptions"] = [
                {
                    "subscription_id": target,
                    "quantity_updates": [
                        {"starting_at": self.starting_at, "quantity_delta": _number(delta)}
                    ],
                }
                for target, delta in updates.items()
                if delta
            ]
        return body


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


def map_expansion(
    rule: ContractRule,
    record: dict[str, Any],
    owner_account_id: str,
    contract_end: date | None = None,
) -> DesiredEdit | None:
    """The edit an expansion deal makes, or None when the deal is not an expansion (or the
    block's ``when`` does not hold). ``contract_end`` is the expanded contract's end, which
    bounds the added commits and charges (None: evergreen, a year's access)."""
    opportunity = opportunity_id(record)
    if opportunity is None:
        raise MappingError("<unknown>", [("Id", "not an Opportunity id")])
    problems: list[tuple[str, str]] = []
    try:
        if rule.when is not None and not rule.when.holds(record):
            return None
    except NotAScalarError as exc:
        raise MappingError(opportunity, [("contract.when", str(exc))]) from exc
    kind, parent = deal_kind(rule.deal_kind, record, problems)
    if kind != "expansion":
        if problems:
            raise MappingError(opportunity, problems)
        return None
    start = _start(rule, record, problems)
    credit = credit_type(rule.currency, record, problems)
    terms = LineTerms()
    if rule.line_items is not None and start is not None:
        end = contract_end if contract_end is not None and contract_end > start else None
        terms = map_line_items(rule.line_items, record, TermWindow(start, end, credit), problems)
    if problems or start is None:
        raise MappingError(opportunity, problems or [("contract.starting_at", "no date")])
    if terms.is_empty():
        raise MappingError(
            opportunity, [("line_items", "an expansion with no line item adds nothing to edit")]
        )
    return DesiredEdit(
        salesforce_opportunity_id=opportunity,
        salesforce_account_id=owner_account_id,
        uniqueness_key=edit_uniqueness_key(opportunity),
        parent_opportunity_id=parent,
        starting_at=midnight(start),
        credit_type_id=credit,
        line_terms=terms,
    )


def _start(
    rule: ContractRule, record: dict[str, Any], problems: list[tuple[str, str]]
) -> date | None:
    try:
        raw = rule.starting_at.evaluate(record)
    except NotAScalarError as exc:
        problems.append(("contract.starting_at", str(exc)))
        return None
    parsed = parse_salesforce_date(raw)
    if parsed is None:
        fields = ", ".join(sorted(set(rule.starting_at.paths())))
        problems.append(("contract.starting_at", f"{raw!r} is not a date (from {fields})"))
    return parsed
