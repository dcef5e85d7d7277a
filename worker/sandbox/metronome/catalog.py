"""The emulated Metronome account's catalog: rate cards, products and packages.

A contract points into the catalog -- a rate card by id or alias, each commit at a FIXED
product, or a package by id or alias -- so the emulator needs one to refuse what Metronome
refuses. crmsync only reads the catalog (to validate a mapping's rate cards and products),
so the emulator serves the three list endpoints and no writes: a catalog is given when the
emulator starts (:func:`default_catalog` unless the caller passes another) and survives
``reset``.

Ids are derived from the seed's names (uuid5), so a seeded id is the same on every run and
in every process: a demo or a test may print or hard-code one.

Shapes follow ``reference/metronome-openapi.json``: ``RateCard``, ``ProductListItem`` and
``Package``; the date-times the spec does not mark nullable are left out when unset rather
than sent as null.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from worker.sandbox.metronome import rules
from worker.sandbox.metronome.rules import bad_request, rfc3339

_SEED_NAMESPACE = uuid.UUID("0b3c5d1e-8f4a-4c2b-9e6d-7a1f2c3b4d5e")
#: When the seeded catalog was "created": fixed, so answers are the same on every run.
CATALOG_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
CREATED_BY = "crmsync-sandbox"
#: Metronome's USD (cents) credit type, the default currency of rate cards and commits
#: (its id is the one the spec's examples use).
USD_CENTS: dict[str, str] = {"id": "2714e483-4ff1-48e4-9e25-ac732e8f24f2", "name": "USD (cents)"}
#: The account's fiat credit types by id (GET /v1/credit-types/list): what a commit, charge
#: or rate may be priced in. Beyond USD, two seeded ones so a deal in EUR or GBP can be
#: mapped to its own credit type.
FIAT_CREDIT_TYPES: dict[str, dict[str, str]] = {
    USD_CENTS["id"]: USD_CENTS,
    "6d3f3a2e-0c51-5d8e-a3b4-1f0e6c2d9a71": {
        "id": "6d3f3a2e-0c51-5d8e-a3b4-1f0e6c2d9a71",
        "name": "EUR (cents)",
    },
    "9b1e7c44-2f6a-5b3d-8e1c-4a7d0f3b6c52": {
        "id": "9b1e7c44-2f6a-5b3d-8e1c-4a7d0f3b6c52",
        "name": "GBP (pence)",
    },
}

ProductType = Literal["USAGE", "SUBSCRIPTION", "COMPOSITE", "FIXED", "PRO_SERVICE"]
#: archive_filter of POST /v1/contract-pricing/products/list and /v1/packages/list
#: (the packages endpoint also takes the lower-case spellings).
ARCHIVE_FILTERS = ("ARCHIVED", "NOT_ARCHIVED", "ALL")
#: Default page sizes: the spec says packages default to 10 and gives no number for the others.
PACKAGES_PAGE_DEFAULT = 10
CATALOG_PAGE_DEFAULT = 100


def seed_id(kind: str, name: str) -> str:
    """The stable id of a seeded ``kind`` ("rate_card", "product", "package") named ``name``."""
    return str(uuid.uuid5(_SEED_NAMESPACE, f"{kind}:{name}"))


@dataclass(frozen=True, slots=True)
class Alias:
    """A rate card's or package's alias and the window it names it in (``RateCardAlias``,
    ``PackageAlias``): an alias may move to another rate card on a date, which is why a
    contract's alias is resolved as of the contract's ``starting_at``."""

    name: str
    starting_at: datetime | None = None
    ending_before: datetime | None = None

    def covers(self, moment: datetime) -> bool:
        return (self.starting_at is None or self.starting_at <= moment) and (
            self.ending_before is None or moment < self.ending_before
        )

    def overlaps(self, other: Alias) -> bool:
        earliest, latest = datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC)
        start = max(self.starting_at or earliest, other.starting_at or earliest)
        end = min(self.ending_before or latest, other.ending_before or latest)
        return self.name == other.name and start < end

    def detail(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.starting_at is not None:
            out["starting_at"] = rfc3339(self.starting_at)
        if self.ending_before is not None:
            out["ending_before"] = rfc3339(self.ending_before)
        return out


@dataclass(frozen=True, slots=True)
class Rate:
    """One rate on a rate card: a product's price, and for a SUBSCRIPTION product the
    billing frequency it is priced at (a subscription names its product *and* frequency,
    and the pair must match a rate on the contract's rate card)."""

    product_id: str
    price: float
    billing_frequency: str | None = None


@dataclass(frozen=True, slots=True)
class RateCard:
    id: str
    name: str
    aliases: tuple[Alias, ...] = ()
    description: str = ""
    rates: tuple[Rate, ...] = ()

    def has_rate(self, product_id: str, billing_frequency: str | None = None) -> bool:
        return any(
            r.product_id == product_id
            and (billing_frequency is None or r.billing_frequency == billing_frequency)
            for r in self.rates
        )

    def detail(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "created_at": rfc3339(CATALOG_EPOCH),
            "created_by": CREATED_BY,
            "fiat_credit_type": dict(USD_CENTS),
            "credit_type_conversions": [],
            "aliases": [a.detail() for a in self.aliases],
            "custom_fields": {},
        }


@dataclass(frozen=True, slots=True)
class Product:
    id: str
    name: str
    type: ProductType
    archived_at: datetime | None = None

    def detail(self) -> dict[str, Any]:
        state = {
            "name": self.name,
            "starting_at": rfc3339(CATALOG_EPOCH),
            "created_at": rfc3339(CATALOG_EPOCH),
            "created_by": CREATED_BY,
        }
        return {
            "id": self.id,
            "type": self.type,
            "archived_at": None if self.archived_at is None else rfc3339(self.archived_at),
            "initial": dict(state),
            "current": dict(state),
            "updates": [],
            "custom_fields": {},
        }


@dataclass(frozen=True, slots=True)
class Package:
    """A package: contract terms to provision a customer on by reference. The emulator's
    packages carry a rate card and a usage statement cadence, no commit templates."""

    id: str
    name: str
    rate_card_id: str
    aliases: tuple[Alias, ...] = ()
    usage_statement_frequency: str = "MONTHLY"
    net_payment_terms_days: float | None = None
    archived_at: datetime | None = None

    def detail(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "rate_card_id": self.rate_card_id,
            "aliases": [a.detail() for a in self.aliases],
            "commits": [],
            "credits": [],
            "overrides": [],
            "scheduled_charges": [],
            "created_at": rfc3339(CATALOG_EPOCH),
            "created_by": CREATED_BY,
            "usage_statement_schedule": {
                "frequency": self.usage_statement_frequency,
                "day": "FIRST_OF_MONTH",
            },
        }
        if self.net_payment_terms_days is not None:
            out["net_payment_terms_days"] = self.net_payment_terms_days
        if self.archived_at is not None:
            out["archived_at"] = rfc3339(self.archived_at)
        return out


@dataclass(frozen=True, slots=True)
class Catalog:
    """Everything a contract may reference; immutable, so the emulator shares it freely."""

    rate_cards: tuple[RateCard, ...] = ()
    products: tuple[Product, ...] = ()
    packages: tuple[Package, ...] = ()
    _by_id: dict[str, RateCard | Product | Package] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        """Refuse a catalog Metronome could not hold: duplicate ids, an alias naming two
        rate cards (or packages) at once, a package on a rate card that is not there."""
        items: tuple[RateCard | Product | Package, ...] = (
            *self.rate_cards,
            *self.products,
            *self.packages,
        )
        for item in items:
            if item.id in self._by_id:
                raise ValueError(f"catalog id {item.id} is used twice")
            self._by_id[item.id] = item
        for owners in (self.rate_cards, self.packages):
            aliases = [(owner.id, alias) for owner in owners for alias in owner.aliases]
            for n, (first_owner, first) in enumerate(aliases):
                for second_owner, second in aliases[n + 1 :]:
                    if first_owner != second_owner and first.overlaps(second):
                        raise ValueError(f"alias {first.name!r} names two items at once")
        for package in self.packages:
            if self.rate_card(package.rate_card_id) is None:
                raise ValueError(f"package {package.name!r} names an unknown rate card")

    # -- lookups (what a contract create resolves) -----------------------------------------

    def rate_card(self, rate_card_id: str) -> RateCard | None:
        found = self._by_id.get(rate_card_id)
        return found if isinstance(found, RateCard) else None

    def product(self, product_id: str) -> Product | None:
        found = self._by_id.get(product_id)
        return found if isinstance(found, Product) else None

    def package(self, package_id: str) -> Package | None:
        found = self._by_id.get(package_id)
        return found if isinstance(found, Package) else None

    def rate_card_for_alias(self, alias: str, moment: datetime) -> RateCard | None:
        return _aliased(self.rate_cards, alias, moment)

    def package_for_alias(self, alias: str, moment: datetime) -> Package | None:
        return _aliased(self.packages, alias, moment)

    def rate_card_named(self, name: str) -> RateCard:
        """For tests and the demo: the rate card called ``name`` (KeyError if none)."""
        return _named(self.rate_cards, name)

    def product_named(self, name: str) -> Product:
        return _named(self.products, name)

    def package_named(self, name: str) -> Package:
        return _named(self.packages, name)

    # -- the list endpoints ----------------------------------------------------------------

    def list_rate_cards(
        self, body: dict[str, Any], query: dict[str, str]
    ) -> tuple[list[RateCard], str | None]:
        """POST /v1/contract-pricing/rate-cards/list: the spec's body is an empty object
        (``additionalProperties: false``): there is no filter, by alias or otherwise, so a
        client that wants one rate card reads every page and picks it."""
        rules.only_fields(body, frozenset(), "POST /v1/contract-pricing/rate-cards/list")
        return rules.paged(self.rate_cards, query, default_limit=CATALOG_PAGE_DEFAULT)

    def get_rates(
        self, body: dict[str, Any], query: dict[str, str]
    ) -> tuple[list[dict[str, Any]], str | None]:
        """POST /v1/contract-pricing/rate-cards/getRates: a rate card's rates (RateSchedule),
        all of them or those of the products ``selectors`` name; ``rate_card_id`` and ``at``
        are required. Rates are in USD cents and start with the catalog."""
        rules.only_fields(body, frozenset({"rate_card_id", "at", "selectors"}), "getRates")
        card = self.rate_card(str(body.get("rate_card_id")))
        if card is None:
            raise bad_request(f"rate card {body.get('rate_card_id')!r} not found")
        rules.timestamp(body.get("at"), "at")
        wanted = {
            str(s.get("product_id"))
            for s in body.get("selectors") or []
            if isinstance(s, dict) and "product_id" in s
        }
        schedules = [
            _rate_schedule(rate, self.product(rate.product_id))
            for rate in card.rates
            if not wanted or rate.product_id in wanted
        ]
        return rules.paged(schedules, query, default_limit=CATALOG_PAGE_DEFAULT)

    def list_products(
        self, body: dict[str, Any], query: dict[str, str]
    ) -> tuple[list[Product], str | None]:
        rules.only_fields(body, frozenset({"archive_filter"}), "products/list")
        matches = _archive_filtered(self.products, body, lower_case_too=False)
        return rules.paged(matches, query, default_limit=CATALOG_PAGE_DEFAULT)

    def list_packages(
        self, body: dict[str, Any], query: dict[str, str]
    ) -> tuple[list[Package], str | None]:
        rules.only_fields(body, frozenset({"archive_filter"}), "packages/list")
        matches = _archive_filtered(self.packages, body, lower_case_too=True)
        return rules.paged(matches, query, default_limit=PACKAGES_PAGE_DEFAULT)


def _rate_schedule(rate: Rate, product: Product | None) -> dict[str, Any]:
    subscription = product is not None and product.type == "SUBSCRIPTION"
    out: dict[str, Any] = {
        "product_id": rate.product_id,
        "product_name": product.name if product else "",
        "product_tags": [],
        "product_custom_fields": {},
        "starting_at": rfc3339(CATALOG_EPOCH),
        "entitled": True,
        "rate": {
            "rate_type": "SUBSCRIPTION" if subscription else "FLAT",
            "price": rate.price,
            "credit_type": dict(USD_CENTS),
        },
    }
    if rate.billing_frequency is not None:
        out["billing_frequency"] = rate.billing_frequency
    return out


Aliased = TypeVar("Aliased", RateCard, Package)
Named = TypeVar("Named", RateCard, Product, Package)
Archivable = TypeVar("Archivable", Product, Package)


def _aliased(items: Sequence[Aliased], alias: str, moment: datetime) -> Aliased | None:
    for item in items:
        if any(a.name == alias and a.covers(moment) for a in item.aliases):
            return item
    return None


def _named(items: Sequence[Named], name: str) -> Named:
    for item in items:
        if item.name == name:
            return item
    raise KeyError(name)


def _archive_filtered(
    items: Sequence[Archivable], body: dict[str, Any], *, lower_case_too: bool
) -> list[Archivable]:
    raw = body.get("archive_filter", "NOT_ARCHIVED")
    allowed = ARCHIVE_FILTERS + (
        tuple(f.lower() for f in ARCHIVE_FILTERS) if lower_case_too else ()
    )
    if raw not in allowed:
        raise bad_request(f"archive_filter must be one of {', '.join(allowed)}")
    wanted = str(raw).upper()
    if wanted == "ALL":
        return list(items)
    return [i for i in items if (i.archived_at is not None) is (wanted == "ARCHIVED")]


# -- the seed --------------------------------------------------------------------------------

#: The day the seeded ``standard`` alias moves from the 2024 rate card to the current one.
STANDARD_SWITCH = datetime(2025, 1, 1, tzinfo=UTC)


def default_catalog() -> Catalog:
    """What every emulator serves unless told otherwise (the demo and the tests use it).

    - rate cards by alias: ``standard`` (the "Standard 2024" card before 2025-01-01, the
      "Standard" card from then on), ``enterprise``, ``startup``;
    - products: FIXED "Prepaid commit" and "Postpaid commit" (what commits draw on), an
      archived FIXED "Legacy commit", FIXED "Onboarding fee" (what a one-time fee is
      charged on), USAGE "API calls", "Compute" and "Storage", SUBSCRIPTION "Platform fee"
      and "Platform seat";
    - rates on every rate card: the usage products, and "Platform seat" at MONTHLY and
      ANNUAL (so a seat subscription on either frequency is valid), "Platform fee" MONTHLY;
    - one package, "Startup package", alias ``startup-package``, on the Startup rate card.
    """
    products = (
        _product("Prepaid commit", "FIXED"),
        _product("Postpaid commit", "FIXED"),
        _product("Legacy commit", "FIXED", archived_at=datetime(2024, 6, 1, tzinfo=UTC)),
        _product("Onboarding fee", "FIXED"),
        _product("API calls", "USAGE"),
        _product("Compute", "USAGE"),
        _product("Storage", "USAGE"),
        _product("Platform fee", "SUBSCRIPTION"),
        _product("Platform seat", "SUBSCRIPTION"),
    )
    rates = _seed_rates()
    startup = RateCard(seed_id("rate_card", "Startup"), "Startup", (Alias("startup"),), rates=rates)
    return Catalog(
        rate_cards=(
            RateCard(
                seed_id("rate_card", "Standard 2024"),
                "Standard 2024",
                (Alias("standard", ending_before=STANDARD_SWITCH),),
                "List prices until the 2025 price change",
                rates,
            ),
            RateCard(
                seed_id("rate_card", "Standard"),
                "Standard",
                (Alias("standard", starting_at=STANDARD_SWITCH),),
                "List prices",
                rates,
            ),
            RateCard(
                seed_id("rate_card", "Enterprise"),
                "Enterprise",
                (Alias("enterprise"),),
                rates=rates,
            ),
            startup,
        ),
        products=products,
        packages=(
            Package(
                seed_id("package", "Startup package"),
                "Startup package",
                startup.id,
                (Alias("startup-package"),),
                net_payment_terms_days=30,
            ),
        ),
    )


def _seed_rates() -> tuple[Rate, ...]:
    """List prices in USD cents: per unit for usage, per seat per period for subscriptions."""

    def pid(name: str) -> str:
        return seed_id("product", name)

    return (
        Rate(pid("API calls"), 0.1),
        Rate(pid("Compute"), 12),
        Rate(pid("Storage"), 2),
        Rate(pid("Platform seat"), 5000, "MONTHLY"),
        Rate(pid("Platform seat"), 50000, "ANNUAL"),
        Rate(pid("Platform fee"), 100000, "MONTHLY"),
    )


def _product(name: str, kind: ProductType, archived_at: datetime | None = None) -> Product:
    return Product(seed_id("product", name), name, kind, archived_at)
