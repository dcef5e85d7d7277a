"""The Opportunity fields that carry a deal's contract terms (issue #13), written and read
back with simple-salesforce itself: typed on write, filterable in SOQL."""

from __future__ import annotations

import pytest
from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import SalesforceMalformedRequest

from tests.support.salesforce_emulator import sobject

SELECT_TERMS = (
    "SELECT Id, Metronome_Rate_Card__c, Contract_Start_Date__c, Contract_Term_Months__c, "
    "Prepaid_Commit_Amount__c, CurrencyIsoCode FROM Opportunity"
)


def _deal(sf: Salesforce, **fields: object) -> str:
    account = sobject(sf, "Account").create({"Name": "Acme"})["id"]
    created = sobject(sf, "Opportunity").create(
        {
            "AccountId": account,
            "Name": "Acme annual",
            "StageName": "Closed Won",
            "CloseDate": "2026-01-15",
            **fields,
        }
    )
    return str(created["id"])


def test_contract_terms_round_trip_and_filter(sf: Salesforce) -> None:
    deal = _deal(
        sf,
        Metronome_Rate_Card__c="enterprise",
        Contract_Start_Date__c="2026-02-01",
        Contract_Term_Months__c=12,
        Prepaid_Commit_Amount__c=50000.5,
        CurrencyIsoCode="USD",
    )
    _deal(sf)  # a deal without terms reads them as null

    rows = sf.query(SELECT_TERMS)["records"]
    terms = {
        row["Id"]: {k: v for k, v in row.items() if k not in ("Id", "attributes")} for row in rows
    }
    assert terms[deal] == {
        "Metronome_Rate_Card__c": "enterprise",
        "Contract_Start_Date__c": "2026-02-01",
        "Contract_Term_Months__c": 12.0,
        "Prepaid_Commit_Amount__c": 50000.5,
        "CurrencyIsoCode": "USD",
    }
    others = [value for key, value in terms.items() if key != deal]
    assert others == [dict.fromkeys(terms[deal])]

    soql = (
        "SELECT Id FROM Opportunity WHERE Contract_Term_Months__c >= 12 "
        "AND Contract_Start_Date__c = 2026-02-01 AND Prepaid_Commit_Amount__c > 100"
    )
    assert [r["Id"] for r in sf.query(soql)["records"]] == [deal]


@pytest.mark.parametrize(
    "fields",
    [
        {"Contract_Term_Months__c": "twelve"},
        {"Contract_Start_Date__c": "next monday"},
        {"Prepaid_Commit_Amount__c": True},
    ],
)
def test_contract_terms_are_typed(sf: Salesforce, fields: dict[str, object]) -> None:
    with pytest.raises(SalesforceMalformedRequest, match="INVALID_TYPE_ON_FIELD_IN_RECORD"):
        _deal(sf, **fields)
