"""The emulator serves the terms a deal's line items become, expansions (``v2/contracts/edit``)
and renewals (``transition``) as Metronome does, driven by the official SDK: what it accepts
the spec allows, what it answers the spec describes, and it refuses what Metronome refuses
(a subscription whose product and frequency are not a rate on the rate card, a reused
uniqueness key, an unknown contract, editing not enabled)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema  # type: ignore[import-untyped]
import metronome
import pytest

from tests.support.metronome_emulator import TOKEN
from tests.support.metronome_spec import (
    SPEC_NAME,
    assert_requests_match_spec,
    load_spec,
    openapi_to_jsonschema,
    reference_dir,
)
from worker.sandbox.metronome import MetronomeEmulator, MetronomeFaults
from worker.sandbox.metronome.catalog import FIAT_CREDIT_TYPES, USD_CENTS
from worker.sandbox.metronome.contracts import UNIQUENESS_KEY_USED
from worker.sandbox.metronome.edits import EDITING_NOT_ENABLED

START = "2026-01-01T00:00:00.000Z"
MID = "2026-07-01T00:00:00.000Z"
END = "2027-01-01T00:00:00.000Z"
NO_SUCH_ID = "00000000-0000-0000-0000-000000000000"
ROUTES = (
    "POST /v1/contracts/create",
    "POST /v2/contracts/edit",
    "POST /v2/contracts/get",
    "POST /v1/contract-pricing/rate-cards/getRates",
)


@pytest.fixture(autouse=True)
def accepted_means_allowed(emulator: MetronomeEmulator) -> Iterator[None]:
    """After every test: each body the emulator accepted is one the spec allows."""
    yield
    if not (reference_dir() / SPEC_NAME).is_file():
        return
    spec = load_spec()
    for route in ROUTES:
        method, template = route.split(" ")
        assert_requests_match_spec(spec, method, template, emulator.accepted_bodies(route))


@pytest.fixture
def client(emulator: MetronomeEmulator) -> Iterator[metronome.Metronome]:
    with metronome.Metronome(
        bearer_token=TOKEN, base_url=emulator.url, max_retries=0, timeout=5
    ) as sdk:
        yield sdk


@pytest.fixture
def customer(client: metronome.Metronome) -> str:
    return client.v1.customers.create(name="Acme").data.id


def pid(emulator: MetronomeEmulator, name: str) -> str:
    return emulator.catalog.product_named(name).id


def seats(emulator: MetronomeEmulator, quantity: float = 50, frequency: str = "ANNUAL") -> Any:
    return {
        "subscription_rate": {
            "product_id": pid(emulator, "Platform seat"),
            "billing_frequency": frequency,
        },
        "initial_quantity": quantity,
        "collection_schedule": "ADVANCE",
        "proration": {"is_prorated": True, "invoice_behavior": "BILL_IMMEDIATELY"},
    }


def discount(emulator: MetronomeEmulator, multiplier: float = 0.8) -> Any:
    return {
        "product_id": pid(emulator, "Compute"),
        "starting_at": START,
        "type": "MULTIPLIER",
        "multiplier": multiplier,
    }


def fee(emulator: MetronomeEmulator, amount: float = 500000) -> Any:
    return {
        "product_id": pid(emulator, "Onboarding fee"),
        "name": "Onboarding",
        "schedule": {"schedule_items": [{"timestamp": START, "amount": amount}]},
    }


def monthly_commit(emulator: MetronomeEmulator) -> Any:
    return {
        "product_id": pid(emulator, "Prepaid commit"),
        "access_amount": {"unit_price": 1000000, "quantity": 1, "credit_type_id": USD_CENTS["id"]},
        "commit_duration": {"value": 1, "unit": "PERIODS"},
        "priority": 1,
        "starting_at": START,
        "recurrence_frequency": "MONTHLY",
    }


def create(client: metronome.Metronome, customer_id: str, **terms: Any) -> str:
    body: dict[str, Any] = {
        "starting_at": START,
        "ending_before": END,
        "rate_card_alias": "standard",
        **terms,
    }
    return client.v1.contracts.create(customer_id=customer_id, **body).data.id


def get(client: metronome.Metronome, customer_id: str, contract_id: str) -> dict[str, Any]:
    """POST /v2/contracts/get as raw JSON, checked against the spec's answer schema."""
    answer = client.post(
        "/v2/contracts/get",
        body={"customer_id": customer_id, "contract_id": contract_id},
        cast_to=httpx.Response,
    ).json()
    if (reference_dir() / SPEC_NAME).is_file():
        spec = load_spec()
        operation = spec["paths"]["/v2/contracts/get"]["post"]
        schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
        jsonschema.validate(answer, openapi_to_jsonschema(schema, spec))
    data: dict[str, Any] = answer["data"]
    return data


def refusal(call: Any, status: int = 400) -> dict[str, Any]:
    with pytest.raises(metronome.APIStatusError) as caught:
        call()
    assert caught.value.status_code == status, caught.value.body
    body = caught.value.body
    assert isinstance(body, dict)
    return body


def edit(client: metronome.Metronome, customer_id: str, contract_id: str, **terms: Any) -> str:
    return client.v2.contracts.edit(
        customer_id=customer_id, contract_id=contract_id, **terms
    ).data.id


# -- create with line-item terms -------------------------------------------------------------


def test_a_contract_with_every_line_item_term_is_stored_and_read_back(
    client: metronome.Metronome, emulator: MetronomeEmulator, customer: str
) -> None:
    contract = create(
        client,
        customer,
        subscriptions=[seats(emulator)],
        recurring_commits=[monthly_commit(emulator)],
        overrides=[
            discount(emulator),
            {
                "product_id": pid(emulator, "Storage"),
                "starting_at": START,
                "type": "OVERWRITE",
                "overwrite_rate": {"rate_type": "FLAT", "price": 1.5},
            },
        ],
        scheduled_charges=[fee(emulator)],
    )
    shown = get(client, customer, contract)
    [subscription] = shown["subscriptions"]
    assert subscription["subscription_rate"]["billing_frequency"] == "ANNUAL"
    assert subscription["quantity_schedule"] == [{"quantity": 50, "starting_at": START}]
    assert subscription["ending_before"] == END  # inherits the contract's end
    assert [o["type"] for o in shown["overrides"]] == ["MULTIPLIER", "OVERWRITE"]
    assert shown["overrides"][0]["multiplier"] == 0.8
    assert shown["scheduled_charges"][0]["schedule"]["schedule_items"][0]["amount"] == 500000
    assert shown["recurring_commits"][0]["access_amount"]["unit_price"] == 1000000


def _answer(client: metronome.Metronome, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """A POST's raw answer, checked against the spec's 200 schema for it."""
    answer: dict[str, Any] = client.post(path, body=body, cast_to=httpx.Response).json()
    if (reference_dir() / SPEC_NAME).is_file():
        spec = load_spec()
        operation = spec["paths"][path]["post"]
        schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
        jsonschema.validate(answer, openapi_to_jsonschema(schema, spec))
    return answer


def test_write_answers_carry_what_was_written_as_the_spec_describes(
    client: metronome.Metronome, emulator: MetronomeEmulator, customer: str
) -> None:
    """``data.contract`` of a create, ``data.edit`` of an edit (optional in the spec, the
    create's in its example): what a read shows, subscription ids included; switched off,
    ``data.id`` alone."""
    body = {"customer_id": customer, "starting_at": START, "ending_before": END,
            "rate_card_alias": "standard", "subscriptions": [seats(emulator)],
            "overrides": [discount(emulator)], "scheduled_charges": [fee(emulator)],
            "recurring_commits": [monthly_commit(emulator)]}  # fmt: skip
    answer = _answer(client, "/v1/contracts/create", body)
    contract = answer["data"]["id"]
    shown = answer["data"]["contract"]
    assert shown == get(client, customer, contract)
    [seat] = shown["subscriptions"]
    more = {"customer_id": customer, "contract_id": contract, "uniqueness_key": "more",
            "add_subscriptions": [seats(emulator, 5, "MONTHLY")],
            "update_subscriptions": [{"subscription_id": seat["id"], "quantity_updates": [
                {"starting_at": MID, "quantity_delta": 10}]}]}  # fmt: skip
    edited = _answer(client, "/v2/contracts/edit", more)["data"]
    [added] = edited["edit"]["add_subscriptions"]
    assert added["id"] in {s["id"] for s in get(client, customer, contract)["subscriptions"]}
    emulator.set_full_write_answers(False)
    plain = _answer(client, "/v1/contracts/create", {**body, "uniqueness_key": "other"})
    assert set(plain["data"]) == {"id"}
    bare = {**more, "uniqueness_key": "bare", "add_subscriptions": []}
    assert set(_answer(client, "/v2/contracts/edit", bare)["data"]) == {"id"}


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"billing_frequency": "QUARTERLY"}, "no QUARTERLY rate"),
        ({"product_id": "API calls"}, "SUBSCRIPTION product"),
        ({"product_id": "Onboarding fee"}, "SUBSCRIPTION product"),
    ],
)
def test_a_subscription_must_match_a_rate_on_the_rate_card(
    client: metronome.Metronome,
    emulator: MetronomeEmulator,
    customer: str,
    change: dict[str, str],
    words: str,
) -> None:
    subscription = seats(emulator)
    rate = subscription["subscription_rate"]
    if "product_id" in change:
        rate["product_id"] = pid(emulator, change["product_id"])
    else:
        rate.update(change)
    body = refusal(lambda: create(client, customer, subscriptions=[subscription]))
    assert words in body["message"]


@pytest.mark.parametrize(
    ("field", "term", "words"),
    [
        ("subscriptions", {"initial_quantity": -1}, "negative"),
        ("subscriptions", {"collection_schedule": None}, "collection_schedule"),
        ("overrides", {"multiplier": -0.1}, "negative"),
        ("overrides", {"type": "OVERWRITE", "multiplier": None}, "overwrite_rate"),
        ("overrides", {"product_id": None}, "product_id or applicable_product_tags"),
        ("scheduled_charges", {"product_id": "Compute"}, "FIXED product"),
        (
            "recurring_commits",
            {"access_amount": {"unit_price": 1, "quantity": 1}},
            "credit_type_id",
        ),
        ("recurring_commits", {"priority": None}, "priority is required"),
    ],
)
def test_term_rules(  # noqa: PLR0917 - pytest passes fixtures and parameters by name
    client: metronome.Metronome,
    emulator: MetronomeEmulator,
    customer: str,
    field: str,
    term: dict[str, Any],
    words: str,
) -> None:
    base = {
        "subscriptions": seats(emulator),
        "overrides": discount(emulator),
        "scheduled_charges": fee(emulator),
        "recurring_commits": monthly_commit(emulator),
    }[field]
    for name, value in term.items():
        if value is None:
            base.pop(name)
        elif name == "product_id":
            base[name] = pid(emulator, value)
        else:
            base[name] = value
    body = refusal(lambda: client.post(
        "/v1/contracts/create",
        body={"customer_id": customer, "starting_at": START, "rate_card_alias": "standard",
              field: [base]},
        cast_to=httpx.Response,
    ))  # fmt: skip
    assert words in body["message"]


def test_amounts_in_another_fiat_credit_type(
    client: metronome.Metronome, emulator: MetronomeEmulator, customer: str
) -> None:
    eur = next(c for c in FIAT_CREDIT_TYPES.values() if c["name"].startswith("EUR"))
    charge = fee(emulator)
    charge["schedule"]["credit_type_id"] = eur["id"]
    contract = create(client, customer, scheduled_charges=[charge])
    assert get(client, customer, contract)["scheduled_charges"][0]["schedule"]["credit_type"] == eur
    charge["schedule"]["credit_type_id"] = NO_SUCH_ID
    assert (
        "credit type"
        in refusal(lambda: create(client, customer, scheduled_charges=[charge]))["message"]
    )


def test_a_renewal_transitions_from_the_old_contract(
    client: metronome.Metronome, emulator: MetronomeEmulator, customer: str
) -> None:
    old = create(client, customer)
    new = create(
        client,
        customer,
        starting_at=END,
        ending_before="2028-01-01T00:00:00Z",
        uniqueness_key="renewal-1",
        subscriptions=[seats(emulator)],
        transition={
            "type": "RENEWAL",
            "from_contract_id": old,
            "future_invoice_behavior": {"trueup": "AS_IS"},
        },
    )
    link = {"type": "RENEWAL", "from_contract_id": old, "to_contract_id": new}
    assert get(client, customer, new)["transitions"] == [link]
    assert get(client, customer, old)["transitions"] == [link]
    refusal(lambda: create(client, customer, uniqueness_key="renewal-1"), status=409)


# -- edits -----------------------------------------------------------------------------------


def test_an_expansion_adds_terms_and_updates_seats_exactly_once(
    client: metronome.Metronome, emulator: MetronomeEmulator, customer: str
) -> None:
    contract = create(client, customer, subscriptions=[seats(emulator, 50)])
    subscription = get(client, customer, contract)["subscriptions"][0]["id"]
    expansion = {
        "uniqueness_key": "crmsync:edit:006000000000001AAA",
        "add_overrides": [{**discount(emulator, 0.7), "starting_at": MID}],
        "add_scheduled_charges": [fee(emulator, 100000)],
        "add_subscriptions": [seats(emulator, 5, "MONTHLY")],
        "add_commits": [
            {
                "type": "PREPAID",
                "product_id": pid(emulator, "Prepaid commit"),
                "access_schedule": {
                    "schedule_items": [
                        {"amount": 5000000, "starting_at": MID, "ending_before": END}
                    ]
                },
            }
        ],
        "update_subscriptions": [
            {
                "subscription_id": subscription,
                "quantity_updates": [{"starting_at": MID, "quantity_delta": 20}],
            }
        ],
    }
    edit(client, customer, contract, **expansion)
    shown = get(client, customer, contract)
    assert len(shown["subscriptions"]) == 2
    assert shown["subscriptions"][0]["quantity_schedule"] == [
        {"quantity": 50, "starting_at": START, "ending_before": MID},
        {"quantity": 70, "starting_at": MID},
    ]
    assert [len(shown[k]) for k in ("overrides", "scheduled_charges", "commits")] == [1, 1, 1]
    body = refusal(lambda: edit(client, customer, contract, **expansion), status=409)
    assert body["message"] == UNIQUENESS_KEY_USED
    assert len(get(client, customer, contract)["overrides"]) == 1  # the 409 changed nothing
    assert [e["uniqueness_key"] for e in emulator.contract_edits()] == [
        "crmsync:edit:006000000000001AAA"
    ]


def test_an_edit_is_all_or_nothing(
    client: metronome.Metronome, emulator: MetronomeEmulator, customer: str
) -> None:
    contract = create(client, customer)
    bad_seats = seats(emulator)
    bad_seats["subscription_rate"]["billing_frequency"] = "WEEKLY"
    refusal(
        lambda: edit(
            client, customer, contract, uniqueness_key="k1",
            add_overrides=[discount(emulator)], add_subscriptions=[bad_seats],
        )
    )  # fmt: skip
    assert get(client, customer, contract)["overrides"] == []
    edit(client, customer, contract, uniqueness_key="k1", add_overrides=[discount(emulator)])


def test_edit_refusals_carry_the_specs_codes(
    client: metronome.Metronome, emulator: MetronomeEmulator, customer: str
) -> None:
    contract = create(client, customer)
    assert refusal(lambda: edit(client, NO_SUCH_ID, contract))["code"] == "CustomerNotFound"
    assert refusal(lambda: edit(client, customer, NO_SUCH_ID))["code"] == "ContractNotFound"
    other = client.v1.customers.create(name="Other").data.id
    assert refusal(lambda: edit(client, other, contract))["code"] == "ContractNotFound"
    assert "subscription of this contract" in refusal(
        lambda: edit(
            client, customer, contract,
            update_subscriptions=[{"subscription_id": NO_SUCH_ID,
                                   "quantity_updates": [{"starting_at": MID, "quantity": 1}]}],
        )
    )["message"]  # fmt: skip
    assert (
        "not modelled"
        in refusal(lambda: edit(client, customer, contract, update_contract_end_date=END))[
            "message"
        ]
    )
    assert (
        "not available"
        in refusal(
            lambda: client.post(
                "/v2/contracts/edit",
                body={"customer_id": customer, "contract_id": contract, "add_discounts": [{}]},
                cast_to=httpx.Response,
            )
        )["message"]
    )


def test_editing_not_enabled_refuses_every_edit(
    client: metronome.Metronome, emulator: MetronomeEmulator, customer: str
) -> None:
    contract = create(client, customer)
    emulator.set_editing_enabled(False)
    body = refusal(lambda: edit(client, customer, contract, add_overrides=[discount(emulator)]))
    assert body["message"] == EDITING_NOT_ENABLED
    emulator.set_editing_enabled(True)
    edit(client, customer, contract, add_overrides=[discount(emulator)])


def test_faults_limited_to_edits_drop_the_answer_after_the_write(
    client: metronome.Metronome, emulator: MetronomeEmulator, customer: str
) -> None:
    """The ambiguous outcome an edit's uniqueness key exists for: the edit happened, the
    client saw a broken connection; the same key again is a 409 (= applied)."""
    contract = create(client, customer)
    emulator.set_faults(
        MetronomeFaults(commit_then_drop_rate=1.0, routes=("POST /v2/contracts/edit",))
    )
    with pytest.raises(metronome.APIConnectionError):
        edit(client, customer, contract, uniqueness_key="k", add_overrides=[discount(emulator)])
    get(client, customer, contract)  # other routes unaffected
    emulator.set_faults(MetronomeFaults())
    refusal(
        lambda: edit(
            client, customer, contract, uniqueness_key="k", add_overrides=[discount(emulator)]
        ),
        status=409,
    )
    assert len(get(client, customer, contract)["overrides"]) == 1
    counts = emulator.request_counts()
    assert counts["POST /v2/contracts/edit DROP"] == 1
    assert counts["POST /v2/contracts/edit 409"] == 1


# -- crmsync check: products by type, subscription rates on the rate card --------------------


def test_check_finds_line_item_products_of_the_wrong_type_and_missing_rates(
    emulator: MetronomeEmulator, customer: str
) -> None:
    from mappings.contracts.desired import DesiredContract
    from mappings.contracts.terms import DesiredCharge, DesiredSubscription, LineTerms
    from worker.commands.check_contracts import catalog_problems, rate_problems
    from worker.metronome import MetronomeGateway

    def subscription(product: str, frequency: str) -> DesiredSubscription:
        return DesiredSubscription(
            line_item_id="00k1", product_id=pid(emulator, product),
            billing_frequency=frequency,  # type: ignore[arg-type]
            quantity=5, collection_schedule="ADVANCE", prorated=True,
        )  # fmt: skip

    terms = LineTerms(
        subscriptions=(subscription("Platform seat", "ANNUAL"),
                       subscription("Platform seat", "QUARTERLY")),
        scheduled_charges=(DesiredCharge(line_item_id="00k2", product_id=pid(emulator, "Compute"),
                                         items=(("2026-01-01T00:00:00Z", 100),)),),
    )  # fmt: skip
    contract = DesiredContract(
        salesforce_opportunity_id="006A", salesforce_account_id="001A", uniqueness_key="k",
        pricing="rate_card_alias", pricing_value="standard", starting_at=START, line_terms=terms,
    )  # fmt: skip
    gateway = MetronomeGateway(TOKEN, emulator.url, timeout_s=5.0, retry_immediately=True)
    try:
        cards = gateway.list_rate_cards()
        problems = catalog_problems([contract], cards, [], gateway.list_products())
        rates = rate_problems([contract], cards, gateway)
        seat_rates = gateway.rate_card_rates(emulator.catalog.rate_card_named("Standard").id, START)
    finally:
        gateway.close()
    assert problems == ["scheduled charge product 'Compute' is USAGE, not FIXED"]
    assert len(rates) == 1 and "no QUARTERLY rate" in rates[0]
    assert {(pid(emulator, "Platform seat"), "ANNUAL"), (pid(emulator, "Compute"), None)} <= (
        seat_rates
    )
