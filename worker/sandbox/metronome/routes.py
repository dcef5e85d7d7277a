"""The ``/v1`` endpoints of the Metronome emulator: URL templates mapped onto the store.

Each route answers with the spec's response shape (``reference/metronome-openapi.json``):
``{data: ...}`` for most, ``{data, next_page}`` for lists, and an empty 200 for the
endpoints the spec gives no body (setIngestAliases, updateConfig, the custom field writes).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from worker.sandbox.metronome.store import MetronomeStore

Body = dict[str, Any]
Query = dict[str, str]
#: (store, path parameters, JSON body, query) -> JSON answer, or None for an empty 200.
RouteHandler = Callable[[MetronomeStore, dict[str, str], Body, Query], Any]


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    template: str
    pattern: re.Pattern[str]
    handler: RouteHandler


def _route(method: str, template: str, handler: RouteHandler) -> Route:
    regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template)
    return Route(method, template, re.compile(f"^{regex}$"), handler)


def _list_customers(store: MetronomeStore, _p: dict[str, str], _b: Body, query: Query) -> Any:
    page, next_page = store.list_customers(query)
    return {"data": [c.detail() for c in page], "next_page": next_page}


def _create(store: MetronomeStore, _p: dict[str, str], body: Body, _q: Query) -> Any:
    return {"data": store.create(body).summary()}


def _retrieve(store: MetronomeStore, params: dict[str, str], _b: Body, _q: Query) -> Any:
    return {"data": store.get(params["customer_id"]).detail()}


def _archive(store: MetronomeStore, _p: dict[str, str], body: Body, _q: Query) -> Any:
    return {"data": {"id": store.archive(body).id}}


def _set_aliases(store: MetronomeStore, params: dict[str, str], body: Body, _q: Query) -> Any:
    store.set_ingest_aliases(params["customer_id"], body)


def _set_name(store: MetronomeStore, params: dict[str, str], body: Body, _q: Query) -> Any:
    return {"data": store.set_name(params["customer_id"], body).summary()}


def _update_config(store: MetronomeStore, params: dict[str, str], body: Body, _q: Query) -> Any:
    store.update_config(params["customer_id"], body)


def _add_key(store: MetronomeStore, _p: dict[str, str], body: Body, _q: Query) -> Any:
    store.add_key(body)


def _list_keys(store: MetronomeStore, _p: dict[str, str], body: Body, _q: Query) -> Any:
    keys = store.list_keys(body)
    return {
        "data": [
            {"entity": k.entity, "key": k.key, "enforce_uniqueness": k.enforce_uniqueness}
            for k in keys
        ],
        "next_page": None,
    }


def _set_values(store: MetronomeStore, _p: dict[str, str], body: Body, _q: Query) -> Any:
    store.set_values(body)


def _delete_values(store: MetronomeStore, _p: dict[str, str], body: Body, _q: Query) -> Any:
    store.delete_values(body)


def _remove_key(store: MetronomeStore, _p: dict[str, str], body: Body, _q: Query) -> Any:
    store.remove_key(body)


def _set_configs(store: MetronomeStore, _p: dict[str, str], body: Body, _q: Query) -> Any:
    created = store.set_configurations(body)
    return {
        "data": [
            {k: v for k, v in c.detail().items() if k not in _SET_ANSWER_OMITS} for c in created
        ]
    }


_SET_ANSWER_OMITS = ("delivery_method", "delivery_method_configuration", "archived_at")


def _get_configs(store: MetronomeStore, _p: dict[str, str], body: Body, _q: Query) -> Any:
    return {"data": [c.detail() for c in store.get_configurations(body)]}


def _archive_configs(store: MetronomeStore, _p: dict[str, str], body: Body, _q: Query) -> Any:
    ids = store.archive_configurations(body)
    return {
        "data": {
            "customer_id": body["customer_id"],
            "customer_billing_provider_configuration_ids": ids,
        }
    }


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
