"""The Metronome emulator's data and rules, free of HTTP.

Every rule here is one the worker's correctness leans on, so the emulator must refuse what
Metronome refuses (its API reference and the official spec):

- ingest aliases are unique across *all* customers, archived ones included: a create or
  ``setIngestAliases`` with a taken alias is a 409 (that is what makes a second create of the
  same Salesforce account fail instead of duplicating it);
- custom field keys must be registered (``/v1/customFields/addKey``) before values are set,
  values are at most 200 characters, and ``enforce_uniqueness`` keys refuse a second customer
  with the same value;
- names are truncated to 160 characters (so the worker must compare names as stored);
- billing provider configurations append on every set and must carry the provider's
  required configuration keys and a known delivery method.

Failures are raised as :class:`ApiError` carrying the status and the ``{message}`` body.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from worker.sandbox.metronome import rules
from worker.sandbox.metronome.rules import (
    CUSTOM_FIELD_VALUE_MAX,
    LIST_IDS_MAX,
    LIST_LIMIT_MAX,
    NAME_MAX,
    ApiError,
    bad_request,
)

_DELIVERY_NAMESPACE = uuid.UUID("6f1c7a52-2b1e-4c1e-9a55-4d5a3f1b9e10")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(slots=True)
class Customer:
    id: str
    name: str
    ingest_aliases: list[str]
    custom_fields: dict[str, str]
    created_at: str
    updated_at: str
    salesforce_account_id: str | None = None
    archived_at: str | None = None

    def detail(self) -> dict[str, Any]:
        """The CustomerDetail shape of GET /v1/customers and GET /v1/customers/{id}: the
        Customer shape and more."""
        return {
            **self.summary(),
            "customer_config": {"salesforce_account_id": self.salesforce_account_id},
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "archived_at": self.archived_at,
        }

    def summary(self) -> dict[str, Any]:
        """The Customer shape of POST /v1/customers and setName."""
        return {
            "id": self.id,
            "external_id": self.id,
            "name": self.name,
            "ingest_aliases": list(self.ingest_aliases),
            "custom_fields": dict(self.custom_fields),
        }


@dataclass(slots=True)
class BillingConfiguration:
    id: str
    customer_id: str
    billing_provider: str
    delivery_method: str
    configuration: dict[str, Any]
    archived_at: str | None = None

    def detail(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "customer_id": self.customer_id,
            "billing_provider": self.billing_provider,
            "configuration": dict(self.configuration),
            "delivery_method": self.delivery_method,
            "delivery_method_id": str(uuid.uuid5(_DELIVERY_NAMESPACE, self.delivery_method)),
            "delivery_method_configuration": {},
            "archived_at": self.archived_at,
        }


@dataclass(slots=True)
class CustomFieldKey:
    entity: str
    key: str
    enforce_uniqueness: bool


@dataclass
class MetronomeStore:
    """All emulator state; only ever touched from the server's event-loop thread."""

    customers: dict[str, Customer] = field(default_factory=dict)
    alias_owner: dict[str, str] = field(default_factory=dict)
    keys: dict[tuple[str, str], CustomFieldKey] = field(default_factory=dict)
    billing: list[BillingConfiguration] = field(default_factory=list)
    #: (key, value) -> ids of the customers holding it, in the order they took it: the
    #: uniqueness check is a lookup, not a scan of every customer (a scan made each create
    #: O(customers) and the emulator, not the client, the bottleneck of a 10k backfill).
    field_holders: dict[tuple[str, str], dict[str, None]] = field(default_factory=dict)

    # -- customers -------------------------------------------------------------------------

    def get(self, customer_id: str) -> Customer:
        customer = self.customers.get(customer_id)
        if customer is None:
            raise ApiError(404, f"customer {customer_id} not found")
        return customer

    def create(self, body: dict[str, Any]) -> Customer:
        name = body.get("name")
        if not isinstance(name, str) or not name:
            raise bad_request("name is required")
        aliases = rules.aliases(body.get("ingest_aliases", []))
        fields = rules.string_map(body.get("custom_fields", {}), "custom_fields")
        configs = body.get("customer_billing_provider_configurations", [])
        if not isinstance(configs, list):
            raise bad_request("customer_billing_provider_configurations must be an array")
        for config in configs:
            rules.validate_configuration(config, require_customer=False)
        self._check_fields(fields, customer_id=None)
        self._check_aliases(aliases, customer_id=None)
        now = _now()
        customer = Customer(str(uuid.uuid4()), name[:NAME_MAX], aliases, fields, now, now)
        self.customers[customer.id] = customer
        self._index_fields(customer.id, fields)
        for alias in aliases:
            self.alias_owner[alias] = customer.id
        for config in configs:
            self._append_configuration(customer.id, config)
        return customer

    def archive(self, body: dict[str, Any]) -> Customer:
        customer = self.get(rules.required_str(body, "id"))
        if customer.archived_at is not None:
            raise bad_request(f"customer {customer.id} is already archived")
        customer.archived_at = customer.updated_at = _now()
        return customer

    def set_ingest_aliases(self, customer_id: str, body: dict[str, Any]) -> None:
        customer = self.get(customer_id)
        if "ingest_aliases" not in body:
            raise bad_request("ingest_aliases is required")
        aliases = rules.aliases(body["ingest_aliases"])
        self._check_aliases(aliases, customer_id=customer.id)
        for alias in customer.ingest_aliases:
            self.alias_owner.pop(alias, None)
        for alias in aliases:
            self.alias_owner[alias] = customer.id
        customer.ingest_aliases = aliases
        customer.updated_at = _now()

    def set_name(self, customer_id: str, body: dict[str, Any]) -> Customer:
        customer = self.get(customer_id)
        name = rules.required_str(body, "name")
        customer.name = name[:NAME_MAX]
        customer.updated_at = _now()
        return customer

    def update_config(self, customer_id: str, body: dict[str, Any]) -> None:
        customer = self.get(customer_id)
        value = body.get("salesforce_account_id")
        if value is not None and not isinstance(value, str):
            raise bad_request("salesforce_account_id must be a string or null")
        if "salesforce_account_id" in body:
            customer.salesforce_account_id = value
            customer.updated_at = _now()

    def list_customers(self, query: dict[str, str]) -> tuple[list[Customer], str | None]:
        """GET /v1/customers: filters AND together; the cursor is an opaque offset."""
        limit = rules.int_param(query.get("limit"), "limit", default=LIST_LIMIT_MAX)
        if not 1 <= limit <= LIST_LIMIT_MAX:
            raise bad_request(f"limit must be between 1 and {LIST_LIMIT_MAX}")
        offset = rules.int_param(query.get("next_page"), "next_page", default=0)
        only_archived = query.get("only_archived", "false").lower() == "true"
        matches = [
            c for c in self.customers.values() if (c.archived_at is not None) is only_archived
        ]
        if (alias := query.get("ingest_alias")) is not None:
            matches = [c for c in matches if alias in c.ingest_aliases]
        for name, attribute in (("customer_ids", "id"), ("salesforce_account_ids", "sfid")):
            raw = query.get(name)
            if raw is None:
                continue
            wanted = {item for item in raw.split(",") if item}
            if len(wanted) > LIST_IDS_MAX:
                raise bad_request(f"{name} accepts at most {LIST_IDS_MAX} ids")
            if attribute == "id":
                matches = [c for c in matches if c.id in wanted]
            else:
                matches = [c for c in matches if c.salesforce_account_id in wanted]
        page = matches[offset : offset + limit]
        more = offset + limit < len(matches)
        return page, (str(offset + limit) if more else None)

    # -- custom fields ---------------------------------------------------------------------

    def add_key(self, body: dict[str, Any]) -> None:
        entity = rules.entity(body)
        key = rules.required_str(body, "key")
        unique = body.get("enforce_uniqueness")
        if not isinstance(unique, bool):
            raise bad_request("enforce_uniqueness is required")
        existing = self.keys.get((entity, key))
        if existing is not None and existing.enforce_uniqueness != unique:
            raise bad_request(f"key {key} already exists with other settings")
        self.keys[(entity, key)] = CustomFieldKey(entity, key, unique)

    def list_keys(self, body: dict[str, Any]) -> list[CustomFieldKey]:
        entities = body.get("entities")
        keys = list(self.keys.values())
        if isinstance(entities, list):
            keys = [k for k in keys if k.entity in entities]
        return keys

    def remove_key(self, body: dict[str, Any]) -> None:
        entity = rules.entity(body)
        key = rules.required_str(body, "key")
        if self.keys.pop((entity, key), None) is None:
            raise bad_request(f"key {key} is not registered for {entity}")
        if entity == "customer":
            for customer in self.customers.values():
                customer.custom_fields.pop(key, None)
            for indexed in [k for k in self.field_holders if k[0] == key]:
                del self.field_holders[indexed]

    def set_values(self, body: dict[str, Any]) -> None:
        customer = self._customer_entity(body)
        fields = rules.string_map(body.get("custom_fields"), "custom_fields")
        self._check_fields(fields, customer_id=customer.id)
        for key in fields:
            self._unindex_field(customer, key)
        customer.custom_fields.update(fields)
        self._index_fields(customer.id, fields)
        customer.updated_at = _now()

    def delete_values(self, body: dict[str, Any]) -> None:
        customer = self._customer_entity(body)
        keys = body.get("keys")
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise bad_request("keys must be an array of strings")
        for key in keys:
            self._unindex_field(customer, key)
            customer.custom_fields.pop(key, None)
        customer.updated_at = _now()

    # -- billing provider configurations ---------------------------------------------------

    def set_configurations(self, body: dict[str, Any]) -> list[BillingConfiguration]:
        data = body.get("data")
        if not isinstance(data, list) or not data:
            raise bad_request("data must be a non-empty array")
        for item in data:
            rules.validate_configuration(item, require_customer=True)
            self.get(item["customer_id"])
        return [self._append_configuration(item["customer_id"], item) for item in data]

    def get_configurations(self, body: dict[str, Any]) -> list[BillingConfiguration]:
        customer = self.get(rules.required_str(body, "customer_id"))
        include_archived = body.get("include_archived") is True
        return [
            c
            for c in self.billing
            if c.customer_id == customer.id and (include_archived or c.archived_at is None)
        ]

    def archive_configurations(self, body: dict[str, Any]) -> list[str]:
        customer = self.get(rules.required_str(body, "customer_id"))
        ids = body.get("customer_billing_provider_configuration_ids")
        if not isinstance(ids, list) or not ids:
            raise bad_request("customer_billing_provider_configuration_ids is required")
        owned = {c.id: c for c in self.billing if c.customer_id == customer.id}
        unknown = [i for i in ids if i not in owned]
        if unknown:
            raise bad_request(f"unknown billing provider configuration ids: {unknown}")
        now = _now()
        for config_id in ids:
            owned[config_id].archived_at = owned[config_id].archived_at or now
        return [str(i) for i in ids]

    # -- rules -----------------------------------------------------------------------------

    def _check_aliases(self, aliases: list[str], customer_id: str | None) -> None:
        for alias in aliases:
            owner = self.alias_owner.get(alias)
            if owner is not None and owner != customer_id:
                raise ApiError(
                    409,
                    f"ingest alias {alias!r} is already in use by another customer",
                    conflicting_id=owner,
                )

    def _check_fields(self, fields: dict[str, str], customer_id: str | None) -> None:
        for key, value in fields.items():
            registered = self.keys.get(("customer", key))
            if registered is None:
                raise bad_request(f"custom field key {key!r} is not registered for customer")
            if len(value) > CUSTOM_FIELD_VALUE_MAX:
                raise bad_request(
                    f"custom field {key!r} exceeds {CUSTOM_FIELD_VALUE_MAX} characters"
                )
            if registered.enforce_uniqueness:
                for other in self.field_holders.get((key, value), {}):
                    if other != customer_id:
                        raise ApiError(
                            409,
                            f"custom field {key!r} value must be unique",
                            conflicting_id=other,
                        )

    def _index_fields(self, customer_id: str, fields: dict[str, str]) -> None:
        for key, value in fields.items():
            self.field_holders.setdefault((key, value), {})[customer_id] = None

    def _unindex_field(self, customer: Customer, key: str) -> None:
        old = customer.custom_fields.get(key)
        if old is None:
            return
        holders = self.field_holders.get((key, old), {})
        holders.pop(customer.id, None)
        if not holders:
            self.field_holders.pop((key, old), None)

    def _customer_entity(self, body: dict[str, Any]) -> Customer:
        entity = rules.entity(body)
        if entity != "customer":
            raise bad_request(f"the emulator only models customer custom fields, not {entity}")
        return self.get(rules.required_str(body, "entity_id"))

    def _append_configuration(self, customer_id: str, item: dict[str, Any]) -> BillingConfiguration:
        config = BillingConfiguration(
            id=str(uuid.uuid4()),
            customer_id=customer_id,
            billing_provider=item["billing_provider"],
            delivery_method=item["delivery_method"],
            configuration=dict(item.get("configuration") or {}),
        )
        self.billing.append(config)
        return config
