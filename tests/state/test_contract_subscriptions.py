"""The per-contract record of subscription ids (worker/state/opportunities.py), on fakeredis:
missing or unreadable means unknown (read the contract); a record names what it names."""

from __future__ import annotations

import fakeredis
import pytest

from worker.state.keys import Keys
from worker.state.opportunities import ContractStore

SEATS = ("prod-seat", "ANNUAL")


@pytest.fixture
def store() -> ContractStore:
    return ContractStore(fakeredis.FakeRedis(decode_responses=True), Keys("t"))


def test_a_record_names_what_an_answer_showed_and_none_is_not_written(
    store: ContractStore,
) -> None:
    assert store.subscriptions("c1") is None
    store.record_subscriptions("c1", {})
    assert not store.client.exists("t:contract:c1:subscriptions")  # it would name nothing
    store.record_subscriptions("c1", {SEATS: "sub-1", ("prod-seat", "MONTHLY"): "sub-2"})
    assert store.subscriptions("c1") == {SEATS: "sub-1", ("prod-seat", "MONTHLY"): "sub-2"}
    store.record_subscriptions("c1", {})  # an empty answer leaves what is known
    assert store.subscriptions("c1") == {SEATS: "sub-1", ("prod-seat", "MONTHLY"): "sub-2"}
    assert store.subscriptions("c2") is None


def test_recording_a_contract_records_its_subscriptions_only_when_shown(
    store: ContractStore,
) -> None:
    store.record_contract(
        "006A", contract_id="c1", customer_id="cu", contract_hash="h", canonical={}
    )
    assert store.subscriptions("c1") is None  # the answer did not show them: unknown
    store.record_contract(
        "006B",
        contract_id="c2",
        customer_id="cu",
        contract_hash="h",
        canonical={},
        subscriptions={SEATS: "sub-9"},
    )
    assert store.subscriptions("c2") == {SEATS: "sub-9"}
    assert store.states(["006B"])["006B"].contract_id == "c2"


@pytest.mark.parametrize("raw", ["not json", "[1]", '{"no-frequency": "s"}', '{"p F": 3}'])
def test_a_record_not_written_by_us_is_unknown(store: ContractStore, raw: str) -> None:
    store.client.set("t:contract:c1:subscriptions", raw)
    assert store.subscriptions("c1") is None
