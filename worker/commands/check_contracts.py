"""``crmsync check``'s contract line: every rate card, package and product the mapping can
produce exists in Metronome, before the first deal dead-letters over it.

Literal values in the ``contract`` block are checked as written. Values that come from a
Salesforce field (the default: ``Metronome_Rate_Card__c``) are the values the won deals hold
today: read from Salesforce (at most MAX_ROWS rows; the check says when it stopped early) and
mapped with the real mapping, so what is checked is exactly what a sync would send.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

from mappings import Mapping, MappingError
from mappings.contracts.desired import DesiredContract
from mappings.contracts.engine import won_opportunity_rows
from worker.contracts.engine import FIXED
from worker.metronome.actual import CatalogEntry, ProductState

if TYPE_CHECKING:
    from worker.metronome import MetronomeGateway
    from worker.salesforce import ClosedWonSource

#: Won deals read to learn which rate cards the data names (a check, not a backfill).
MAX_ROWS = 50_000


def produced_contracts(
    mapping: Mapping, source: ClosedWonSource
) -> tuple[list[DesiredContract], bool]:
    """The contracts today's won deals map to, and whether the read stopped at MAX_ROWS."""
    out: list[DesiredContract] = []
    rows = itertools.islice(source.all_records(), MAX_ROWS + 1)
    count = 0
    for count, record in enumerate(rows, start=1):
        if count > MAX_ROWS:
            break
        try:
            customer = mapping.map_record(record)
            for row in won_opportunity_rows(record):
                contract = mapping.map_contract(row, customer)
                if contract is not None:
                    out.append(contract)
        except MappingError:
            continue  # dead-lettered by the sync with its own reason; not a catalog problem
    return out, count > MAX_ROWS


def catalog_problems(
    contracts: list[DesiredContract],
    rate_cards: list[CatalogEntry],
    packages: list[CatalogEntry],
    products: list[ProductState],
) -> list[str]:
    """What the contracts name that the catalog lacks (pure)."""
    problems: set[str] = set()
    cards = _names(rate_cards)
    packs = _names(packages)
    for contract in contracts:
        kind, value = contract.pricing, contract.pricing_value
        known = cards if kind.startswith("rate_card") else packs
        if value not in known[kind.endswith("_id")]:
            problems.add(f"{kind.replace('_', ' ')} {value!r} does not exist")
        for commit in contract.commits:
            product = _product(products, commit.product_id, commit.product_name)
            if product is None:
                problems.add(f"commit product {commit.product_ref()!r} does not exist")
            elif product.type.upper() != FIXED:
                problems.add(
                    f"commit product {commit.product_ref()!r} is {product.type}, not FIXED"
                )
    return sorted(problems)


def check_contract_catalog(
    mapping: Mapping, source: ClosedWonSource, gateway: MetronomeGateway
) -> tuple[bool, str]:
    """(ok, detail) for ``crmsync check``."""
    contracts, truncated = produced_contracts(mapping, source)
    products = gateway.list_products() if any(c.commits for c in contracts) else []
    problems = catalog_problems(
        contracts, gateway.list_rate_cards(), gateway.list_packages(), products
    )
    detail = f"{len(contracts)} won deals map to contracts"
    if truncated:
        detail += f" (first {MAX_ROWS} read)"
    if problems:
        return False, detail + "; " + "; ".join(problems)
    return True, detail + "; every rate card, package and product they name exists"


def _names(entries: list[CatalogEntry]) -> tuple[set[str], set[str]]:
    """(aliases, ids) of catalog entries: index 0 for ``*_alias``, 1 for ``*_id``."""
    return {a for e in entries for a in e.aliases}, {e.id for e in entries}


def _product(
    products: list[ProductState], product_id: str | None, name: str | None
) -> ProductState | None:
    for product in products:
        if product_id is not None and product.id == product_id:
            return product
        if name is not None and product.name == name and not product.archived:
            return product
    return None
