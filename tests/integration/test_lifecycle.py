"""A deal as sold, end to end: its line items become contract terms, an expansion edits the
live contract exactly once, a renewal transitions from the contract it renews. Real Redis, a
real `crmsync worker`, both emulators over HTTP, simple-salesforce and metronome-sdk.

Each test works on accounts of its own, so they share one stack (and one worker).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from simple_salesforce.api import Salesforce

from tests.support.metronome_spec import (
    SPEC_NAME,
    assert_requests_match_spec,
    load_spec,
    reference_dir,
)
from tests.support.stack import held_by, poll_and_wait, salesforce_client, stack_with_worker
from worker.ops.history import build_history
from worker.sandbox.stack import SandboxStack

pytestmark = pytest.mark.integration

EDIT = "POST /v2/contracts/edit"
GET = "POST /v2/contracts/get"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxStack]:
    base = tmp_path_factory.mktemp("lifecycle")
    with stack_with_worker(base) as running:
        yield running


@pytest.fixture(scope="module")
def sf(stack: SandboxStack) -> Salesforce:
    return salesforce_client(stack)


@pytest.fixture(scope="module")
def products(stack: SandboxStack, sf: Salesforce) -> dict[str, str]:
    """The Salesforce products, each naming its Metronome product and kind."""
    assert stack.metronome is not None
    catalog = stack.metronome.catalog
    out = {}
    for code, name, kind in (
        ("SEAT", "Platform seat", "subscription"),
        ("COMMIT", "Prepaid commit", "commit"),
        ("COMPUTE", "Compute", "usage"),
        ("ONBOARD", "Onboarding fee", "fee"),
    ):
        out[code] = sf.Product2.create(  # type: ignore[operator]
            {"Name": name, "ProductCode": code, "IsActive": True, "Metronome_Kind__c": kind,
             "Metronome_Product_Id__c": catalog.product_named(name).id}
        )["id"]  # fmt: skip
    return out


def new_account(sf: Salesforce, name: str) -> str:
    created = sf.Account.create({"Name": name})  # type: ignore[operator]
    return str(sf.Account.get(created["id"])["Id"])  # type: ignore[operator]


def sell(
    sf: Salesforce,
    account_id: str,
    name: str,
    lines: list[tuple[str, dict[str, Any]]],
    products: dict[str, str],
    **terms: Any,
) -> str:
    """Open a deal, add its line items, close it won, as a rep would."""
    deal = sf.Opportunity.create(  # type: ignore[operator]
        {"AccountId": account_id, "Name": name, "StageName": "Negotiation/Review",
         "CloseDate": "2026-11-30"}
    )["id"]  # fmt: skip
    for n, (code, fields) in enumerate(lines):
        sf.OpportunityLineItem.create(  # type: ignore[operator]
            {"OpportunityId": deal, "Product2Id": products[code], "SortOrder": n,
             "Quantity": 1, "UnitPrice": 0, **fields}
        )  # fmt: skip
    sf.Opportunity.update(deal, {"StageName": "Closed Won", **terms})  # type: ignore[operator]
    return str(sf.Opportunity.get(deal)["Id"])  # type: ignore[operator]


def contract_of(stack: SandboxStack, opportunity_id: str) -> dict[str, Any]:
    assert stack.metronome is not None
    [contract] = held_by(stack.metronome.contracts(), "sfdc_opportunity_id", opportunity_id)
    return contract


def edits_of(stack: SandboxStack, opportunity_id: str) -> list[dict[str, Any]]:
    assert stack.metronome is not None
    return [
        e
        for e in stack.metronome.contract_edits()
        if e.get("uniqueness_key") == f"crmsync:sfdc-expansion:{opportunity_id}"
    ]


def edit_calls(stack: SandboxStack) -> int:
    assert stack.metronome is not None
    return sum(n for k, n in stack.metronome.request_counts().items() if k.startswith(EDIT))


def counts(stack: SandboxStack) -> dict[str, int]:
    """Metronome requests by route (method and template, any status)."""
    assert stack.metronome is not None
    out: dict[str, int] = {}
    for key, n in stack.metronome.request_counts().items():
        route = key.rsplit(" ", 1)[0]
        out[route] = out.get(route, 0) + n
    return out


def calls_since(stack: SandboxStack, before: dict[str, int]) -> dict[str, int]:
    now = counts(stack)
    return {k: now[k] - before.get(k, 0) for k in now if now[k] != before.get(k, 0)}


def seat_quantities(stack: SandboxStack, opportunity_id: str) -> list[list[float]]:
    """Each subscription of the deal's contract: its quantity schedule, oldest first (the
    expansions here start on the contract's first day, so each replaces the quantity)."""
    return [
        [q["quantity"] for q in s["quantity_schedule"]]
        for s in contract_of(stack, opportunity_id)["subscriptions"]
    ]


AS_SOLD = [
    ("SEAT", {"Quantity": 50, "UnitPrice": 1200}),
    ("COMMIT", {"UnitPrice": 120000}),
    ("COMPUTE", {"Discount": 20}),
    ("ONBOARD", {"UnitPrice": 5000}),
]


def test_line_items_expansion_and_renewal(
    stack: SandboxStack, sf: Salesforce, products: dict[str, str]
) -> None:
    account = new_account(sf, "Lifecycle Co")
    first = sell(sf, account, "Lifecycle Co new", AS_SOLD, products,
                 Metronome_Rate_Card__c="standard", Contract_Term_Months__c=12)  # fmt: skip
    poll_and_wait(stack)
    contract = contract_of(stack, first)
    [seats] = contract["subscriptions"]
    assert seats["quantity_schedule"][0]["quantity"] == 50
    assert [c["access_schedule"]["schedule_items"][0]["amount"] for c in contract["commits"]] == [
        12_000_000
    ]
    assert [(o["type"], o["multiplier"]) for o in contract["overrides"]] == [("MULTIPLIER", 0.8)]
    assert contract["scheduled_charges"][0]["schedule"]["schedule_items"][0]["amount"] == 500_000

    # An expansion: 20 more seats (a quantity update) and a deeper discount, from June.
    more = [("SEAT", {"Quantity": 20}), ("COMPUTE", {"Discount": 30})]
    expansion = sell(
        sf, account, "Lifecycle Co upgrade", more,
        products, Type="Existing Customer - Upgrade", Metronome_Parent_Opportunity__c=first,
        Contract_Start_Date__c="2027-06-01",
    )  # fmt: skip
    poll_and_wait(stack)
    [edit] = edits_of(stack, expansion)
    assert edit["contract_id"] == contract["id"]
    expanded = contract_of(stack, first)
    assert [q["quantity"] for q in expanded["subscriptions"][0]["quantity_schedule"]] == [50, 70]
    assert len(expanded["overrides"]) == 2
    calls = edit_calls(stack)
    poll_and_wait(stack)  # unchanged: no edit call, no second edit
    assert edit_calls(stack) == calls and len(edits_of(stack, expansion)) == 1

    # A renewal: a new contract from where the first ends, transitioning from it.
    renewal = sell(
        sf, account, "Lifecycle Co renewal", [("SEAT", {"Quantity": 70})], products,
        Type="Renewal", Metronome_Parent_Opportunity__c=first,
        Metronome_Rate_Card__c="standard", Contract_Term_Months__c=12,
    )  # fmt: skip
    poll_and_wait(stack)
    renewed = contract_of(stack, renewal)
    assert renewed["starting_at"].startswith("2027-11-30T00:00:00")
    assert renewed["ending_before"].startswith("2028-11-30T00:00:00")
    assert renewed["transitions"] == [
        {"type": "RENEWAL", "from_contract_id": contract["id"], "to_contract_id": renewed["id"]}
    ]
    # `crmsync history` tells each deal's story: its contract, the edit, the renewal.
    ctx = stack.context()
    try:
        edited = build_history(ctx.store, expansion)
        renewed_story = build_history(ctx.store, renewal)
        original = build_history(ctx.store, first)
    finally:
        ctx.close()
    assert edited.verdict.startswith(f"synced: edit of contract {contract['id']}")
    assert any("expansion" in e.detail and "edit of contract" in e.detail for e in edited.timeline)
    assert any(f"a renewal of contract {contract['id']}" in e.detail
               for e in renewed_story.timeline)  # fmt: skip
    # The original deal's story shows its contract, the edit and the renewal.
    details = [e.detail for e in original.timeline]
    assert any("edit of contract" in d for d in details), details
    assert any("a renewal of contract" in d for d in details), details
    if (reference_dir() / SPEC_NAME).is_file():
        spec = load_spec()
        assert stack.metronome is not None
        for route in ("POST /v1/contracts/create", EDIT):
            method, template = route.split(" ")
            assert_requests_match_spec(
                spec, method, template, stack.metronome.accepted_bodies(route)
            )


def test_a_renewal_of_an_expansion_deal_starts_where_the_contract_ends(
    stack: SandboxStack, sf: Salesforce, products: dict[str, str]
) -> None:
    """The renewal names the expansion deal, whose remembered state is its edit (no dates):
    the renewed contract's end comes from Metronome, not the deal's own dates."""
    account = new_account(sf, "Renews Its Upgrade Co")
    first = sell(sf, account, "Upgrade Co new", [("SEAT", {"Quantity": 10})], products,
                 Metronome_Rate_Card__c="standard", Contract_Term_Months__c=12)  # fmt: skip
    poll_and_wait(stack)
    expansion = sell(
        sf, account, "Upgrade Co upgrade", [("SEAT", {"Quantity": 5})], products,
        Type="Expansion", Metronome_Parent_Opportunity__c=first,
        Contract_Start_Date__c="2027-03-01",
    )  # fmt: skip
    poll_and_wait(stack)
    renewal = sell(
        sf, account, "Upgrade Co renewal", [("SEAT", {"Quantity": 15})], products,
        Type="Renewal", Metronome_Parent_Opportunity__c=expansion,
        Metronome_Rate_Card__c="standard", Contract_Term_Months__c=12,
    )  # fmt: skip
    poll_and_wait(stack)
    contract, renewed = contract_of(stack, first), contract_of(stack, renewal)
    assert renewed["starting_at"] == contract["ending_before"]
    assert renewed["transitions"][0]["from_contract_id"] == contract["id"]


def test_an_expansion_without_one_live_contract_needs_attention(
    stack: SandboxStack, sf: Salesforce, products: dict[str, str]
) -> None:
    account = new_account(sf, "Nothing To Expand")
    expansion = sell(sf, account, "Orphan upgrade", [("SEAT", {"Quantity": 5})], products,
                     Type="Expansion")  # fmt: skip
    calls = edit_calls(stack)
    poll_and_wait(stack)
    assert edit_calls(stack) == calls
    ctx = stack.context()
    try:
        # No wait: a sync counts its outcome (what poll_and_wait waits on) only once its
        # expansions were dealt with, as it does for contracts.
        [item] = ctx.store.attention.items(record_ids={expansion})
    finally:
        ctx.close()
    assert edit_calls(stack) == calls  # never a guess
    assert item.event == "expansion_contract_not_found"
    assert "no live contract" in item.details["why"]


def test_editing_not_enabled_needs_attention_with_the_edit_body(
    stack: SandboxStack, sf: Salesforce, products: dict[str, str]
) -> None:
    assert stack.metronome is not None
    account = new_account(sf, "Locked Co")
    first = sell(sf, account, "Locked new", AS_SOLD[:1], products,
                 Metronome_Rate_Card__c="standard")  # fmt: skip
    poll_and_wait(stack)
    stack.metronome.set_editing_enabled(False)
    try:
        expansion = sell(sf, account, "Locked upgrade", [("COMPUTE", {"Discount": 10})], products,
                         Type="Expansion", Metronome_Parent_Opportunity__c=first)  # fmt: skip
        poll_and_wait(stack)
        poll_and_wait(stack)  # reported once: not a retry loop
    finally:
        stack.metronome.set_editing_enabled(True)
    ctx = stack.context()
    try:
        [item] = ctx.store.attention.items(record_ids={expansion})
    finally:
        ctx.close()
    assert item.event == "contract_editing_not_enabled"
    assert item.details["edit_body"]["add_overrides"][0]["multiplier"] == 0.9
    assert not edits_of(stack, expansion)


def test_a_seat_expansion_costs_the_edit_alone_and_one_read_when_the_ids_are_unknown(
    stack: SandboxStack, sf: Salesforce, products: dict[str, str]
) -> None:
    """The subscription's id comes from the create's (or an edit's) answer, so adding seats
    is the edit alone; with that answer lacking the contract, or Redis flushed, the first
    seat expansion reads the contract once (the API is the truth) and the next one does not."""
    assert stack.metronome is not None

    def expand(account: str, first: str, seats: int) -> tuple[str, dict[str, int]]:
        before = counts(stack)
        lines = [("SEAT", {"Quantity": seats})]
        expansion = sell(sf, account, f"+{seats} seats", lines, products,
                         Type="Expansion", Metronome_Parent_Opportunity__c=first)  # fmt: skip
        poll_and_wait(stack)
        assert len(edits_of(stack, expansion)) == 1
        return expansion, calls_since(stack, before)

    account = new_account(sf, "Seats Co")
    first = sell(sf, account, "Seats new", AS_SOLD[:1], products,
                 Metronome_Rate_Card__c="standard")  # fmt: skip
    poll_and_wait(stack)
    assert expand(account, first, 5)[1] == {EDIT: 1}
    # Redis lost what it knew (a FLUSHALL, here only that record): one read, then the edit.
    ctx = stack.context()
    try:
        contract_id = contract_of(stack, first)["id"]
        assert ctx.store.client.delete(ctx.store.keys.contract_subscriptions(contract_id)) == 1
    finally:
        ctx.close()
    assert expand(account, first, 3)[1] == {GET: 1, EDIT: 1}
    assert expand(account, first, 2)[1] == {EDIT: 1}
    assert seat_quantities(stack, first) == [[60]]  # one subscription: 50 + 5 + 3 + 2 seats

    # A create answer without the contract (the spec makes it optional): read once.
    stack.metronome.set_full_write_answers(False)
    try:
        other = new_account(sf, "Seats Without Answer Co")
        second = sell(sf, other, "Seats new", AS_SOLD[:1], products,
                      Metronome_Rate_Card__c="standard")  # fmt: skip
        poll_and_wait(stack)
    finally:
        stack.metronome.set_full_write_answers(True)
    assert expand(other, second, 4)[1] == {GET: 1, EDIT: 1}
    assert expand(other, second, 1)[1] == {EDIT: 1}
    assert seat_quantities(stack, second) == [[55]]

    # A contract without seats: the first seat expansion adds the subscription (one read: only
    # the API can say there is none), the edit's answer names it, the next one updates it.
    third_account = new_account(sf, "Seats Later Co")
    third = sell(sf, third_account, "Fee only", [("ONBOARD", {"UnitPrice": 100})], products,
                 Metronome_Rate_Card__c="standard")  # fmt: skip
    poll_and_wait(stack)
    assert expand(third_account, third, 10)[1] == {GET: 1, EDIT: 1}
    assert expand(third_account, third, 5)[1] == {EDIT: 1}
    assert seat_quantities(stack, third) == [[15]]
