"""The triage: which events may change a customer, decided from the header alone."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from mappings import load_default_mapping
from worker.salesforce.events.changes import ChangeEvent, ChangeType
from worker.salesforce.events.relevance import Interest, Verdict, triage

INTEREST = Interest.from_mapping(load_default_mapping())
OPP = "006Hp00000AAAAAAAA"
ACC = "001Hp00000AAAAAAAA"


def event(
    entity: str, kind: ChangeType, changed: Iterable[str] = (), **values: object
) -> ChangeEvent:
    ids: tuple[str, ...] = (OPP,) if entity == "Opportunity" else (ACC,)
    if kind is ChangeType.GAP_OVERFLOW:
        ids = ()
    return ChangeEvent(entity, kind, ids, 0, frozenset(changed), values)


def test_the_interest_comes_from_the_mapping() -> None:
    assert {"iswon", "stagename", "accountid"} <= INTEREST.opportunity_fields
    assert {"name", "billing_email__c", "aws_region__c"} <= INTEREST.account_fields
    assert "website" not in INTEREST.account_fields


@pytest.mark.parametrize(
    ("change", "verdict", "if_known"),
    [
        (
            event("Opportunity", ChangeType.UPDATE, ["IsWon", "StageName", "LastModifiedDate"]),
            Verdict.OPPORTUNITY,
            False,
        ),
        (event("Opportunity", ChangeType.UPDATE, ["AccountId"]), Verdict.OPPORTUNITY, True),
        (
            event("Opportunity", ChangeType.UPDATE, ["NextStep", "LastModifiedDate"]),
            Verdict.SKIP,
            False,
        ),
        # A line item's change arrives as the deal's rolled-up Amount: the mapping reads
        # line items, so it matters.
        (
            event("Opportunity", ChangeType.UPDATE, ["Amount", "LastModifiedDate"]),
            Verdict.OPPORTUNITY,
            True,
        ),
        (event("Opportunity", ChangeType.CREATE, IsWon=False), Verdict.SKIP, False),
        (event("Opportunity", ChangeType.CREATE, IsWon=True), Verdict.OPPORTUNITY, False),
        (event("Opportunity", ChangeType.GAP_UPDATE), Verdict.OPPORTUNITY, False),
        (event("Opportunity", ChangeType.UNDELETE), Verdict.OPPORTUNITY, False),
        (event("Opportunity", ChangeType.DELETE), Verdict.SKIP, False),
        (event("Opportunity", ChangeType.GAP_OVERFLOW), Verdict.POLL, False),
        (event("Account", ChangeType.CREATE), Verdict.SKIP, False),
        (event("Account", ChangeType.UPDATE, ["Name", "LastModifiedDate"]), Verdict.ACCOUNT, True),
        (event("Account", ChangeType.UPDATE, ["Website", "LastModifiedDate"]), Verdict.SKIP, False),
        (event("Account", ChangeType.GAP_UPDATE), Verdict.ACCOUNT, True),
        (event("Account", ChangeType.DELETE), Verdict.SKIP, False),
        (event("Contact", ChangeType.UPDATE, ["Name"]), Verdict.SKIP, False),
    ],
)
def test_triage(change: ChangeEvent, verdict: Verdict, if_known: bool) -> None:
    result = triage(change, INTEREST)
    assert result.verdict is verdict, result.why
    assert result.if_known is if_known
    if verdict in (Verdict.OPPORTUNITY, Verdict.ACCOUNT):
        assert result.ids == change.record_ids


def test_rollup_makes_a_parent_change_matter() -> None:
    mapping = load_default_mapping().model_copy(
        update={
            "hierarchy_rollup": load_default_mapping().hierarchy_rollup.model_copy(
                update={"enabled": True}
            )
        }
    )
    assert "parentid" in Interest.from_mapping(mapping).account_fields
