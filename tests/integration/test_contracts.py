"""Won deals become Metronome contracts, exactly once: real Redis, a real `crmsync worker`,
both emulators over HTTP, simple-salesforce and metronome-sdk. Nothing of ours is mocked.

Each test works on accounts of its own, so they share one stack (and one worker).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from metronome import Metronome
from simple_salesforce.api import Salesforce

from tasks.resync import run_resync
from tests.support.deals import new_account, win
from tests.support.metronome_spec import assert_requests_match_spec, load_spec
from tests.support.stack import held_by, poll_and_wait, salesforce_client, stack_with_worker
from worker.ops.progress import terminal_total, wait_for_syncs
from worker.sandbox.metronome.faults import MetronomeFaults
from worker.sandbox.stack import SANDBOX_METRONOME_TOKEN, SandboxStack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxStack]:
    base = tmp_path_factory.mktemp("contracts")
    with stack_with_worker(base) as running:
        yield running


@pytest.fixture(scope="module")
def sf(stack: SandboxStack) -> Salesforce:
    return salesforce_client(stack)


def customer_of(stack: SandboxStack, account_id: str) -> dict[str, Any]:
    assert stack.metronome is not None
    [customer] = held_by(stack.metronome.customers(), "sfdc_account_id", account_id)
    return customer


def contracts_of(stack: SandboxStack, opportunity_id: str) -> list[dict[str, Any]]:
    assert stack.metronome is not None
    return held_by(stack.metronome.contracts(), "sfdc_opportunity_id", opportunity_id)


def contract_creates(stack: SandboxStack) -> int:
    """Contract creates the emulator answered, whatever the status."""
    assert stack.metronome is not None
    return sum(
        count
        for key, count in stack.metronome.request_counts().items()
        if key.startswith("POST /v1/contracts/create ")
    )


def test_a_won_deal_becomes_one_contract_on_its_customer(
    stack: SandboxStack, sf: Salesforce
) -> None:
    account_id = new_account(sf, "Contract Co")
    opportunity_id = win(sf, account_id, "Contract Co deal", Contract_Term_Months__c=12)
    poll_and_wait(stack)
    customer = customer_of(stack, account_id)
    [contract] = contracts_of(stack, opportunity_id)
    assert contract["customer_id"] == customer["id"]
    assert contract["uniqueness_key"] == f"crmsync:sfdc-opportunity:{opportunity_id}"
    assert contract["starting_at"].startswith("2026-11-30T00:00:00")
    assert contract["ending_before"].startswith("2027-11-30T00:00:00")
    # It bills through the customer's AWS configuration, referenced by its id.
    assert stack.metronome is not None
    [aws] = [
        c for c in stack.metronome.billing_configurations() if c["customer_id"] == customer["id"]
    ]
    assert contract["customer_billing_provider_configuration"]["id"] == aws["id"]

    # The next poll re-reads the deal (overlap window): no contract call at all.
    before = contract_creates(stack)
    poll_and_wait(stack)
    assert contract_creates(stack) == before
    assert len(contracts_of(stack, opportunity_id)) == 1


def test_two_deals_won_on_one_account_in_one_interval_are_two_contracts(
    stack: SandboxStack, sf: Salesforce
) -> None:
    account_id = new_account(sf, "Twice Won")
    first = win(sf, account_id, "Twice Won first")
    second = win(sf, account_id, "Twice Won second", Contract_Term_Months__c=24)
    poll_and_wait(stack)
    assert len(contracts_of(stack, first)) == 1
    assert len(contracts_of(stack, second)) == 1


def test_an_unknown_rate_card_dead_letters_the_deal_and_the_customer_still_syncs(
    stack: SandboxStack, sf: Salesforce
) -> None:
    account_id = new_account(sf, "Unknown Card")
    opportunity_id = win(sf, account_id, "Unknown Card deal", Metronome_Rate_Card__c="nope")
    poll_and_wait(stack)
    poll_and_wait(stack)  # re-read (overlap window): dead-lettered once, not once per poll
    customer_of(stack, account_id)  # exists
    assert contracts_of(stack, opportunity_id) == []
    ctx = stack.context()
    try:
        letters = [d for d in ctx.store.dead_letters() if d.account_id == account_id]
    finally:
        ctx.close()
    [letter] = letters
    assert letter.kind == "contract"
    assert opportunity_id in letter.reason and "nope" in letter.reason


def test_a_resync_after_redis_forgot_everything_adopts_the_contract(
    stack: SandboxStack, sf: Salesforce
) -> None:
    account_id = new_account(sf, "Forgetful")
    opportunity_id = win(sf, account_id, "Forgetful deal")
    poll_and_wait(stack)
    [made] = contracts_of(stack, opportunity_id)
    # Forget every crmsync key (dedupe, ids, contract state), and change the deal so the
    # retry is not a replay of the first create under the same Idempotency-Key: Metronome
    # must refuse it by the uniqueness key, and the sync must adopt the contract it made.
    sf.Opportunity.update(opportunity_id, {"Name": "Forgetful deal, renamed"})  # type: ignore[operator]
    ctx = stack.context()
    try:
        keys = list(ctx.store.client.scan_iter(f"{ctx.store.keys.prefix}:*"))
        ctx.store.client.delete(*keys)
        baseline = terminal_total(ctx.store)
        enqueued = run_resync(ctx, account_ids=[account_id])["enqueued"]
        assert wait_for_syncs(ctx.store, baseline, enqueued, timeout_s=120)
        outcomes = ctx.store.outcomes()
    finally:
        ctx.close()
    assert contracts_of(stack, opportunity_id) == [made]
    assert outcomes.get("contract_adopted") == 1 and "contract_created" not in outcomes


def test_a_deal_changed_after_its_contract_needs_attention_and_is_never_edited(
    stack: SandboxStack, sf: Salesforce
) -> None:
    account_id = new_account(sf, "Changed Mind")
    opportunity_id = win(sf, account_id, "Changed Mind deal", Contract_Term_Months__c=12)
    poll_and_wait(stack)
    [before] = contracts_of(stack, opportunity_id)
    sf.Opportunity.update(opportunity_id, {"Contract_Term_Months__c": 36})  # type: ignore[operator]
    poll_and_wait(stack)
    poll_and_wait(stack)  # reported once, not on every poll
    assert contracts_of(stack, opportunity_id) == [before]
    ctx = stack.context()
    try:
        flagged = [
            e
            for e in ctx.store.ledger(500)
            if e.get("event") == "contract_opportunity_changed"
            and e.get("record_id") == opportunity_id
        ]
    finally:
        ctx.close()
    [entry] = flagged
    assert "ending_before" in entry["differs"]


def test_creates_whose_answers_are_lost_still_make_one_contract_each(
    stack: SandboxStack, sf: Salesforce
) -> None:
    """Half of all writes (and POST lists) commit and then lose their answer: each deal still
    ends with exactly one contract (same Idempotency-Key replayed, or found by its key)."""
    assert stack.metronome is not None
    deals = []
    for n in range(4):
        account_id = new_account(sf, f"Dropped Answer {n}")
        deals.append(win(sf, account_id, f"Dropped Answer deal {n}"))
    stack.metronome.set_faults(MetronomeFaults(commit_then_drop_rate=0.5, seed=3))
    try:
        poll_and_wait(stack)
        dropped = stack.metronome.faults_injected().get("commit_then_drop", 0)
    finally:
        stack.metronome.set_faults(MetronomeFaults())
    assert dropped > 0
    poll_and_wait(stack)  # whatever was left to retry
    assert [len(contracts_of(stack, d)) for d in deals] == [1, 1, 1, 1]


def test_a_contract_create_whose_answer_is_lost_is_found_by_its_key(
    stack: SandboxStack, sf: Salesforce
) -> None:
    """Every contract create commits and then loses its answer: the gateway re-sends it under
    the same Idempotency-Key, then the engine lists the customer's contracts and finds the one
    with its uniqueness key. One contract."""
    assert stack.metronome is not None
    account_id = new_account(sf, "Lost Answer")
    opportunity_id = win(sf, account_id, "Lost Answer deal")
    stack.metronome.set_faults(
        MetronomeFaults(commit_then_drop_rate=1.0, routes=("POST /v1/contracts/create",))
    )
    try:
        poll_and_wait(stack)
        dropped = stack.metronome.faults_injected().get("commit_then_drop", 0)
    finally:
        stack.metronome.set_faults(MetronomeFaults())
    assert dropped >= 1
    assert len(contracts_of(stack, opportunity_id)) == 1
    customer_of(stack, account_id)


def test_every_contract_body_sent_validates_against_the_official_spec(
    stack: SandboxStack,
) -> None:
    assert stack.metronome is not None
    bodies = stack.metronome.accepted_bodies("POST /v1/contracts/create")
    assert bodies, "the tests above made contracts"
    assert_requests_match_spec(load_spec(), "POST", "/v1/contracts/create", bodies)


def test_a_contract_archived_by_a_person_is_reported_by_a_resync_and_never_remade(
    stack: SandboxStack, sf: Salesforce
) -> None:
    assert stack.metronome is not None
    account_id = new_account(sf, "Archived By Hand")
    opportunity_id = win(sf, account_id, "Archived By Hand deal")
    poll_and_wait(stack)
    [contract] = contracts_of(stack, opportunity_id)
    client = Metronome(bearer_token=SANDBOX_METRONOME_TOKEN, base_url=stack.metronome.url)
    try:
        client.v1.contracts.archive(
            contract_id=contract["id"], customer_id=contract["customer_id"], void_invoices=False
        )
    finally:
        client.close()
    ctx = stack.context()
    try:
        baseline = terminal_total(ctx.store)
        enqueued = run_resync(ctx, account_ids=[account_id])["enqueued"]
        assert wait_for_syncs(ctx.store, baseline, enqueued, timeout_s=120)
        flagged = [
            e
            for e in ctx.store.ledger(500)
            if e.get("event") == "contract_archived" and e.get("record_id") == opportunity_id
        ]
    finally:
        ctx.close()
    assert len(flagged) == 1
    [still] = contracts_of(stack, opportunity_id)
    assert still["id"] == contract["id"] and still["archived_at"]
