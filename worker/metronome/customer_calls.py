"""The gateway's customer calls: customers, their custom fields, billing configurations.

Each is one Metronome endpoint (named in its docstring), sent through
:meth:`GatewayCore._call` (breaker gate, governor turn, retries, our errors) and read into our
state values; writes carry the caller's Idempotency-Key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any, Literal, cast

from worker.metronome.actual import BillingConfigurationState, CustomerState
from worker.metronome.answers import (
    CUSTOM_FIELD_ENTITY,
    customer_state,
    next_page_cursor,
    page_customers,
    page_keys,
    required_text,
)
from worker.metronome.errors import PermanentError
from worker.metronome.transport import GatewayCore, key_header, read_answer

LIST_PAGE_SIZE = 100
CustomFieldEntity = Literal["customer", "contract"]


class CustomerCalls(GatewayCore):
    """Customers, custom field keys and values, billing provider configurations."""

    def ping(self) -> None:
        """One cheap read (GET /v1/customers, one page of one): the drain's probe when no
        parked sync is left to probe with."""
        self._call("ping", lambda: self._client.v1.customers.list(limit=1))

    def retrieve_customer(self, customer_id: str) -> CustomerState | None:
        """GET /v1/customers/{id}; None when it does not exist (a stale cached id)."""
        try:
            answer = self._call(
                "retrieve", lambda: self._client.v1.customers.retrieve(customer_id=customer_id)
            )
        except PermanentError as exc:
            if exc.status in (400, 404):
                return None
            raise
        return read_answer("retrieve", lambda: customer_state(answer.data))

    def list_customers(
        self,
        *,
        ingest_alias: str | None = None,
        salesforce_account_ids: Sequence[str] | None = None,
        only_archived: bool = False,
    ) -> list[CustomerState]:
        """GET /v1/customers with filters, every page read (``next_page`` cursor)."""
        query: dict[str, Any] = {"limit": LIST_PAGE_SIZE}
        if ingest_alias is not None:
            query["ingest_alias"] = ingest_alias
        if salesforce_account_ids is not None:
            query["salesforce_account_ids"] = list(salesforce_account_ids)
        if only_archived:
            query["only_archived"] = True
        found: list[CustomerState] = []
        cursor: str | None = None
        while True:
            page_query = dict(query, next_page=cursor) if cursor else query

            def fetch(q: dict[str, Any] = page_query) -> Any:
                return self._client.v1.customers.list(**q)

            page = self._call("list", fetch)
            found.extend(read_answer("list", partial(page_customers, page)))
            cursor = read_answer("list", partial(next_page_cursor, page))
            if not cursor:
                return found

    def create_customer(self, body: Mapping[str, Any], *, key: str) -> str:
        """POST /v1/customers; the new customer's id."""
        answer = self._call(
            "create",
            lambda: self._client.v1.customers.create(
                **cast(Any, body), extra_headers=key_header(key)
            ),
            post=True,
        )
        return read_answer("create", lambda: required_text(answer.data.id))

    def set_name(self, customer_id: str, name: str, *, key: str) -> None:
        self._call(
            "setName",
            lambda: self._client.v1.customers.set_name(
                customer_id=customer_id, name=name, extra_headers=key_header(key)
            ),
            post=True,
        )

    def set_ingest_aliases(self, customer_id: str, aliases: Sequence[str], *, key: str) -> None:
        """Replaces the whole set: callers pass the union to never drop an alias."""
        self._call(
            "setIngestAliases",
            lambda: self._client.v1.customers.set_ingest_aliases(
                customer_id=customer_id, ingest_aliases=list(aliases), extra_headers=key_header(key)
            ),
            post=True,
        )

    def update_config(self, customer_id: str, salesforce_account_id: str, *, key: str) -> None:
        self._call(
            "updateConfig",
            lambda: self._client.v1.customers.update_config(
                customer_id=customer_id,
                salesforce_account_id=salesforce_account_id,
                extra_headers=key_header(key),
            ),
            post=True,
        )

    # -- custom fields ---------------------------------------------------------------------

    def list_custom_field_keys(
        self, entity: CustomFieldEntity = CUSTOM_FIELD_ENTITY
    ) -> list[tuple[str, bool]]:
        """(key, enforce_uniqueness) for the entity's keys, every page read."""
        found: list[tuple[str, bool]] = []
        cursor: str | None = None
        while True:
            extra: dict[str, Any] = {"next_page": cursor} if cursor else {}

            def fetch_keys(e: dict[str, Any] = extra) -> Any:
                return self._client.v1.custom_fields.list_keys(entities=[entity], **e)

            page = self._call("listKeys", fetch_keys)
            found.extend(read_answer("listKeys", partial(page_keys, page, entity)))
            cursor = read_answer("listKeys", partial(next_page_cursor, page))
            if not cursor:
                return found

    def add_custom_field_key(
        self,
        name: str,
        *,
        enforce_uniqueness: bool,
        key: str,
        entity: CustomFieldEntity = CUSTOM_FIELD_ENTITY,
    ) -> None:
        self._call(
            "addKey",
            lambda: self._client.v1.custom_fields.add_key(
                entity=entity,
                key=name,
                enforce_uniqueness=enforce_uniqueness,
                extra_headers=key_header(key),
            ),
            post=True,
        )

    def set_custom_fields(self, customer_id: str, values: Mapping[str, str], *, key: str) -> None:
        """POST /v1/customFields/setValues merges by key: send the changed keys only."""
        self._call(
            "setValues",
            lambda: self._client.v1.custom_fields.set_values(
                entity=CUSTOM_FIELD_ENTITY,
                entity_id=customer_id,
                custom_fields=dict(values),
                extra_headers=key_header(key),
            ),
            post=True,
        )

    # -- billing provider configurations ---------------------------------------------------

    def get_billing_configurations(
        self, customer_id: str, *, include_archived: bool = False
    ) -> tuple[BillingConfigurationState, ...]:
        answer = self._call(
            "getBillingConfigurations",
            lambda: self._client.v1.customers.retrieve_billing_configurations(
                customer_id=customer_id, include_archived=include_archived
            ),
        )
        return read_answer(
            "getBillingConfigurations",
            lambda: tuple(
                BillingConfigurationState(
                    id=required_text(item.id),
                    billing_provider=required_text(item.billing_provider),
                    delivery_method=required_text(item.delivery_method),
                    configuration=dict(item.configuration),
                    archived=item.archived_at is not None,
                )
                for item in answer.data
            ),
        )

    def set_billing_configurations(
        self, customer_id: str, configurations: Sequence[Mapping[str, Any]], *, key: str
    ) -> None:
        """Appends: callers send only configurations the customer does not have yet."""
        data = [dict(c, customer_id=customer_id) for c in configurations]
        self._call(
            "setBillingConfigurations",
            lambda: self._client.v1.customers.set_billing_configurations(
                data=cast(Any, data), extra_headers=key_header(key)
            ),
            post=True,
        )

    def archive_billing_configurations(
        self, customer_id: str, configuration_ids: Sequence[str], *, key: str
    ) -> None:
        self._call(
            "archiveBillingConfigurations",
            lambda: self._client.v1.customers.archive_billing_configurations(
                customer_id=customer_id,
                customer_billing_provider_configuration_ids=list(configuration_ids),
                extra_headers=key_header(key),
            ),
            post=True,
        )
