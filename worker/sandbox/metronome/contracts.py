"""The Metronome emulator's contracts: the rules of POST /v1/contracts/create, the v2 list
and archive, free of HTTP.

A customer is billed only through a contract (Metronome's "Provision a customer" guide), and
these are the
rules the worker's contract step leans on, so the emulator refuses what Metronome refuses:

- ``customer_id`` must name a customer (404, as every v1 endpoint answers);
- ``starting_at`` is required, RFC 3339 with an offset, and hour-aligned (practitioners
  report Metronome refuses other times; crmsync sends midnight UTC); ``ending_before``, if
  any, is hour-aligned and after it;
- pricing is one rate card (``rate_card_id`` or ``rate_card_alias``, the alias resolved as
  of ``starting_at``) or one package (``package_id`` or ``package_alias``); with a package
  only ``customer_id, starting_at, package_*, uniqueness_key, transition, custom_fields``
  are allowed (the spec's words);
- ``uniqueness_key`` (1-128) is unique across the whole account and never released, not
  even by archiving the contract: a reuse is a 409 "This uniqueness key has already been
  used.";
- contract custom fields need keys registered for entity ``contract``
  (``/v1/customFields/addKey``), values of at most 200 characters, and an
  ``enforce_uniqueness`` key refuses a second contract with the same value (409);
- ``billing_provider_configuration`` names one of *this* customer's live configurations,
  by id or by (provider, delivery method) matching exactly one;
- commits follow :mod:`worker.sandbox.metronome.commits`, subscriptions, recurring commits,
  overrides and scheduled charges :mod:`worker.sandbox.metronome.line_terms`;
- a top-level field the spec does not have is refused, and so are the fields the spec marks
  as available only to some clients (this emulated account is not one of them) and the
  ones the emulator does not model (refused rather than silently dropped).

The contract keeps the request it was created from (``Contract.given``). The create answers
``{data: {id, contract}}``: the created contract in its ContractV2 shape, which also satisfies
the create answer's own schema (``CreateContractResponse.contract``); a switch
(``full_write_answers``) drops ``contract`` (the spec makes it optional), and the edit's
``edit``, for clients that must cope without them.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from worker.sandbox.metronome import line_terms, rules, terms
from worker.sandbox.metronome.catalog import Catalog, Package, RateCard
from worker.sandbox.metronome.commits import parse_commits
from worker.sandbox.metronome.rules import (
    API_CLIENT,
    CONTRACT_PAGE_MAX,
    CUSTOM_FIELD_VALUE_MAX,
    ApiError,
    bad_request,
    rfc3339,
)
from worker.sandbox.metronome.store import BillingConfiguration, Customer, MetronomeStore

UNIQUENESS_KEY_USED = "This uniqueness key has already been used."

#: POST /v2/contracts/list body: the spec's properties plus the SDK's ``cursor``/``limit``.
LIST_FIELDS = frozenset(
    {"customer_id", "include_archived", "include_balance", "include_ledgers", "starting_at",
     "covering_date", "cursor", "limit"}
)  # fmt: skip


@dataclass(slots=True)
class Contract:
    """One contract as the emulator holds it: what the list filters and pages on, kept as
    values (instants, ids), and the rest of its ContractV2 shape ready to show."""

    id: str
    seq: int
    customer_id: str
    starting_at: datetime
    ending_before: datetime | None
    created_at: str
    #: The accepted request body, exactly as sent.
    given: dict[str, Any]
    #: What ContractV2 shows beyond the fields above, already in the spec's spelling.
    shown: dict[str, Any]
    custom_fields: dict[str, str]
    uniqueness_key: str | None = None
    archived_at: str | None = None
    #: The edits applied to it (``v2/contracts/edit``), as ContractEdit objects, oldest first.
    edits: list[dict[str, Any]] = field(default_factory=list)

    def covers(self, moment: datetime) -> bool:
        return self.starting_at <= moment and (
            self.ending_before is None or moment < self.ending_before
        )


@dataclass
class ContractStore:
    """All contract state; reads customers, keys and billing configurations from
    ``directory`` (the customer store) and rate cards, products, packages from ``catalog``."""

    directory: MetronomeStore
    catalog: Catalog
    contracts: dict[str, Contract] = field(default_factory=dict)
    #: uniqueness_key -> the contract that used it; never emptied (keys are never released).
    used_keys: dict[str, str] = field(default_factory=dict)
    #: (custom field key, value) -> ids of the contracts holding it (uniqueness by lookup).
    field_holders: dict[tuple[str, str], dict[str, None]] = field(default_factory=dict)
    #: (from contract id, to contract id) of every RENEWAL transition.
    transitions: list[tuple[str, str]] = field(default_factory=list)
    #: Whether ``v2/contracts/edit`` is enabled for this client (Metronome enables contract
    #: editing per client, on request): off, every edit is refused.
    editing_enabled: bool = True
    #: Whether the answers of a create and an edit carry what was written (``data.contract``,
    #: ``data.edit``: optional in the spec, shown in the create's example) beside ``data.id``;
    #: off, they are ``{data: {id}}`` alone, as the API reference's examples show.
    full_write_answers: bool = True

    # -- create ------------------------------------------------------------------------------

    def create(self, body: dict[str, Any]) -> Contract:
        """POST /v1/contracts/create: checks in the order their failures are reported --
        the shape (400), the customer (404), the references (400), the conflicts (409)."""
        terms.check_field_set(body)
        customer_id = rules.required_str(body, "customer_id")
        starting_at = terms.boundary(body.get("starting_at"), "starting_at")
        key = terms.uniqueness_key(body)
        fields = rules.string_map(body.get("custom_fields", {}), "custom_fields")
        customer = self._customer(customer_id)
        now = rules.rfc3339(datetime.now(UTC))
        contract_id = str(uuid.uuid4())
        package = self._package(body, starting_at)
        shown: dict[str, Any] = {}
        if package is not None:
            shown.update(terms.package_terms(package, starting_at))
            ending_before = None
        else:
            card = self._rate_card(body, starting_at)
            shown["rate_card_id"] = card.id
            ending_before = terms.ending_before(body, starting_at)
            shown.update(terms.plain_terms(body, starting_at))
            context = line_terms.TermContext(
                self.catalog, card, starting_at, ending_before, now, contract_id
            )
            shown.update(line_terms.parse_terms(body, context, edit=False))
            shown["commits"] = parse_commits(
                body.get("commits", []),
                contract_id=contract_id,
                created_at=now,
                catalog=self.catalog,
                check_fields=self.check_registered,
            )
            if "billing_provider_configuration" in body:
                config = self._billing_configuration(customer, body)
                shown["customer_billing_provider_configuration"] = config.detail()
        transition_from = self._transition(customer, body.get("transition"))
        self.check_registered("contract", fields)
        if key is not None and key in self.used_keys:
            raise ApiError(409, UNIQUENESS_KEY_USED)
        self._check_unique_fields(fields)

        contract = Contract(
            id=contract_id,
            seq=len(self.contracts),
            customer_id=customer.id,
            starting_at=starting_at,
            ending_before=ending_before,
            created_at=now,
            given=copy.deepcopy(body),
            shown=shown,
            custom_fields=fields,
            uniqueness_key=key,
        )
        self.contracts[contract.id] = contract
        if key is not None:
            self.used_keys[key] = contract.id
        for pair in fields.items():
            self.field_holders.setdefault(pair, {})[contract.id] = None
        if transition_from is not None:
            self.transitions.append((transition_from, contract.id))
        return contract

    def _customer(self, customer_id: str) -> Customer:
        customer = self.directory.get(customer_id)  # 404 {message} when unknown
        if customer.archived_at is not None:
            raise bad_request(f"customer {customer_id} is archived")
        return customer

    def _rate_card(self, body: dict[str, Any], starting_at: datetime) -> RateCard:
        by_id, alias = body.get("rate_card_id"), body.get("rate_card_alias")
        if by_id is not None and alias is not None:
            raise bad_request("give rate_card_id or rate_card_alias, not both")
        if by_id is None and alias is None:
            raise bad_request("a contract needs a rate_card_id, a rate_card_alias or a package")
        if by_id is not None:
            card = self.catalog.rate_card(str(by_id))
            if card is None:
                raise bad_request(f"rate card {by_id!r} not found")
            return card
        if not isinstance(alias, str) or not alias:
            raise bad_request("rate_card_alias must be a non-empty string")
        card = self.catalog.rate_card_for_alias(alias, starting_at)
        if card is None:
            raise bad_request(
                f"no rate card has the alias {alias!r} on {rfc3339(starting_at)} (starting_at)"
            )
        return card

    def _package(self, body: dict[str, Any], starting_at: datetime) -> Package | None:
        by_id, alias = body.get("package_id"), body.get("package_alias")
        if by_id is None and alias is None:
            return None
        if by_id is not None and alias is not None:
            raise bad_request("give package_id or package_alias, not both")
        if by_id is not None:
            package = self.catalog.package(str(by_id))
            if package is None or package.archived_at is not None:
                raise bad_request(f"package {by_id!r} not found")
            return package
        if not isinstance(alias, str) or not alias:
            raise bad_request("package_alias must be a non-empty string")
        package = self.catalog.package_for_alias(alias, starting_at)
        if package is None or package.archived_at is not None:
            raise bad_request(
                f"no package has the alias {alias!r} on {rfc3339(starting_at)} (starting_at)"
            )
        return package

    def _billing_configuration(
        self, customer: Customer, body: dict[str, Any]
    ) -> BillingConfiguration:
        """CustomerBillingProviderConfigurationLookup: an id, or a provider and delivery
        method that match exactly one live configuration of this customer (the spec: use the
        id "when a customer has multiple configurations with the same billing provider and
        delivery method")."""
        lookup = body["billing_provider_configuration"]
        where = "billing_provider_configuration"
        if not isinstance(lookup, dict):
            raise bad_request(f"{where} must be an object")
        rules.only_fields(
            lookup,
            frozenset({"billing_provider_configuration_id", "billing_provider", "delivery_method"}),
            where,
        )
        live = self.directory.get_configurations({"customer_id": customer.id})
        if "billing_provider_configuration_id" in lookup:
            if {"billing_provider", "delivery_method"} & set(lookup):
                raise bad_request(
                    f"{where}: give billing_provider_configuration_id or billing_provider and "
                    "delivery_method, not both"
                )
            wanted = lookup["billing_provider_configuration_id"]
            matches = [c for c in live if c.id == wanted]
            if not matches:
                raise bad_request(
                    f"{where}: {wanted!r} is not a live billing provider configuration of "
                    f"customer {customer.id}"
                )
            return matches[0]
        provider, method = lookup.get("billing_provider"), lookup.get("delivery_method")
        if provider not in rules.PROVIDER_REQUIRED_KEYS or method not in rules.DELIVERY_METHODS:
            raise bad_request(
                f"{where} needs billing_provider_configuration_id, or a known billing_provider "
                "and delivery_method"
            )
        matches = [c for c in live if (c.billing_provider, c.delivery_method) == (provider, method)]
        if len(matches) != 1:
            raise bad_request(
                f"{where}: customer {customer.id} has {len(matches)} live {provider} "
                f"configurations delivered by {method}; "
                + (
                    "add one first"
                    if not matches
                    else "name one by billing_provider_configuration_id"
                )
            )
        return matches[0]

    def _transition(self, customer: Customer, raw: Any) -> str | None:
        if raw is None:
            return None
        if not isinstance(raw, dict):
            raise bad_request("transition must be an object")
        rules.only_fields(
            raw, frozenset({"type", "from_contract_id", "future_invoice_behavior"}), "transition"
        )
        rules.upper_enum(raw.get("type"), ("RENEWAL",), "transition.type")
        source = self.contracts.get(str(raw.get("from_contract_id")))
        if source is None or source.customer_id != customer.id:
            raise bad_request("transition.from_contract_id must be a contract of this customer")
        return source.id

    def check_registered(self, entity: str, fields: Mapping[str, str]) -> None:
        """Keys registered for ``entity`` (the store's one key registry, per (entity, key));
        values within Metronome's 200 characters."""
        for key, value in fields.items():
            if (entity, key) not in self.directory.keys:
                raise bad_request(f"custom field key {key!r} is not registered for {entity}")
            if len(value) > CUSTOM_FIELD_VALUE_MAX:
                raise bad_request(
                    f"custom field {key!r} exceeds {CUSTOM_FIELD_VALUE_MAX} characters"
                )

    def _check_unique_fields(self, fields: Mapping[str, str]) -> None:
        for key, value in fields.items():
            if self.directory.keys[("contract", key)].enforce_uniqueness and self.field_holders.get(
                (key, value)
            ):
                raise ApiError(409, f"custom field {key!r} value must be unique")

    def forget_key(self, key: str) -> None:
        """``customFields/removeKey`` for entity contract: the values go with the key."""
        for contract in self.contracts.values():
            contract.custom_fields.pop(key, None)
        for indexed in [k for k in self.field_holders if k[0] == key]:
            del self.field_holders[indexed]

    # -- list and archive ----------------------------------------------------------------------

    def list_v2(self, body: dict[str, Any]) -> tuple[list[Contract], str | None]:
        """POST /v2/contracts/list: a customer's contracts in chronological order (by
        ``starting_at``, then creation), ``limit`` (1-20, default 20) per page, and a
        ``cursor`` that names the last contract served, so a page never repeats or skips a
        contract created while a client pages."""
        rules.only_fields(body, LIST_FIELDS, "POST /v2/contracts/list")
        customer_id = rules.required_str(body, "customer_id")
        if customer_id not in self.directory.customers:
            raise ApiError(400, f"customer {customer_id} not found", code="CustomerNotFound")
        for flag in ("include_archived", "include_balance", "include_ledgers"):
            if not isinstance(body.get(flag, False), bool):
                raise bad_request(f"{flag} must be a boolean")
        if "starting_at" in body and "covering_date" in body:
            raise bad_request("starting_at cannot be provided with covering_date")
        limit = body.get("limit", CONTRACT_PAGE_MAX)
        if isinstance(limit, bool) or not isinstance(limit, int | float) or limit != int(limit):
            raise bad_request("limit must be an integer")
        if not 1 <= limit <= CONTRACT_PAGE_MAX:
            raise bad_request(f"limit must be between 1 and {CONTRACT_PAGE_MAX}")
        matches = [
            c
            for c in self.contracts.values()
            if c.customer_id == customer_id
            and (body.get("include_archived") is True or c.archived_at is None)
        ]
        if "starting_at" in body:
            since = rules.timestamp(body["starting_at"], "starting_at")
            matches = [c for c in matches if c.starting_at >= since]
        if "covering_date" in body:
            moment = rules.timestamp(body["covering_date"], "covering_date")
            matches = [c for c in matches if c.covers(moment)]
        matches.sort(key=_chronological)
        if "cursor" in body:
            after = _decode_cursor(body["cursor"])
            matches = [c for c in matches if _chronological(c) > after]
        page = matches[: int(limit)]
        more = len(matches) > len(page)
        return page, (_encode_cursor(page[-1]) if more else None)

    def archive(self, body: dict[str, Any]) -> Contract:
        """POST /v1/contracts/archive (ArchiveContractPayload). The uniqueness key stays
        used: archiving never frees it."""
        rules.only_fields(
            body, frozenset({"customer_id", "contract_id", "void_invoices"}), "archive"
        )
        customer = self.directory.get(rules.required_str(body, "customer_id"))
        contract = self.contracts.get(rules.required_str(body, "contract_id"))
        if not isinstance(body.get("void_invoices"), bool):
            raise bad_request("void_invoices is required (a boolean)")
        if contract is None or contract.customer_id != customer.id:
            raise ApiError(404, f"contract {body['contract_id']} not found")
        if contract.archived_at is not None:
            raise bad_request(f"contract {contract.id} is already archived")
        contract.archived_at = rfc3339(datetime.now(UTC))
        return contract

    # -- the ContractV2 shape --------------------------------------------------------------------

    def v2(self, contract: Contract) -> dict[str, Any]:
        """The ContractV2 shape: required fields always, optional ones only when set (the
        spec marks none of them nullable)."""
        out: dict[str, Any] = {
            "id": contract.id,
            "customer_id": contract.customer_id,
            "starting_at": rfc3339(contract.starting_at),
            "commits": [],
            "overrides": [],
            "scheduled_charges": [],
            "transitions": [
                {"type": "RENEWAL", "from_contract_id": source, "to_contract_id": target}
                for source, target in self.transitions
                if contract.id in (source, target)
            ],
            "created_at": contract.created_at,
            "created_by": API_CLIENT,
            "usage_filter": [],
            "custom_fields": dict(contract.custom_fields),
            **contract.shown,
        }
        if contract.ending_before is not None:
            out["ending_before"] = rfc3339(contract.ending_before)
        if contract.uniqueness_key is not None:
            out["uniqueness_key"] = contract.uniqueness_key
        if contract.archived_at is not None:
            out["archived_at"] = contract.archived_at
        return out


def _chronological(contract: Contract) -> tuple[datetime, int]:
    return contract.starting_at, contract.seq


def _encode_cursor(contract: Contract) -> str:
    raw = json.dumps([rfc3339(contract.starting_at), contract.seq]).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _decode_cursor(cursor: Any) -> tuple[datetime, int]:
    try:
        starting_at, seq = json.loads(base64.urlsafe_b64decode(str(cursor)))
        return rules.timestamp(starting_at, "cursor"), int(seq)
    except (ValueError, TypeError, binascii.Error, ApiError) as exc:
        raise bad_request("cursor is not one this list gave out") from exc
