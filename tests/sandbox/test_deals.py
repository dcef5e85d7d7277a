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
    [account] = sf.query_all("SELECT Id FROM Account WHERE IsDeleted = true", include_deleted=True)[
        "records"
    ]
    assert str(raised.value) == (
        "the line item 'GONE,price=5' failed (Salesforce answered 400 "
        "INVALID_CROSS_REFERENCE_KEY: invalid cross reference id: Product2Id); nothing was left "
        f"(the account {account['Id']} made before it was deleted)"
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


@pytest.mark.usefixtures("catalogue")
def test_an_expansion_and_a_renewal_by_hand(sf: Salesforce) -> None:  # noqa: F811
    first = deals.add_account(sf, "Grows Co", rate_card="standard", term_months=12, won=True)
    more = [parse_line_item("SEAT,quantity=20")]
    expansion = deals.add_deal(
        sf, first.account_id, deal_type="expansion", line_items=more, won=True
    )
    with pytest.raises(deals.SandboxEditError, match="a renewal makes the next contract"):
        deals.add_deal(sf, first.account_id, deal_type="renewal")
    renewal = deals.add_deal(
        sf, first.account_id, deal_type="renewal", rate_card="standard", term_months=12
    )
    assert renewal.what.startswith(
        f"added an open renewal {renewal.opportunity_id} (Prospecting, rate card 'standard', "
        f"renewing the contract of '{first.opportunity_id}')"  # not the expansion's
    )
    soql = "SELECT Id, Name, Type, Metronome_Parent_Opportunity__c FROM Opportunity WHERE Id IN {}"
    rows = live(sf, format_soql(soql, [expansion.opportunity_id, renewal.opportunity_id]))
    by_id = {row["Id"]: row for row in rows}
    assert by_id[expansion.opportunity_id]["Type"] == "Expansion"
    assert by_id[expansion.opportunity_id]["Metronome_Parent_Opportunity__c"] is None
    assert by_id[renewal.opportunity_id]["Name"] == "Grows Co renewal deal"
    assert by_id[renewal.opportunity_id]["Metronome_Parent_Opportunity__c"] == first.opportunity_id


def test_a_renewal_needs_a_contract_to_renew(sf: Salesforce) -> None:  # noqa: F811
    account = deals.add_account(sf, "Fresh Co").account_id
    with pytest.raises(deals.SandboxEditError, match="no won deal with a contract to renew"):
        deals.add_deal(sf, account, deal_type="renewal", rate_card="standard")
    with pytest.raises(deals.SandboxEditError, match="no account 001"):
        deals.add_deal(sf, "001Hp000000000AIAQ")
    assert len(live(sf, "SELECT Id FROM Opportunity")) == 1
