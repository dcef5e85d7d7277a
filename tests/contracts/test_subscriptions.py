"""Where an expansion's seat line gets the id of the subscription it updates
(worker/contracts/subscriptions.py) and what Metronome's answers tell of it
(worker/metronome/answers.py): the list it was found in, else Redis, else one read of the
contract, remembered. The gateway is the real one against the emulator; Redis is fakeredis."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any, cast

import fakeredis
import pytest

from mappings.contracts.terms import DesiredSubscription
from worker.contracts.context import ContractContext
from worker.contracts.subscriptions import known_subscriptions, remember_added
from worker.metronome import MetronomeGateway
from worker.metronome.answers import created_contract, subscription_ids
from worker.sandbox.metronome import MetronomeEmulator
from worker.state.keys import Keys
from worker.state.opportunities import ContractStore

START = "2026-01-01T00:00:00.000Z"


@pytest.fixture
def store() -> ContractStore:
    return ContractStore(fakeredis.FakeRedis(decode_responses=True), Keys("t"))


@pytest.fixture
def ctx(gateway: MetronomeGateway, store: ContractStore) -> Iterator[ContractContext]:
    yield cast(ContractContext, SimpleNamespace(gateway=gateway, contract_store=store))


def _seats(emulator: MetronomeEmulator, frequency: str = "ANNUAL") -> dict[str, Any]:
    return {
        "subscription_rate": {
            "product_id": emulator.catalog.product_named("Platform seat").id,
            "billing_frequency": frequency,
        },
        "initial_quantity": 10,
        "collection_schedule": "ADVANCE",
        "proration": {"is_prorated": True, "invoice_behavior": "BILL_IMMEDIATELY"},
    }


def _seat_line(product: str, frequency: str = "ANNUAL") -> DesiredSubscription:
    return DesiredSubscription.model_validate(
        {"line_item_id": "00k1", "product_id": product, "billing_frequency": frequency,
         "quantity": 5, "collection_schedule": "ADVANCE", "prorated": True}
    )  # fmt: skip


def _contract(
    gateway: MetronomeGateway, emulator: MetronomeEmulator, **terms: Any
) -> tuple[str, Any]:
    customer = gateway.create_customer({"name": "Seats"}, key=f"c-{len(emulator.customers())}")
    body = {"customer_id": customer, "starting_at": START, "rate_card_alias": "standard"}
    return customer, gateway.create_contract({**body, **terms}, key="k-" + customer)


def test_the_create_answer_list_and_read_agree_on_the_ids(
    gateway: MetronomeGateway, emulator: MetronomeEmulator
) -> None:
    customer, created = _contract(gateway, emulator, subscriptions=[_seats(emulator)])
    seat = emulator.catalog.product_named("Platform seat").id
    assert created.subscriptions is not None
    assert set(created.subscriptions) == {(seat, "ANNUAL")}
    assert gateway.get_contract(customer, created.id).subscriptions == created.subscriptions
    [listed] = gateway.list_contracts(customer)
    assert listed.subscriptions == created.subscriptions


def test_a_create_answer_without_the_contract_leaves_the_ids_unknown(
    gateway: MetronomeGateway, emulator: MetronomeEmulator
) -> None:
    emulator.set_full_write_answers(False)
    _, created = _contract(gateway, emulator, subscriptions=[_seats(emulator)])
    assert created.subscriptions is None
    emulator.set_full_write_answers(True)
    _, plain = _contract(gateway, emulator)
    assert plain.subscriptions == {}  # shown, and none: known


def test_listed_ids_are_used_and_remembered_without_a_call(
    ctx: ContractContext, gateway: MetronomeGateway, store: ContractStore
) -> None:
    calls = gateway.calls
    listed = {("p", "ANNUAL"): "s1"}
    assert known_subscriptions(ctx, "cu", "c1", [_seat_line("q")], listed) == listed
    assert gateway.calls == calls
    assert store.subscriptions("c1") == listed
    assert known_subscriptions(ctx, "cu", "c2", []) == {}  # no seat line: no id needed
    assert gateway.calls == calls


def test_unknown_ids_cost_one_read_then_none(
    ctx: ContractContext,
    gateway: MetronomeGateway,
    emulator: MetronomeEmulator,
    store: ContractStore,
) -> None:
    customer, created = _contract(gateway, emulator, subscriptions=[_seats(emulator)])
    seats = [_seat_line(emulator.catalog.product_named("Platform seat").id)]
    calls = gateway.calls
    assert known_subscriptions(ctx, customer, created.id, seats) == created.subscriptions
    assert gateway.calls == calls + 1
    assert known_subscriptions(ctx, customer, created.id, seats) == created.subscriptions
    assert gateway.calls == calls + 1
    assert store.subscriptions(created.id) == created.subscriptions


def test_a_record_not_naming_the_seat_lines_subscription_is_checked_by_a_read(
    ctx: ContractContext,
    gateway: MetronomeGateway,
    emulator: MetronomeEmulator,
    store: ContractStore,
) -> None:
    """A record that misses a subscription (added by hand, or a write a failover lost) must
    not turn a seat increase into a second subscription: the read tells."""
    customer, created = _contract(gateway, emulator, subscriptions=[_seats(emulator)])
    assert created.subscriptions is not None
    store.record_subscriptions(created.id, {("other", "ANNUAL"): "s0"})  # stale: no seats named
    seat = emulator.catalog.product_named("Platform seat").id
    calls = gateway.calls
    found = known_subscriptions(ctx, customer, created.id, [_seat_line(seat)])
    assert found == created.subscriptions and gateway.calls == calls + 1
    # A frequency the contract does not subscribe to: read, and the answer is "none".
    found = known_subscriptions(ctx, customer, created.id, [_seat_line(seat, "MONTHLY")])
    assert (seat, "MONTHLY") not in found and gateway.calls == calls + 2


def _sub(sid: Any, product: Any = "p", frequency: Any = "annual") -> Any:
    rate = SimpleNamespace(product=SimpleNamespace(id=product), billing_frequency=frequency)
    return SimpleNamespace(id=sid, subscription_rate=rate)


def test_reading_ids_from_an_answer() -> None:
    assert subscription_ids(SimpleNamespace()) == {}
    assert subscription_ids(SimpleNamespace(subscriptions=[_sub("s1")])) == {("p", "ANNUAL"): "s1"}
    # The spec makes a subscription's id optional: without one the map is unknown, not short.
    assert subscription_ids(SimpleNamespace(subscriptions=[_sub("s1"), _sub(None, "q")])) is None
    assert subscription_ids(SimpleNamespace(subscriptions=7)) is None  # not a list: unknown
    assert created_contract(SimpleNamespace(id="c1")).subscriptions is None
    shown = SimpleNamespace(id="c1", contract=SimpleNamespace(subscriptions=[_sub("s1")]))
    assert created_contract(shown).subscriptions == {("p", "ANNUAL"): "s1"}


def test_an_edit_answer_names_the_subscriptions_it_added(
    ctx: ContractContext,
    gateway: MetronomeGateway,
    emulator: MetronomeEmulator,
    store: ContractStore,
) -> None:
    customer, created = _contract(gateway, emulator)
    seat = emulator.catalog.product_named("Platform seat").id
    body = {"customer_id": customer, "contract_id": created.id,
            "add_subscriptions": [{**_seats(emulator), "starting_at": START}]}  # fmt: skip
    answer = gateway.edit_contract({**body, "uniqueness_key": "e1"}, key="e1")
    assert answer.added_subscriptions is not None
    assert set(answer.added_subscriptions) == {(seat, "ANNUAL")}
    store.record_subscriptions(created.id, {("other", "MONTHLY"): "s0"})
    remember_added(ctx, created.id, answer.added_subscriptions)
    assert store.subscriptions(created.id) == {
        ("other", "MONTHLY"): "s0",
        **answer.added_subscriptions,
    }
    remember_added(ctx, "c-unknown", None)  # the answer named none: nothing learnt
    assert store.subscriptions("c-unknown") is None
    emulator.set_full_write_answers(False)
    bare = gateway.edit_contract({**body, "uniqueness_key": "e2"}, key="e2")
    assert bare.added_subscriptions is None
