"""The emulator's SOQL subset: what it answers, and that it refuses the rest loudly."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from worker.sandbox.salesforce.soql_eval import execute, render
from worker.sandbox.salesforce.soql_parser import Comparison, Or, SemiJoin, SoqlError, parse
from worker.sandbox.salesforce.store import RecordStore


@pytest.fixture
def store() -> RecordStore:
    s = RecordStore()
    top = s.insert("Account", {"Name": "Top Holdings", "Billing_Provider__c": "stripe"})
    mid = s.insert("Account", {"Name": "Mid GmbH", "ParentId": top})
    leaf = s.insert("Account", {"Name": "Leaf_%Co", "ParentId": mid, "Website": None})
    lone = s.insert("Account", {"Name": "O'Brien", "Billing_Provider__c": "aws_marketplace"})
    for account, stage, amount in [
        (leaf, "Closed Won", 100.0),
        (leaf, "Prospecting", None),
        (lone, "Closed Won", 50.0),
        (mid, "Closed Lost", 10.0),
    ]:
        s.insert(
            "Opportunity",
            {"AccountId": account, "Name": f"deal {stage}", "StageName": stage,
             "CloseDate": "2026-05-01", "Amount": amount},
        )  # fmt: skip
    return s


def run(store: RecordStore, soql: str, include_deleted: bool = False) -> list[dict[str, Any]]:
    compiled = execute(parse(soql), store, include_deleted=include_deleted)
    return [render(row, compiled.render_plan, store, "59.0") for row in compiled.rows]


def names(rows: list[dict[str, Any]]) -> list[str]:
    return [row["Name"] for row in rows]


def test_parser_builds_the_expected_tree() -> None:
    query = parse(
        "select Id from Account where (Name = 'a' or Name != 'b') "
        "and Id in (SELECT AccountId FROM Opportunity WHERE IsWon = TRUE) "
        "order by Name desc nulls first, Id limit 5"
    )
    assert query.sobject == "Account" and query.limit == 5
    assert [(o.descending, o.nulls_last) for o in query.order_by] == [(True, False), (False, False)]
    assert query.where is not None
    first, second = query.where.terms  # type: ignore[union-attr]
    assert isinstance(first, Or) and isinstance(first.terms[1], Comparison)
    assert isinstance(second, SemiJoin) and second.subquery.sobject == "Opportunity"


def test_relationship_fields_come_back_nested_with_attributes(store: RecordStore) -> None:
    rows = run(
        store,
        "SELECT Name, Account.Name, Account.Parent.Name, Account.Parent.Parent.Name "
        "FROM Opportunity WHERE IsWon = true ORDER BY Amount DESC",
    )
    leaf_deal, lone_deal = rows
    assert leaf_deal["attributes"]["type"] == "Opportunity"
    assert leaf_deal["Account"]["attributes"]["type"] == "Account"
    assert leaf_deal["Account"]["Name"] == "Leaf_%Co"
    assert leaf_deal["Account"]["Parent"]["Name"] == "Mid GmbH"
    assert leaf_deal["Account"]["Parent"]["Parent"]["Name"] == "Top Holdings"
    assert lone_deal["Account"]["Parent"] is None


def test_where_on_a_relationship_field_and_datetime_literals(store: RecordStore) -> None:
    past = "2000-01-01T00:00:00Z"
    soql = "SELECT Id FROM Opportunity WHERE Account.SystemModstamp > "
    assert len(run(store, soql + past)) == 4
    future = "2999-01-01T01:00:00+01:00"
    assert run(store, soql + future) == []
    rows = run(store, "SELECT Id FROM Opportunity WHERE Account.Parent.Name = 'mid gmbh'")
    assert len(rows) == 2  # string equality is case-insensitive, like SOQL


def test_and_or_not_parentheses_in_null_and_like(store: RecordStore) -> None:
    soql = "SELECT Name FROM Account WHERE {} ORDER BY Name"
    assert names(run(store, soql.format("ParentId = null AND NOT Name LIKE 'o\\'%'"))) == [
        "Top Holdings"
    ]
    assert names(
        run(store, soql.format("(Name = 'Mid GmbH' OR Name = 'Top Holdings') AND ParentId != null"))
    ) == ["Mid GmbH"]
    assert names(
        run(store, soql.format("Billing_Provider__c IN ('stripe', 'aws_marketplace')"))
    ) == [
        "O'Brien",
        "Top Holdings",
    ]
    assert names(run(store, soql.format("Name NOT IN ('O\\'Brien')"))) == [
        "Leaf_%Co", "Mid GmbH", "Top Holdings"
    ]  # fmt: skip
    # LIKE wildcards, and escaped wildcards that must match literally
    assert names(run(store, soql.format("Name LIKE '%\\_\\%%'"))) == ["Leaf_%Co"]
    assert names(run(store, soql.format("Name LIKE 'M_d%'"))) == ["Mid GmbH"]


def test_semi_join_and_anti_join(store: RecordStore) -> None:
    won = "(SELECT AccountId FROM Opportunity WHERE IsWon = true)"
    assert names(run(store, "SELECT Name FROM Account WHERE Id IN " + won + " ORDER BY Name")) == [  # noqa: S608 -- constant test SOQL
        "Leaf_%Co",
        "O'Brien",
    ]
    anti = "SELECT Name FROM Account WHERE Id NOT IN " + won + " ORDER BY Name"  # noqa: S608 -- constant test SOQL
    assert names(run(store, anti)) == [
        "Mid GmbH",
        "Top Holdings",
    ]


def test_order_by_several_fields_with_nulls_placement_and_limit(store: RecordStore) -> None:
    base = "SELECT Name, Amount FROM Opportunity ORDER BY "
    amounts = [r["Amount"] for r in run(store, base + "Amount")]
    assert amounts == [None, 10.0, 50.0, 100.0]  # ASC defaults to NULLS FIRST
    amounts = [r["Amount"] for r in run(store, base + "Amount DESC")]
    assert amounts == [100.0, 50.0, 10.0, None]  # DESC defaults to NULLS LAST
    amounts = [r["Amount"] for r in run(store, base + "Amount ASC NULLS LAST LIMIT 2")]
    assert amounts == [10.0, 50.0]
    rows = run(
        store, base.replace("Amount", "AccountId", 1) + "AccountId DESC, Amount DESC NULLS FIRST"
    )
    assert [r["AccountId"] for r in rows] == sorted((r["AccountId"] for r in rows), reverse=True)


def test_dates_numbers_and_deleted_rows(store: RecordStore) -> None:
    assert len(run(store, "SELECT Id FROM Opportunity WHERE CloseDate = 2026-05-01")) == 4
    assert len(run(store, "SELECT Id FROM Opportunity WHERE Amount >= 50")) == 2
    victim = run(store, "SELECT Id FROM Account WHERE Name = 'O\\'Brien'")[0]["Id"]
    store.delete("Account", victim)
    assert run(store, "SELECT Id FROM Account WHERE IsDeleted = true") == []
    deleted = run(store, "SELECT Id, IsDeleted FROM Account WHERE IsDeleted = true", True)
    assert [r["Id"] for r in deleted] == [victim]


def test_datetime_values_render_like_the_rest_api(store: RecordStore) -> None:
    row = run(store, "SELECT SystemModstamp, CloseDate FROM Opportunity LIMIT 1")[0]
    stamp = datetime.strptime(row["SystemModstamp"], "%Y-%m-%dT%H:%M:%S.%f%z")
    assert stamp.tzinfo is not None and stamp.utcoffset() == UTC.utcoffset(None)
    assert (
        row["SystemModstamp"].endswith("+0000") and row["CloseDate"] == date(2026, 5, 1).isoformat()
    )


@pytest.mark.parametrize(
    "soql",
    [
        "SELECT COUNT() FROM Account",
        "SELECT Id FROM Account GROUP BY Name",
        "SELECT Id FROM Account LIMIT 5 OFFSET 5",
        "SELECT Id FROM Account WHERE CreatedDate = LAST_N_DAYS:3",
        "SELECT Id, (SELECT Id FROM Opportunities) FROM Account",
        "SELECT Id FROM Account FOR UPDATE",
        'SELECT Id FROM Account WHERE Name = "double quoted"',
        "SELECT Id FROM Account WHERE",
        "SELECT FROM Account",
        "SELECT Id Account",
        "SELECT Id FROM Account WHERE Name = 'unterminated",
        "SELECT Id FROM Account ORDER BY",
        "SELECT Id FROM Opportunity WHERE Amount < null",
        "SELECT Id, id FROM Account",
        "SELECT Id FROM Account WHERE Id IN (SELECT AccountId, Id FROM Opportunity)",
        "SELECT Id FROM Account WHERE Name INCLUDES ('a')",
        "DELETE FROM Account",
    ],
)
def test_outside_the_subset_is_malformed_query(store: RecordStore, soql: str) -> None:
    with pytest.raises(SoqlError) as caught:
        run(store, soql)
    assert caught.value.code == "MALFORMED_QUERY"


@pytest.mark.parametrize(
    ("soql", "code"),
    [
        ("SELECT Id, Nmae FROM Account", "INVALID_FIELD"),
        ("SELECT Account.Nmae FROM Opportunity", "INVALID_FIELD"),
        ("SELECT Owner.Name FROM Opportunity", "INVALID_FIELD"),
        ("SELECT Id FROM Lead", "INVALID_TYPE"),
        ("SELECT Id FROM Account WHERE SystemModstamp > 2026-01-01", "INVALID_FIELD"),
        ("SELECT Id FROM Account WHERE SystemModstamp > '2026-01-01T00:00:00Z'", "INVALID_FIELD"),
        ("SELECT Id FROM Opportunity WHERE IsWon = 'true'", "INVALID_FIELD"),
        ("SELECT Id FROM Account WHERE Id = 'not-an-id'", "INVALID_QUERY_FILTER_OPERATOR"),
    ],
)
def test_wrong_fields_and_types_get_salesforces_error_codes(
    store: RecordStore, soql: str, code: str
) -> None:
    with pytest.raises(SoqlError) as caught:
        run(store, soql)
    assert caught.value.code == code
