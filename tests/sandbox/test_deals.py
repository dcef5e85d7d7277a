"""``sandbox add-account`` with line items, against the Salesforce emulator over real HTTP:
the deal as sold, and all or nothing when something fails half-way."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from simple_salesforce.api import Salesforce
from simple_salesforce.format import format_soql

from tests.support.salesforce_emulator import emulator, make_client, sf  # noqa: F401 (fixtures)
from worker.sandbox import deals
from worker.sandbox.line_items import LineItem, LineItemError, Product, parse_line_item, resolve
from worker.sandbox.salesforce import SalesforceEmulator

AS_SOLD = ["SEAT,quantity=50,price=1200", "COMMIT,price=120000", "COMPUTE,discount=20"]


@pytest.fixture
def catalogue(emulator: SalesforceEmulator) -> None:  # noqa: F811 (fixture)
    emulator.seed(0)  # the org's products, no accounts (as `crmsync sandbox` starts)


def live(sf: Salesforce, soql: str) -> list[dict[str, Any]]:  # noqa: F811 (fixture name)
    return list(sf.query(soql)["records"])


@pytest.mark.usefixtures("catalogue")
def test_a_won_deal_sold_as_line_items(sf: Salesforce) -> None:  # noqa: F811
    specs = [parse_line_item(text) for text in AS_SOLD]
    edit = deals.add_account(sf, "Lines Co", rate_card="standard", line_items=specs, won=True)
    assert edit.what.splitlines()[0] == (
        f"created with a won deal {edit.opportunity_id} (Closed Won, rate card 'standard'), "
        "sold as:"
    )
    soql = "SELECT IsWon, AccountId FROM Opportunity WHERE Id = {}"
    [deal] = live(sf, format_soql(soql, edit.opportunity_id))
    assert deal["IsWon"] is True and deal["AccountId"] == edit.account_id
    lines = live(
        sf,
        format_soql(
            "SELECT Product2.ProductCode, Quantity, Discount, TotalPrice FROM OpportunityLineItem "
            "WHERE OpportunityId = {} ORDER BY SortOrder",
            edit.opportunity_id,
        ),
    )
    assert [
        (row["Product2"]["ProductCode"], row["Quantity"], row["TotalPrice"], row["Discount"])
        for row in lines
    ] == [("SEAT", 50, 60_000, None), ("COMMIT", 1, 120_000, None), ("COMPUTE", 1, 0, 20)]


@pytest.mark.usefixtures("catalogue")
def test_an_unknown_product_creates_nothing(sf: Salesforce) -> None:  # noqa: F811
    with pytest.raises(LineItemError, match="no product 'SEATS' in the sandbox org"):
        deals.add_account(
            sf, "Nothing Co", rate_card="standard", line_items=[parse_line_item("SEATS")]
        )
    assert live(sf, "SELECT Id FROM Account") == []


def test_line_items_without_a_rate_card_are_refused(sf: Salesforce) -> None:  # noqa: F811
    with pytest.raises(deals.SandboxEditError, match="add --rate-card standard"):
        deals.add_account(sf, "No Card Co", line_items=[parse_line_item("SEAT")])
    assert live(sf, "SELECT Id FROM Account") == []


@pytest.mark.usefixtures("catalogue")
def test_a_line_salesforce_refuses_deletes_the_account_again(sf: Salesforce) -> None:  # noqa: F811
    # A product deleted after the catalogue was read: the org refuses the line itself.
    gone = Product("01tHp00000GONE0AAA", "GONE", "Gone", "fee")
    seats, *_ = resolve([parse_line_item("SEAT,quantity=5")], deals.read_catalogue(sf))
    lines = [seats, LineItem(parse_line_item("GONE,price=5"), gone)]
    with pytest.raises(deals.SandboxEditError) as raised:
        deals._create(sf, {"Name": "Half Co"}, _deal(), lines, won=True)
    assert str(raised.value) == (
        "the line item 'GONE,price=5' failed (Salesforce answered 400 "
        "INVALID_CROSS_REFERENCE_KEY: invalid cross reference id: Product2Id); nothing was left "
        "(the account made before it was deleted)"
    )
    assert live(sf, "SELECT Id FROM Account") == []
    assert live(sf, "SELECT Id FROM Opportunity") == []


def test_what_is_left_is_named_when_the_undo_fails_too() -> None:
    dropping = _DropsAfterTheAccount()
    with pytest.raises(deals.SandboxEditError) as raised:
        deals._create(dropping, {"Name": "Cut Co"}, _deal(), [], won=True)  # type: ignore[arg-type]
    assert str(raised.value) == (
        "the deal failed (ConnectionError: no answer from the sandbox), and deleting what was "
        "made failed too (ConnectionError: no answer from the sandbox); left in the sandbox "
        "org: account 001Hp000000000AIAQ without its deal (never won, so never synced): delete "
        "that account"
    )


def test_nothing_made_and_no_answer_is_the_connection_error() -> None:
    dropping = _DropsAfterTheAccount(account_too=True)
    with pytest.raises(requests.ConnectionError):
        deals._create(dropping, {"Name": "Cut Co"}, _deal(), [], won=False)  # type: ignore[arg-type]


def _deal() -> dict[str, Any]:
    return {"Name": "A deal", "StageName": deals.OPEN_STAGE, "CloseDate": "2026-12-31"}


class _DropsAfterTheAccount:
    """A client whose sandbox stops answering once the account is made (or before)."""

    def __init__(self, *, account_too: bool = False) -> None:
        drops = self

        class SObject:
            def __init__(self, name: str) -> None:
                self.name = name

            def create(self, fields: dict[str, Any]) -> dict[str, Any]:
                if self.name == "Account" and not drops.account_too:
                    return {"id": "001Hp000000000AIAQ"}
                raise requests.ConnectionError("connection refused")

            def delete(self, record_id: str) -> None:
                raise requests.ConnectionError("connection refused")

        self.account_too = account_too
        self.Account = SObject("Account")
        self.Opportunity = SObject("Opportunity")
