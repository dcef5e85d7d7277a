"""The gateway's contract calls: contracts and the catalog they point at.

Each is one Metronome endpoint (named in its docstring), sent through
:meth:`GatewayCore._call` (breaker gate, governor turn, retries, our errors) and read into our
state values; the create carries the caller's Idempotency-Key.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, TypeVar, cast

from worker.metronome.actual import CatalogEntry, ContractState, CreatedContract, ProductState
from worker.metronome.answers import (
    body_cursor,
    catalog_entry,
    created_contract,
    next_page_cursor,
    page_contracts,
    page_items,
    product_state,
)
from worker.metronome.transport import GatewayCore, key_header, read_answer

_T = TypeVar("_T")


class ContractCalls(GatewayCore):
    """Contracts (v1 create, v2 list) and the products, rate cards and packages they use."""

    def create_contract(self, body: Mapping[str, Any], *, key: str) -> CreatedContract:
        """POST /v1/contracts/create; the new contract's id (``data.id``) and, when the answer
        carries the created contract (``data.contract``), its subscriptions' ids.

        A 409 (the uniqueness key or a unique contract custom field is taken) comes back as a
        ConflictError, never retried here: the contract engine re-reads and adopts."""
        answer = self._call(
            "createContract",
            lambda: self._client.v1.contracts.create(
                **cast(Any, body), extra_headers=key_header(key)
            ),
            post=True,
        )
        created: CreatedContract = read_answer(
            "createContract", lambda: created_contract(answer.data)
        )
        return created

    def list_contracts(self, customer_id: str) -> list[ContractState]:
        """POST /v2/contracts/list with include_archived, every page (``cursor``, ≤ 20 each).

        There is no filter by uniqueness key: callers match it in what this returns."""
        found: list[ContractState] = []
        cursor: str | None = None
        while True:
            extra: dict[str, Any] = {"cursor": cursor} if cursor else {}

            def fetch(e: dict[str, Any] = extra) -> Any:
                return self._client.v2.contracts.list(
                    customer_id=customer_id, include_archived=True, **e
                )

            page = self._call("listContracts", fetch)
            found.extend(read_answer("listContracts", partial(page_contracts, page)))
            cursor = read_answer("listContracts", partial(body_cursor, page))
            if not cursor:
                return found

    def list_products(self) -> list[ProductState]:
        """POST /v1/contract-pricing/products/list, archived ones included, every page."""
        return self._paged_list(
            "listProducts",
            lambda e: self._client.v1.contracts.products.list(archive_filter="ALL", **e),
            product_state,
        )

    def list_rate_cards(self) -> list[CatalogEntry]:
        """POST /v1/contract-pricing/rate-cards/list, every page: ids, names, aliases."""
        return self._paged_list(
            "listRateCards", lambda e: self._client.v1.contracts.rate_cards.list(**e), catalog_entry
        )

    def list_packages(self) -> list[CatalogEntry]:
        """POST /v1/packages/list, every page: ids, names, aliases."""
        return self._paged_list(
            "listPackages", lambda e: self._client.v1.packages.list(**e), catalog_entry
        )

    def _paged_list(
        self,
        operation: str,
        fetch: Callable[[dict[str, Any]], Any],
        convert: Callable[[Any], _T],
    ) -> list[_T]:
        found: list[_T] = []
        cursor: str | None = None
        while True:
            extra: dict[str, Any] = {"next_page": cursor} if cursor else {}
            page = self._call(operation, partial(fetch, extra))
            found.extend(read_answer(operation, partial(page_items, page, convert)))
            cursor = read_answer(operation, partial(next_page_cursor, page))
            if not cursor:
                return found
