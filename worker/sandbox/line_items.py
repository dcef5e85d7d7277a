"""``--line-item`` for ``crmsync sandbox add-account``: a deal's products as a rep types them.

A spec is ``PRODUCT_CODE[,quantity=N][,price=DOLLARS][,discount=PERCENT]`` (``product=CODE``
may name the product too), e.g. ``SEAT,quantity=50`` or ``COMMIT,price=120000``: the fields
of one OpportunityLineItem (Quantity, UnitPrice, Discount) on the org's Product2 whose
ProductCode it names. Which contract term a line becomes is the Product2's
``Metronome_Kind__c`` under the default mapping (mappings/default.yaml, ``line_items``):
``subscription`` seats (Quantity), a prepaid ``commit`` and a one-time ``fee`` of the line's
TotalPrice, a ``usage`` product's Discount as a rate override.

Everything here is pure, so every spec is parsed and checked against the catalogue before
anything is created in the org.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

SPEC_FORMAT = "PRODUCT_CODE[,quantity=N][,price=DOLLARS][,discount=PERCENT]"
SPEC_EXAMPLE = "SEAT,quantity=50"
_KEYS = ("product", "quantity", "price", "discount")

#: Salesforce's OpportunityLineItem.Quantity and UnitPrice bounds that matter here.
MAX_QUANTITY = 1_000_000
MAX_PRICE = 1_000_000_000


class LineItemError(ValueError):
    """A spec that is malformed, or names a product the org does not sell."""


@dataclass(frozen=True)
class LineItemSpec:
    """One ``--line-item`` as typed (the product still only a code)."""

    text: str
    product_code: str
    quantity: float = 1
    price: float = 0
    discount: float | None = None


@dataclass(frozen=True)
class Product:
    """A Product2 of the org, as the default mapping reads it."""

    id: str
    code: str
    name: str
    kind: str | None  # Metronome_Kind__c: subscription, commit, usage, fee

    def label(self) -> str:
        return f"{self.code} ({self.name}, {self.kind or 'no Metronome_Kind__c'})"


@dataclass(frozen=True)
class LineItem:
    """A spec resolved to the org's product: ready to be created on a deal."""

    spec: LineItemSpec
    product: Product

    def fields(self, opportunity_id: str, order: int) -> dict[str, Any]:
        """The OpportunityLineItem to create (TotalPrice is Salesforce's to compute)."""
        fields: dict[str, Any] = {
            "OpportunityId": opportunity_id,
            "Product2Id": self.product.id,
            "Quantity": _plain(self.spec.quantity),
            "UnitPrice": _plain(self.spec.price),
            "SortOrder": order,
        }
        if self.spec.discount is not None:
            fields["Discount"] = _plain(self.spec.discount)
        return fields

    def describe(self) -> str:
        """What the line becomes under the default mapping, in a rep's words."""
        spec, kind = self.spec, self.product.kind
        total = spec.quantity * spec.price * (1 - (spec.discount or 0) / 100)
        if kind == "subscription":
            what = f"{_number(spec.quantity)} seats, billed annually in advance"
        elif kind == "commit":
            what = f"a prepaid commit of ${total:,.2f}, invoiced up front"
        elif kind == "usage" and spec.discount is not None:
            what = f"{_number(spec.discount)}% off its rate-card price"
        elif kind == "usage":
            what = "billed at the rate card's price"
        elif kind == "fee":
            what = f"a one-time fee of ${total:,.2f} on the first day"
        else:
            what = "no contract term under the default mapping"
        return f"{self.product.code} ({self.product.name}): {what}"


def parse_line_item(text: str) -> LineItemSpec:
    """``SEAT,quantity=50`` -> a spec; a malformed one is a LineItemError naming the bad part."""
    if not text.strip():
        raise _malformed(text, "it is empty")
    values: dict[str, str] = {}
    parts = [part.strip() for part in text.split(",")]
    for index, part in enumerate(parts):
        key, equals, value = (s.strip() for s in part.partition("="))
        if not equals and index == 0 and key:
            key, value = "product", part
        if key not in _KEYS:
            what = f"unknown key {key!r}" if equals else f"{part!r} is not KEY=VALUE"
            raise _malformed(text, f"{what} (keys: {', '.join(_KEYS)})")
        if not value:
            raise _malformed(text, f"{key} has no value")
        if key in values:
            raise _malformed(text, f"{key} is given twice")
        values[key] = value
    if "product" not in values:
        raise _malformed(text, "no product code")
    quantity = _bounded(text, "quantity", values.get("quantity", "1"), 0, MAX_QUANTITY)
    if quantity == 0:
        raise _malformed(text, "quantity must be above 0")
    price = _bounded(text, "price", values.get("price", "0"), 0, MAX_PRICE)
    discount = values.get("discount")
    return LineItemSpec(
        text=text,
        product_code=values["product"],
        quantity=quantity,
        price=price,
        discount=None
        if discount is None
        else _bounded(text, "discount", discount.removesuffix("%"), 0, 100),
    )


def resolve(specs: Sequence[LineItemSpec], catalogue: Iterable[Product]) -> list[LineItem]:
    """Each spec on the org's product its code names (case-insensitive), checked against
    what that product's kind needs; the first bad one is a LineItemError with the choices."""
    products = {product.code.upper(): product for product in catalogue}
    items = []
    for spec in specs:
        product = products.get(spec.product_code.upper())
        if product is None:
            choices = ", ".join(p.label() for p in products.values()) or "none"
            raise LineItemError(
                f"--line-item {spec.text!r}: no product {spec.product_code!r} in the sandbox "
                f"org; its products: {choices}"
            )
        _require_terms(spec, product)
        items.append(LineItem(spec, product))
    return items


def catalogue_of(records: Iterable[Mapping[str, Any]]) -> list[Product]:
    """Products from the rows of ``SELECT Id, ProductCode, Name, Metronome_Kind__c FROM
    Product2``; a product without a code cannot be named, so it is left out."""
    return [
        Product(str(row["Id"]), str(row["ProductCode"]), str(row["Name"]), row["Metronome_Kind__c"])
        for row in records
        if row.get("ProductCode")
    ]


def _require_terms(spec: LineItemSpec, product: Product) -> None:
    """What each kind needs to become a contract term (mappings/default.yaml): whole seats,
    and an amount for a commit or a fee (a $0 one is refused by Metronome)."""
    if product.kind == "subscription" and spec.quantity != int(spec.quantity):
        raise _malformed(spec.text, f"{product.code} is sold in whole seats: quantity=N")
    if product.kind in ("commit", "fee") and spec.price == 0:
        what = "a prepaid commit" if product.kind == "commit" else "a one-time fee"
        raise _malformed(spec.text, f"{product.code} is {what}: give its amount as price=DOLLARS")


def _bounded(text: str, key: str, value: str, low: float, high: float) -> float:
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or not low <= number <= high:
        raise _malformed(text, f"{key}={value} is not a number from {low:,g} to {high:,.0f}")
    return number


def _malformed(text: str, why: str) -> LineItemError:
    return LineItemError(
        f"--line-item {text!r}: {why}; a line item is {SPEC_FORMAT}, e.g. {SPEC_EXAMPLE}"
    )


def _plain(value: float) -> float | int:
    """50.0 -> 50: a whole number goes to Salesforce as one (a seat count reads as seats)."""
    return int(value) if value == int(value) else value


def _number(value: float) -> str:
    return str(_plain(value))
