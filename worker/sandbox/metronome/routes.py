"""The API endpoints of the Metronome emulator: URL templates mapped onto the stores.

Each route answers with the spec's response shape (``reference/metronome-openapi.json``):
``{data: ...}`` for most, ``{data, next_page}`` for lists, and an empty 200 for the
endpoints the spec gives no body (setIngestAliases, updateConfig, the custom field writes).
POST /v2/contracts/list pages by ``{data, cursor}``, as metronome-sdk 4.12 reads it (its
``SyncBodyCursorPageCursorField``); the spec gives that endpoint no paging at all.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from worker.sandbox.metronome import edits
from worker.sandbox.metronome.contracts import ContractStore
from worker.sandbox.metronome.store import MetronomeStore

Body = dict[str, Any]
Query = dict[str, str]


@dataclass(frozen=True, slots=True)
class Backend:
    """What the routes act on: the customer side, and the contract side that reads it."""

    customers: MetronomeStore
    contracts: ContractStore


#: (backend, path parameters, JSON body, query) -> JSON answer, or None for an empty 200.
RouteHandler = Callable[[Backend, dict[str, str], Body, Query], Any]


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    template: str
    pattern: re.Pattern[str]
    handler: RouteHandler


def _route(method: str, template: str, handler: RouteHandler) -> Route:
    regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template)
    return Route(method, template, re.compile(f"^{regex}$"), handler)


def _list_customers(backend: Backend, _p: dict[str, str], _b: Body, query: Query) -> Any:
    page, next_page = backend.customers.list_customers(query)
    return {"data": [c.detail() for c in page], "next_page": next_page}


def _create(backend: Backend, _p: dict[str, str], body: Body, _q: Query) -> Any:
    return {"data": backend.customers.create(body).summary()}


def _retrieve(backend: Backend, params: dict[str, str], _b: Body, _q: Query) -> Any:
    return {"data": backend.customers.get(params["customer_id"]).detail()}


def _archive(backend: Backend, _p: dict[str, str], body: Body, _q: Query) -> Any:
    return {"data": {"id": backend.customers.archive(body).id}}


def _set_aliases(backend: Backend, params: dict[str, str], body: Body, _q: Query) -> Any:
    backend.customers.set_ingest_aliases(params["customer_id"], body)


def _set_name(backend: Backend, params: dict[str, str], body: Body, _q: Query) -> Any:
    return {"data": backend.customers.set_name(params["customer_id"], body).summary()}


def _update_config(backend: Backend, params: dict[str, str], body: Body, _q: Query) -> Any:
    backend.customers.update_config(params["customer_id"], body)


def _add_key(backend: Backend, _p: dict[str, str], body: Body, _q: Query) -> Any:
    backend.customers.add_key(body)


def _list_keys(backend: Backend, _p: dict[str, str], body: Body, _q: Query) -> Any:
    keys = backend.customers.list_keys(body)
    return {
        "data": [
            {"entity": k.entity, "key": k.key, "enforce_uniqueness": k.enforce_uniqueness}
            for k in keys
        ],
        "next_page": None,
    }


def _set_values(backend: Backend, _p: dict[str, str], body: Body, _q: Query) -> Any:
    backend.customers.set_values(body)


def _delete_values(backend: Backend, _p: dict[str, str], body: Body, _q: Query) -> Any:
    backend.customers.delete_values(body)


def _remove_key(backend: Backend, _p: dict[str, str], body: Body, _q: Query) -> Any:
    backend.customers.remove_key(body)
    if body.get("entity") == "contract":
        backend.contracts.forget_key(str(body["key"]))


def _set_configs(backend: Backend, _p: dict[str, str], body: Body, _q: Query) -> Any:
    created = backend.customers.set_configurations(body)
    return {
        "data": [
            {k: v for k, v in c.detail().items() if k not in _SET_ANSWER_OMITS} for c in created
        ]
    }


_SET_ANSWER_OMITS = ("delivery_method", "delivery_method_configuration", "archived_at")


def _get_configs(backend: Backend, _p: dict[str, str], body: Body, _q: Query) -> Any:
    return {"data": [c.detail() for c in backend.customers.get_configurations(body)]}


def _archive_configs(backend: Backend, _p: dict[str, str], body: Body, _q: Query) -> Any:
    ids = backend.customers.archive_configurations(body)
    return {
        "data": {
            "customer_id": body["customer_id"],
            "customer_billing_provider_configuration_ids": ids,
        }
    }


def _list_rate_cards(backend: Backend, _p: dict[str, str], body: Body, query: Query) -> Any:
    page, next_page = backend.contracts.catalog.list_rate_cards(body, query)
    return {"data": [r.detail() for r in page], "next_page": next_page}


def _get_rates(backend: Backend, _p: dict[str, str], body: Body, query: Query) -> Any:
    page, next_page = backend.contracts.catalog.get_rates(body, query)
    return {"data": page, "next_page": next_page}


def _list_products(backend: Backend, _p: dict[str, str], body: Body, query: Query) -> Any:
    page, next_page = backend.contracts.catalog.list_products(body, query)
    return {"data": [p.detail() for p in page], "next_page": next_page}


def _list_packages(backend: Backend, _p: dict[str, str], body: Body, query: Query) -> Any:
    page, next_page = backend.contracts.catalog.list_packages(body, query)
    return {"data": [p.detail() for p in page], "next_page": next_page}


def _create_contract(backend: Backend, _p: dict[str, str], body: Body, _q: Query) -> Any:
    store = backend.contracts
    contract = store.create(body)
    data: dict[str, Any] = {"id": contract.id}
    if store.full_write_answers:
        data["contract"] = store.v2(contract)
    return {"data": data}


def _archive_contract(backend: Backend, _p: dict[str, str], body: Body, _q: Query) -> Any:
    return {"data": {"id": backend.contracts.archive(body).id}}


def _list_contracts(backend: Backend, _p: dict[str, str], body: Body, _q: Query) -> Any:
    page, cursor = backend.contracts.list_v2(body)
    return {"data": [backend.contracts.v2(c) for c in page], "cursor": cursor}


def _edit_contract(backend: Backend, _p: dict[str, str], body: Body, _q: Query) -> Any:
    record = edits.edit(backend.contracts, body)
    data: dict[str, Any] = {"id": record["id"]}
    if backend.contracts.full_write_answers:
        data["edit"] = record
    return {"data": data}


def _get_contract(backend: Backend, _p: dict[str, str], body: Body, _q: Query) -> Any:
    return {"data": edits.get(backend.contracts, body)}


ROUTES: tuple[Route, ...] = (
    _route("GET", "/v1/customers", _list_customers),
    _route("POST", "/v1/customers", _create),
    _route("POST", "/v1/customers/archive", _archive),
    _route("GET", "/v1/customers/{customer_id}", _retrieve),
    _route("POST", "/v1/customers/{customer_id}/setIngestAliases", _set_aliases),
    _route("POST", "/v1/customers/{customer_id}/setName", _set_name),
    _route("POST", "/v1/customers/{customer_id}/updateConfig", _update_config),
    _route("POST", "/v1/customFields/addKey", _add_key),
    _route("POST", "/v1/customFields/listKeys", _list_keys),
    _route("POST", "/v1/customFields/setValues", _set_values),
    _route("POST", "/v1/customFields/deleteValues", _delete_values),
    _route("POST", "/v1/customFields/removeKey", _remove_key),
    _route("POST", "/v1/setCustomerBillingProviderConfigurations", _set_configs),
    _route("POST", "/v1/getCustomerBillingProviderConfigurations", _get_configs),
    _route("POST", "/v1/archiveCustomerBillingProviderConfigurations", _archive_configs),
    _route("POST", "/v1/contract-pricing/rate-cards/list", _list_rate_cards),
    _route("POST", "/v1/contract-pricing/rate-cards/getRates", _get_rates),
    _route("POST", "/v1/contract-pricing/products/list", _list_products),
    _route("POST", "/v1/packages/list", _list_packages),
    _route("POST", "/v1/contracts/create", _create_contract),
    _route("POST", "/v1/contracts/archive", _archive_contract),
    _route("POST", "/v2/contracts/list", _list_contracts),
    _route("POST", "/v2/contracts/edit", _edit_contract),
    _route("POST", "/v2/contracts/get", _get_contract),
)


def match(method: str, path: str) -> tuple[Route, dict[str, str]] | None:
    """The route for ``method path``; literal routes are listed before templated ones."""
    for route in ROUTES:
        if route.method != method:
            continue
        found = route.pattern.match(path)
        if found is not None:
            return route, found.groupdict()
    return None
