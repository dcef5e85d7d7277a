"""``--line-item`` specs: parsed and checked against the org's products before anything is
created, each mistake one line naming the bad part; and the contract listing's terms."""

from __future__ import annotations

from typing import Any

import pytest

from worker.sandbox.line_items import (
    LineItem,
    LineItemError,
    LineItemSpec,
    Product,
    catalogue_of,
    parse_line_item,
    resolve,
)
from worker.sandbox.listing import describe_contract

CATALOGUE = [
    Product("01tSEAT", "SEAT", "Platform seat", "subscription"),
    Product("01tCOMMIT", "COMMIT", "Prepaid commit", "commit"),
    Product("01tCOMPUTE", "COMPUTE", "Compute", "usage"),
    Product("01tONBOARD", "ONBOARD", "Onboarding fee", "fee"),
]


@pytest.mark.parametrize(
    ("text", "code", "quantity", "price", "discount"),
    [
        ("SEAT", "SEAT", 1, 0, None),
        ("SEAT,quantity=50", "SEAT", 50, 0, None),
        ("product=SEAT,quantity=50,price=12.5", "SEAT", 50, 12.5, None),
        (" COMPUTE , discount = 20% ", "COMPUTE", 1, 0, 20),
        ("COMMIT,price=120_000", "COMMIT", 1, 120_000, None),
        ("quantity=3,product=seat", "seat", 3, 0, None),
    ],
)
def test_a_spec_is_a_product_code_and_optional_terms(
    text: str, code: str, quantity: float, price: float, discount: float | None
) -> None:
    spec = parse_line_item(text)
    assert (spec.product_code, spec.quantity, spec.price, spec.discount) == (
        code,
        quantity,
        price,
        discount,
    )


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "it is empty"),
        ("SEAT,qty=50", "unknown key 'qty' (keys: product, quantity, price, discount)"),
        ("SEAT,50", "'50' is not KEY=VALUE"),
        ("quantity=50", "no product code"),
        ("SEAT,quantity=", "quantity has no value"),
        ("SEAT,quantity=1,quantity=2", "quantity is given twice"),
        ("SEAT,quantity=0", "quantity must be above 0"),
        ("SEAT,quantity=-1", "quantity=-1 is not a number from 0 to 1,000,000"),
        ("SEAT,quantity=fifty", "quantity=fifty is not a number"),
        ("SEAT,quantity=nan", "quantity=nan is not a number"),
        ("SEAT,price=inf", "price=inf is not a number"),
        ("COMPUTE,discount=120", "discount=120 is not a number from 0 to 100"),
    ],
)
def test_a_malformed_spec_is_one_line_naming_the_bad_part_and_the_format(
    text: str, why: str
) -> None:
    with pytest.raises(LineItemError) as raised:
        parse_line_item(text)
    message = str(raised.value)
    assert message.startswith(f"--line-item {text!r}: {why}")
    assert "a line item is PRODUCT_CODE[,quantity=N][,price=DOLLARS][,discount=PERCENT]" in message
    assert "\n" not in message


def test_an_unknown_product_names_the_orgs_products() -> None:
    with pytest.raises(LineItemError) as raised:
        resolve([parse_line_item("SEATS,quantity=50")], CATALOGUE)
    assert str(raised.value) == (
        "--line-item 'SEATS,quantity=50': no product 'SEATS' in the sandbox org; its products: "
        "SEAT (Platform seat, subscription), COMMIT (Prepaid commit, commit), "
        "COMPUTE (Compute, usage), ONBOARD (Onboarding fee, fee)"
    )


def test_codes_resolve_case_insensitively_to_the_orgs_product() -> None:
    [item] = resolve([parse_line_item("seat,quantity=5")], CATALOGUE)
    assert item.product.id == "01tSEAT"


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("SEAT,quantity=2.5", "SEAT is sold in whole seats: quantity=N"),
        ("COMMIT", "COMMIT is a prepaid commit: give its amount as price=DOLLARS"),
        ("ONBOARD,quantity=2", "ONBOARD is a one-time fee: give its amount as price=DOLLARS"),
    ],
)
def test_a_line_its_products_kind_cannot_bill_is_refused(text: str, why: str) -> None:
    with pytest.raises(LineItemError, match=f"^--line-item '{text}': {why}; "):
        resolve([parse_line_item(text)], CATALOGUE)


def test_a_line_becomes_the_opportunity_line_items_fields() -> None:
    seats, compute = resolve(
        [parse_line_item("SEAT,quantity=50,price=1200"), parse_line_item("COMPUTE,discount=20")],
        CATALOGUE,
    )
    assert seats.fields("006X", 0) == {
        "OpportunityId": "006X",
        "Product2Id": "01tSEAT",
        "Quantity": 50,
        "UnitPrice": 1200,
        "SortOrder": 0,
    }
    assert isinstance(seats.fields("006X", 0)["Quantity"], int)
    assert compute.fields("006X", 1)["Discount"] == 20


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("SEAT,quantity=50", "SEAT (Platform seat): 50 seats, billed annually in advance"),
        ("COMMIT,price=120000", "COMMIT (Prepaid commit): a prepaid commit of $120,000.00"),
        ("COMMIT,quantity=2,price=100,discount=10", "a prepaid commit of $180.00"),
        ("COMPUTE,discount=20", "COMPUTE (Compute): 20% off its rate-card price"),
        ("COMPUTE", "COMPUTE (Compute): billed at the rate card's price"),
        ("ONBOARD,price=5000", "ONBOARD (Onboarding fee): a one-time fee of $5,000.00"),
    ],
)
def test_each_line_says_what_it_becomes(text: str, said: str) -> None:
    [item] = resolve([parse_line_item(text)], CATALOGUE)
    assert said in item.describe()


def test_the_catalogue_leaves_out_products_without_a_code() -> None:
    rows: list[dict[str, Any]] = [
        {"Id": "01tA", "ProductCode": "SEAT", "Name": "Seat", "Metronome_Kind__c": "subscription"},
        {"Id": "01tB", "ProductCode": None, "Name": "Unnamed", "Metronome_Kind__c": "fee"},
    ]
    assert catalogue_of(rows) == [Product("01tA", "SEAT", "Seat", "subscription")]
    unbillable = LineItem(LineItemSpec("X", "X"), Product("01tC", "X", "Thing", None))
    assert "no contract term" in unbillable.describe()
    assert unbillable.product.label() == "X (Thing, no Metronome_Kind__c)"


def test_a_contracts_listing_shows_its_terms() -> None:
    usd = {"credit_type": {"name": "USD (cents)"}}
    contract = {
        "id": "c-1",
        "customer_id": "cu-1",
        "name": "Acme deal",
        "rate_card_id": "rc-1",
        "starting_at": "2027-01-06T00:00:00.000Z",
        "ending_before": None,
        "subscriptions": [
            {
                "collection_schedule": "ADVANCE",
                "quantity_schedule": [
                    {"quantity": 50, "starting_at": "2027-01-06T00:00:00.000Z"},
                    {"quantity": 70, "starting_at": "2027-06-01T00:00:00.000Z"},
                ],
                "subscription_rate": {
                    "billing_frequency": "ANNUAL",
                    "product": {"id": "p-1", "name": "Platform seat"},
                },
            }
        ],
        "commits": [
            {
                "type": "PREPAID",
                "product": {"name": "Prepaid commit"},
                "access_schedule": {**usd, "schedule_items": [{"amount": 12_000_000}]},
            }
        ],
        "overrides": [
            {
                "type": "MULTIPLIER",
                "multiplier": 0.8,
                "product": {"name": "Compute"},
                "starting_at": "2027-01-06T00:00:00.000Z",
            }
        ],
        "scheduled_charges": [
            {
                "product": {"name": "Onboarding fee"},
                "schedule": {
                    **usd,
                    "schedule_items": [
                        {"amount": 500_000, "timestamp": "2027-01-06T00:00:00.000Z"}
                    ],
                },
            }
        ],
    }
    assert describe_contract(contract).splitlines() == [
        "c-1  customer cu-1  Acme deal  priced by rc-1  2027-01-06T00:00:00.000Z .. evergreen",
        "  subscription Platform seat: 50 from 2027-01-06, then 70 from 2027-06-01 "
        "(annual, billed in advance)",
        "  prepaid commit Prepaid commit: $120,000.00",
        "  override Compute: multiplier 0.8 from 2027-01-06",
        "  scheduled charge Onboarding fee: $5,000.00 on 2027-01-06",
    ]


def test_a_malformed_spec_is_refused_before_the_sandbox_is_asked(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Nothing answers on port 9 here: the spec is refused first (exit 2, one line)."""
    from worker import cli

    code = cli.main(
        ["sandbox", "add-account", "Acme", "--rate-card", "standard", "--line-item", "SEAT",
         "--line-item", "SEAT,qty=5", "--salesforce-url", "http://127.0.0.1:9"]
    )  # fmt: skip
    assert code == 2
    assert capsys.readouterr().err.splitlines() == [
        "crmsync: --line-item 'SEAT,qty=5': unknown key 'qty' (keys: product, quantity, price, "
        "discount); a line item is PRODUCT_CODE[,quantity=N][,price=DOLLARS][,discount=PERCENT], "
        "e.g. SEAT,quantity=50"
    ]
