"""The emulator serves contracts and the catalog as Metronome does, driven by the official SDK:
every contract rule the worker's contract step leans on is refused here
exactly when Metronome refuses it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import metronome
import pytest

from tests.support.metronome_emulator import TOKEN
from tests.support.metronome_spec import (
    SPEC_NAME,
    assert_requests_match_spec,
    load_spec,
    reference_dir,
)
from worker.sandbox.metronome import MetronomeEmulator, MetronomeFaults
from worker.sandbox.metronome.catalog import Alias, Catalog, Product, RateCard, seed_id
from worker.sandbox.metronome.contracts import UNIQUENESS_KEY_USED

START = "2026-01-01T00:00:00Z"
END = "2027-01-01T00:00:00Z"
NO_SUCH_ID = "00000000-0000-0000-0000-000000000000"
CREATE = "POST /v1/contracts/create"


def stripe_config(**extra: str) -> Any:
    """A Stripe billing provider configuration (``Any``: the SDK types it per endpoint)."""
    return {
        "billing_provider": "stripe",
        "delivery_method": "direct_to_billing_provider",
        "configuration": {
            "stripe_customer_id": "cus_1",
            "stripe_collection_method": "send_invoice",
        },
        **extra,
    }


@pytest.fixture(autouse=True)
def accepted_means_allowed(emulator: MetronomeEmulator) -> Iterator[None]:
    """After every test here: each contract and list body the emulator accepted is one the
    spec's request schema allows (the emulator is never more lenient than the spec)."""
    yield
    if not (reference_dir() / SPEC_NAME).is_file():
        return  # test_spec.py reports the missing spec
    spec = load_spec()
    for route in (CREATE, "POST /v2/contracts/list", "POST /v1/contracts/archive"):
        method, template = route.split(" ")
        assert_requests_match_spec(spec, method, template, emulator.accepted_bodies(route))


@pytest.fixture
def client(emulator: MetronomeEmulator) -> Iterator[metronome.Metronome]:
    """The SDK as crmsync configures it for contracts: no blind retries (a 409 is ours)."""
    with metronome.Metronome(
        bearer_token=TOKEN, base_url=emulator.url, max_retries=0, timeout=5
    ) as sdk:
        yield sdk


@pytest.fixture
def customer(client: metronome.Metronome) -> str:
    return client.v1.customers.create(name="Acme").data.id


def create(client: metronome.Metronome, customer_id: str, **terms: Any) -> str:
    """A contract create with a start and a rate card alias, overridable (None leaves one
    out)."""
    body: dict[str, Any] = {"starting_at": START, "rate_card_alias": "standard", **terms}
    given = {name: value for name, value in body.items() if value is not None}
    return client.v1.contracts.create(customer_id=customer_id, **given).data.id


def refused(client: metronome.Metronome, customer_id: str, status: int = 400, **terms: Any) -> str:
    """Create and expect a refusal with ``status``; the answer's message."""
    with pytest.raises(metronome.APIStatusError) as caught:
        create(client, customer_id, **terms)
    assert caught.value.status_code == status, caught.value.body
    body = caught.value.body
    assert isinstance(body, dict)
    return str(body["message"])


def contracts(client: metronome.Metronome, customer_id: str, **filters: Any) -> list[Any]:
    return list(client.v2.contracts.list(customer_id=customer_id, **filters))


def prepaid(emulator: MetronomeEmulator, amount: float = 1000, **extra: Any) -> dict[str, Any]:
    return {
        "type": "PREPAID",
        "product_id": emulator.catalog.product_named("Prepaid commit").id,
        "access_schedule": {
            "schedule_items": [{"amount": amount, "starting_at": START, "ending_before": END}]
        },
        **extra,
    }


# -- the catalog -------------------------------------------------------------------------------


def test_the_seeded_catalog_is_listed_and_paged(
    client: metronome.Metronome, emulator: MetronomeEmulator
) -> None:
    cards = list(client.v1.contracts.rate_cards.list(limit=1))
    assert [(c.name, [a.name for a in c.aliases or []]) for c in cards] == [
        ("Standard 2024", ["standard"]),
        ("Standard", ["standard"]),
        ("Enterprise", ["enterprise"]),
        ("Startup", ["startup"]),
    ]
    assert emulator.request_counts()["POST /v1/contract-pricing/rate-cards/list 200"] == 4
    assert cards[2].id == seed_id("rate_card", "Enterprise")  # stable across runs

    live = {(p.current.name, p.type) for p in client.v1.contracts.products.list()}
    assert live == {
        ("Prepaid commit", "FIXED"),
        ("Postpaid commit", "FIXED"),
        ("Onboarding fee", "FIXED"),
        ("API calls", "USAGE"),
        ("Compute", "USAGE"),
        ("Storage", "USAGE"),
        ("Platform fee", "SUBSCRIPTION"),
        ("Platform seat", "SUBSCRIPTION"),
    }
    archived = client.v1.contracts.products.list(archive_filter="ARCHIVED")
    assert [p.current.name for p in archived] == ["Legacy commit"]
    assert len(list(client.v1.contracts.products.list(archive_filter="ALL"))) == 9

    [package] = client.v1.packages.list()
    assert (package.name, [a.name for a in package.aliases or []]) == (
        "Startup package",
        ["startup-package"],
    )
    assert package.rate_card_id == emulator.catalog.rate_card_named("Startup").id


def test_the_rate_card_list_has_no_filter(client: metronome.Metronome) -> None:
    """The spec's body for rate-cards/list is an empty object (additionalProperties: false):
    a client wanting the card behind an alias reads every page and matches ``aliases``."""
    with pytest.raises(metronome.BadRequestError, match="aliases"):
        client.v1.contracts.rate_cards.list(body={"aliases": [{"name": "standard"}]})
    with pytest.raises(metronome.BadRequestError):
        client.v1.contracts.rate_cards.list(limit=101)


def test_seeding_is_overridable_and_reset_restores_it(
    client: metronome.Metronome, emulator: MetronomeEmulator
) -> None:
    own = Catalog(
        rate_cards=(RateCard(seed_id("rate_card", "Only"), "Only", (Alias("only"),)),),
        products=(Product(seed_id("product", "Commit"), "Commit", "FIXED"),),
    )
    emulator.reset(catalog=own)
    assert [c.name for c in client.v1.contracts.rate_cards.list()] == ["Only"]
    assert list(client.v1.packages.list()) == []
    emulator.reset()
    assert len(list(client.v1.contracts.rate_cards.list())) == 4
    with MetronomeEmulator(token=TOKEN, catalog=own) as other:
        assert other.catalog is own
        assert httpx.post(f"{other.url}/_sandbox/reset").status_code == 200
        assert other.catalog is own  # a reset re-seeds what the emulator was started with


def test_a_catalog_metronome_could_not_hold_is_refused() -> None:
    card = RateCard(seed_id("rate_card", "A"), "A", (Alias("x"),))
    with pytest.raises(ValueError, match="names two items"):
        Catalog(rate_cards=(card, RateCard(seed_id("rate_card", "B"), "B", (Alias("x"),))))
    switch = datetime(2025, 1, 1, tzinfo=UTC)
    Catalog(  # the same alias on two cards in turn is how an alias moves
        rate_cards=(
            RateCard(seed_id("rate_card", "A"), "A", (Alias("x", ending_before=switch),)),
            RateCard(seed_id("rate_card", "B"), "B", (Alias("x", starting_at=switch),)),
        )
    )
    with pytest.raises(ValueError, match="used twice"):
        Catalog(rate_cards=(card, card))


# -- contract create: pricing, boundaries, customer ---------------------------------------------


def test_a_rate_card_alias_resolves_as_of_starting_at(
    client: metronome.Metronome, emulator: MetronomeEmulator, customer: str
) -> None:
    create(client, customer, starting_at="2024-06-01T00:00:00Z")
    create(client, customer, starting_at="2025-01-01T00:00:00Z")
    by_id = emulator.catalog.rate_card_named("Enterprise").id
    create(client, customer, rate_card_alias=None, rate_card_id=by_id)
    assert "rate_card_alias must not be null" in refused(
        client, customer, extra_body={"rate_card_alias": None}
    )
    assert [c.rate_card_id for c in contracts(client, customer)] == [
        seed_id("rate_card", "Standard 2024"),
        seed_id("rate_card", "Standard"),
        by_id,
    ]


@pytest.mark.parametrize(
    ("terms", "said"),
    [
        ({"rate_card_alias": "platinum"}, "no rate card has the alias 'platinum'"),
        ({"rate_card_id": NO_SUCH_ID, "rate_card_alias": None}, "not found"),
        ({"rate_card_id": seed_id("rate_card", "Standard")}, "not both"),
        ({"rate_card_alias": None}, "needs a rate_card_id, a rate_card_alias or a package"),
    ],
)
def test_pricing_is_exactly_one_known_rate_card(
    client: metronome.Metronome, customer: str, terms: dict[str, Any], said: str
) -> None:
    assert said in refused(client, customer, **terms)


@pytest.mark.parametrize(
    ("terms", "said"),
    [
        ({"starting_at": "2026-01-01T00:30:00Z"}, "on the hour"),
        ({"starting_at": "2026-01-01T00:00:00+05:30"}, "on the hour"),  # 18:30 UTC
        ({"starting_at": "2026-01-01T00:00:00"}, "UTC offset"),
        ({"starting_at": "2026-01-01"}, "RFC 3339"),
        ({"starting_at": "soon"}, "RFC 3339"),
        ({"ending_before": START}, "after starting_at"),
        ({"ending_before": "2025-12-01T00:00:00Z"}, "after starting_at"),
        ({"ending_before": "2026-06-01T12:15:00Z"}, "on the hour"),
    ],
)
def test_contract_boundaries(
    client: metronome.Metronome, customer: str, terms: dict[str, Any], said: str
) -> None:
    assert said in refused(client, customer, **terms)


def test_boundaries_accepted_as_any_offset_and_written_back_in_utc(
    client: metronome.Metronome, customer: str
) -> None:
    create(client, customer, starting_at="2026-01-01T05:00:00+05:00", ending_before=END)
    [contract] = contracts(client, customer)
    assert contract.starting_at == datetime(2026, 1, 1, tzinfo=UTC)
    assert contract.ending_before == datetime(2027, 1, 1, tzinfo=UTC)
    create(client, customer, starting_at="2027-01-01T00:00:00Z")  # no end: evergreen
    assert contracts(client, customer)[1].ending_before is None


def test_starting_at_is_required(emulator: MetronomeEmulator, customer: str) -> None:
    answer = httpx.post(
        f"{emulator.url}/v1/contracts/create",
        headers={"Authorization": f"Bearer {TOKEN}"},
        json={"customer_id": customer, "rate_card_alias": "standard"},
    )
    assert (answer.status_code, answer.json()) == (400, {"message": "starting_at is required"})


def test_the_customer_must_exist_and_be_live(client: metronome.Metronome, customer: str) -> None:
    assert "not found" in refused(client, NO_SUCH_ID, status=404)
    client.v1.customers.archive(id=customer)
    assert "archived" in refused(client, customer)


def test_unknown_gated_and_unmodelled_fields_are_refused(
    client: metronome.Metronome, customer: str
) -> None:
    def refused_with(**extra: Any) -> str:
        with pytest.raises(metronome.BadRequestError) as caught:
            client.v1.contracts.create(
                customer_id=customer,
                starting_at=START,
                rate_card_alias="standard",
                extra_body=extra,
            )
        body = caught.value.body
        assert isinstance(body, dict)
        return str(body["message"])

    assert "does not accept opportunity_id" in refused_with(opportunity_id="006A")
    assert "not available to this Metronome client" in refused_with(
        salesforce_opportunity_id="006A"
    )
    assert "not available" in refused_with(total_contract_value=100)
    assert "not modelled" in refused_with(credits=[{"type": "MULTIPLIER"}])
    create(client, customer, overrides=[], credits=[])  # empty: nothing dropped


# -- uniqueness key -----------------------------------------------------------------------------


def test_a_uniqueness_key_is_used_once_per_account_forever(
    client: metronome.Metronome, customer: str
) -> None:
    first = create(client, customer, uniqueness_key="crmsync:006A")
    assert refused(client, customer, 409, uniqueness_key="crmsync:006A") == UNIQUENESS_KEY_USED
    assert UNIQUENESS_KEY_USED == "This uniqueness key has already been used."
    other = client.v1.customers.create(name="Other").data.id
    assert refused(client, other, 409, uniqueness_key="crmsync:006A") == UNIQUENESS_KEY_USED
    client.v1.contracts.archive(customer_id=customer, contract_id=first, void_invoices=False)
    assert refused(client, customer, 409, uniqueness_key="crmsync:006A") == UNIQUENESS_KEY_USED
    [kept] = contracts(client, customer, include_archived=True)
    assert kept.uniqueness_key == "crmsync:006A"
    create(client, customer, uniqueness_key="k" * 128)
    assert "1 to 128" in refused(client, customer, uniqueness_key="k" * 129)
    assert "1 to 128" in refused(client, customer, uniqueness_key="")


# -- packages -----------------------------------------------------------------------------------


def test_a_package_contract_by_id_or_alias(
    client: metronome.Metronome, emulator: MetronomeEmulator, customer: str
) -> None:
    package = emulator.catalog.package_named("Startup package")
    client.v1.contracts.create(customer_id=customer, starting_at=START, package_id=package.id)
    client.v1.contracts.create(
        customer_id=customer,
        starting_at=END,
        package_alias="startup-package",
        uniqueness_key="crmsync:006P",
        custom_fields={},
    )
    listed = contracts(client, customer)
    assert [c.package_id for c in listed] == [package.id, package.id]
    assert {c.rate_card_id for c in listed} == {package.rate_card_id}
    assert [c.name for c in listed] == ["Startup package"] * 2


@pytest.mark.parametrize(
    ("terms", "said"),
    [
        ({"name": "Acme"}, "got name"),
        ({"ending_before": END}, "got ending_before"),
        ({"rate_card_alias": "standard"}, "got rate_card_alias"),
        ({"net_payment_terms_days": 30}, "got net_payment_terms_days"),
        ({"package_id": seed_id("package", "Startup package")}, "not both"),
        ({"package_alias": "enterprise-package"}, "no package has the alias"),
    ],
)
def test_a_package_allows_only_the_specs_short_list(
    client: metronome.Metronome, customer: str, terms: dict[str, Any], said: str
) -> None:
    terms = {"package_alias": "startup-package", "rate_card_alias": None, **terms}
    assert said in refused(client, customer, **terms)


# -- custom fields ------------------------------------------------------------------------------


def test_contract_custom_fields_need_contract_keys_and_honour_uniqueness(
    client: metronome.Metronome, customer: str
) -> None:
    v1 = client.v1
    v1.custom_fields.add_key(entity="customer", key="sfdc_opportunity_id", enforce_uniqueness=True)
    said = refused(client, customer, custom_fields={"sfdc_opportunity_id": "006A"})
    assert "not registered for contract" in said  # a customer key is not a contract key
    v1.custom_fields.add_key(entity="contract", key="sfdc_opportunity_id", enforce_uniqueness=True)
    v1.custom_fields.add_key(entity="contract", key="deal_type", enforce_uniqueness=False)
    assert "200" in refused(client, customer, custom_fields={"deal_type": "x" * 201})
    create(client, customer, custom_fields={"sfdc_opportunity_id": "006A", "deal_type": "new"})
    create(client, customer, custom_fields={"sfdc_opportunity_id": "006B", "deal_type": "new"})
    said = refused(client, customer, 409, custom_fields={"sfdc_opportunity_id": "006A"})
    assert "unique" in said
    assert [c.custom_fields for c in contracts(client, customer)] == [
        {"sfdc_opportunity_id": "006A", "deal_type": "new"},
        {"sfdc_opportunity_id": "006B", "deal_type": "new"},
    ]
    v1.custom_fields.remove_key(entity="contract", key="sfdc_opportunity_id")
    assert [c.custom_fields for c in contracts(client, customer)] == [{"deal_type": "new"}] * 2


# -- billing provider configuration -------------------------------------------------------------


def test_billing_configuration_by_id_must_be_this_customers_and_live(
    client: metronome.Metronome, customer: str
) -> None:
    v1 = client.v1
    other = v1.customers.create(
        name="Other", customer_billing_provider_configurations=[stripe_config()]
    ).data.id
    [foreign] = v1.customers.retrieve_billing_configurations(customer_id=other).data
    added = v1.customers.set_billing_configurations(data=[stripe_config(customer_id=customer)])
    own = added.data[0].id
    assert own is not None

    def by_id(config_id: str | None) -> dict[str, Any]:
        return {"billing_provider_configuration": {"billing_provider_configuration_id": config_id}}

    assert "not a live billing provider configuration" in refused(
        client, customer, **by_id(foreign.id)
    )
    assert "not a live" in refused(client, customer, **by_id(NO_SUCH_ID))
    create(client, customer, **by_id(own))
    [contract] = contracts(client, customer)
    assert contract.customer_billing_provider_configuration is not None
    assert contract.customer_billing_provider_configuration.id == own
    v1.customers.archive_billing_configurations(
        customer_id=customer, customer_billing_provider_configuration_ids=[own]
    )
    assert "not a live" in refused(client, customer, **by_id(own))
    both = {"billing_provider_configuration_id": own, "billing_provider": "stripe"}
    assert "not both" in refused(client, customer, billing_provider_configuration=both)


def test_billing_configuration_by_provider_must_match_exactly_one(
    client: metronome.Metronome, customer: str
) -> None:
    stripe = {"billing_provider": "stripe", "delivery_method": "direct_to_billing_provider"}
    assert "has 0 live stripe" in refused(client, customer, billing_provider_configuration=stripe)
    set_configs = client.v1.customers.set_billing_configurations
    set_configs(data=[stripe_config(customer_id=customer)])
    create(client, customer, billing_provider_configuration=stripe)
    set_configs(data=[stripe_config(customer_id=customer)])  # appends a second
    said = refused(client, customer, billing_provider_configuration=stripe)
    assert "has 2 live stripe" in said and "billing_provider_configuration_id" in said
    aws = {"billing_provider": "aws_marketplace", "delivery_method": "aws_sqs"}
    assert "has 0 live" in refused(client, customer, billing_provider_configuration=aws)
    assert "needs" in refused(
        client, customer, billing_provider_configuration={"billing_provider": "stripe"}
    )


# -- commits ------------------------------------------------------------------------------------


def test_prepaid_and_postpaid_commits_are_stored_as_given(
    client: metronome.Metronome, emulator: MetronomeEmulator, customer: str
) -> None:
    postpaid = emulator.catalog.product_named("Postpaid commit").id
    create(
        client,
        customer,
        ending_before=END,
        commits=[
            prepaid(emulator, 5000, name="Annual prepaid", invoice_schedule={
                "schedule_items": [{"timestamp": START, "unit_price": 2500, "quantity": 2}]
            }),
            prepaid(emulator, 100, type="prepaid"),  # the spec's lower-case spelling
            {
                "type": "POSTPAID",
                "product_id": postpaid,
                "access_schedule": {
                    "schedule_items": [{"amount": 700, "starting_at": START, "ending_before": END}]
                },
                "invoice_schedule": {"schedule_items": [{"timestamp": END, "amount": 700}]},
            },
        ],
    )  # fmt: skip
    [contract] = contracts(client, customer)
    annual, complimentary, true_up = contract.commits
    assert (annual.type, annual.name, annual.product.name) == (
        "PREPAID",
        "Annual prepaid",
        "Prepaid commit",
    )
    assert annual.access_schedule is not None
    assert [i.amount for i in annual.access_schedule.schedule_items] == [5000]
    assert annual.invoice_schedule is not None
    [invoice] = annual.invoice_schedule.schedule_items
    assert (invoice.amount, invoice.unit_price, invoice.quantity) == (5000, 2500, 2)
    assert complimentary.type == "PREPAID" and complimentary.invoice_schedule is None
    assert true_up.type == "POSTPAID" and true_up.contract is not None
    assert true_up.contract.id == contract.id


@pytest.mark.parametrize(
    ("commit", "said"),
    [
        ({"product_id": seed_id("product", "API calls")}, "FIXED product"),
        ({"product_id": seed_id("product", "Legacy commit")}, "unarchived"),
        ({"product_id": NO_SUCH_ID}, "FIXED product"),
        ({"type": "UPFRONT"}, "must be one of PREPAID, POSTPAID"),
        ({"access_schedule": None}, "access_schedule is required"),
        ({"access_schedule": {"schedule_items": []}}, "non-empty"),
        (
            {"access_schedule": {"schedule_items": [
                {"amount": -1, "starting_at": START, "ending_before": END}
            ]}},
            "must not be negative",
        ),
        (
            {"access_schedule": {"schedule_items": [
                {"amount": 1, "starting_at": END, "ending_before": START}
            ]}},
            "after its starting_at",
        ),
        (
            {"invoice_schedule": {"schedule_items": [{"timestamp": START}]}},
            "needs an amount, or a unit_price and a quantity",
        ),
        (
            {"invoice_schedule": {"schedule_items": [{"timestamp": START, "unit_price": 5}]}},
            "go together",
        ),
        (
            {"invoice_schedule": {"schedule_items": [
                {"timestamp": START, "amount": 9, "unit_price": 5, "quantity": 2}
            ]}},
            "amount must equal unit_price x quantity",
        ),
        ({"amount": 1000}, "deprecated"),
        ({"netsuite_sales_order_id": "SO-1"}, "not available"),
        ({"access_schedules": {}}, "does not accept access_schedules"),
    ],
)  # fmt: skip
def test_commit_rules(
    client: metronome.Metronome,
    emulator: MetronomeEmulator,
    customer: str,
    commit: dict[str, Any],
    said: str,
) -> None:
    body = {k: v for k, v in {**prepaid(emulator), **commit}.items() if v is not None}
    assert said in refused(client, customer, commits=[body])


@pytest.mark.parametrize(
    ("invoices", "said"),
    [
        (None, "exactly one invoice schedule item"),
        ([], "exactly one invoice schedule item"),
        ([{"timestamp": END, "amount": 350}] * 2, "exactly one invoice schedule item"),
        ([{"timestamp": END, "amount": 699}], "must equal its access schedule total (700"),
    ],
)
def test_a_postpaid_commit_invoices_its_access_total_once(
    client: metronome.Metronome,
    emulator: MetronomeEmulator,
    customer: str,
    invoices: list[dict[str, Any]] | None,
    said: str,
) -> None:
    commit = prepaid(emulator, 700, type="POSTPAID")
    if invoices is not None:
        commit["invoice_schedule"] = {"schedule_items": invoices}
    assert said in refused(client, customer, commits=[commit])
    two_access_items = prepaid(emulator, 350, type="POSTPAID")
    two_access_items["access_schedule"]["schedule_items"] *= 2
    two_access_items["invoice_schedule"] = {"schedule_items": [{"timestamp": END, "amount": 700}]}
    assert "exactly one access schedule item" in refused(
        client, customer, commits=[two_access_items]
    )


# -- the other terms ----------------------------------------------------------------------------


def test_statement_schedule_name_and_payment_terms(
    client: metronome.Metronome, customer: str
) -> None:
    create(client, customer, starting_at="2026-03-15T00:00:00Z", name="Acme 2026")
    create(
        client,
        customer,
        starting_at="2026-04-15T00:00:00Z",
        net_payment_terms_days=45,
        usage_statement_schedule={"frequency": "quarterly", "day": "CONTRACT_START"},
    )
    create(
        client,
        customer,
        starting_at="2026-05-15T00:00:00Z",
        usage_statement_schedule={
            "frequency": "ANNUAL",
            "day": "CUSTOM_DATE",
            "billing_anchor_date": "2026-05-10T00:00:00Z",
        },
    )
    monthly, quarterly, annual = contracts(client, customer)
    assert (monthly.name, monthly.usage_statement_schedule.frequency) == ("Acme 2026", "MONTHLY")
    assert monthly.usage_statement_schedule.billing_anchor_date == datetime(2026, 3, 1, tzinfo=UTC)
    assert quarterly.usage_statement_schedule.frequency == "QUARTERLY"
    assert quarterly.usage_statement_schedule.billing_anchor_date == datetime(
        2026, 4, 15, tzinfo=UTC
    )
    assert quarterly.net_payment_terms_days == 45
    assert annual.usage_statement_schedule.billing_anchor_date == datetime(2026, 5, 10, tzinfo=UTC)
    custom = {"frequency": "MONTHLY", "day": "CUSTOM_DATE"}
    assert "billing_anchor_date is required" in refused(
        client, customer, usage_statement_schedule=custom
    )
    assert "frequency" in refused(client, customer, usage_statement_schedule={"frequency": "DAILY"})
    assert "number" in refused(client, customer, extra_body={"net_payment_terms_days": "30"})


def test_a_renewal_transition_links_both_contracts(
    client: metronome.Metronome, customer: str
) -> None:
    first = create(client, customer, ending_before=END)
    second = create(
        client,
        customer,
        starting_at=END,
        transition={"type": "RENEWAL", "from_contract_id": first},
    )
    link = [(t.from_contract_id, t.to_contract_id) for c in contracts(client, customer)
            for t in c.transitions]  # fmt: skip
    assert link == [(first, second), (first, second)]
    other = client.v1.customers.create(name="Other").data.id
    assert "contract of this customer" in refused(
        client, other, transition={"type": "RENEWAL", "from_contract_id": first}
    )


# -- v2 list and archive ------------------------------------------------------------------------


def test_v2_list_pages_by_cursor_twenty_at_most(
    client: metronome.Metronome, emulator: MetronomeEmulator, customer: str
) -> None:
    other = client.v1.customers.create(name="Other").data.id
    create(client, other)
    # Created out of order: the list is chronological by starting_at.
    starts = [datetime(2020 + n % 9, 1 + n // 9, 1, tzinfo=UTC) for n in range(45)]
    ids = {create(client, customer, starting_at=s.isoformat()): s for s in starts}

    listed = contracts(client, customer)
    assert [c.starting_at for c in listed] == sorted(starts)
    assert {c.id for c in listed} == set(ids)
    assert emulator.request_counts()["POST /v2/contracts/list 200"] == 3  # 20 + 20 + 5

    page = client.v2.contracts.list(customer_id=customer, limit=7)
    assert len(page.data) == 7 and page.cursor is not None
    second = client.v2.contracts.list(customer_id=customer, limit=7, cursor=page.cursor)
    assert [c.id for c in second.data] == [c.id for c in listed[7:14]]
    assert len(list(client.v2.contracts.list(customer_id=customer, limit=20))) == 45
    for bad in (0, 21):
        with pytest.raises(metronome.BadRequestError, match="between 1 and 20"):
            client.v2.contracts.list(customer_id=customer, limit=bad)
    with pytest.raises(metronome.BadRequestError, match="cursor"):
        client.v2.contracts.list(customer_id=customer, cursor="not-a-cursor")


def test_a_cursor_never_repeats_a_contract_created_while_paging(
    client: metronome.Metronome, customer: str
) -> None:
    for year in (2026, 2027, 2028):
        create(client, customer, starting_at=f"{year}-01-01T00:00:00Z")
    first = client.v2.contracts.list(customer_id=customer, limit=2)
    assert first.cursor is not None
    create(client, customer, starting_at="2020-01-01T00:00:00Z")  # sorts before the cursor
    rest = client.v2.contracts.list(customer_id=customer, limit=2, cursor=first.cursor)
    assert [c.starting_at.year for c in first.data + rest.data] == [2026, 2027, 2028]
    assert rest.cursor is None


def test_v2_list_filters(client: metronome.Metronome, customer: str) -> None:
    create(client, customer, starting_at="2025-01-01T00:00:00Z", ending_before=START)
    create(client, customer, starting_at=START, ending_before=END)
    create(client, customer, starting_at=END)

    def years(**filters: Any) -> list[int]:
        return [c.starting_at.year for c in contracts(client, customer, **filters)]

    assert years(covering_date="2026-06-01T00:00:00Z") == [2026]
    assert years(covering_date=START) == [2026]  # starting_at inclusive, ending_before not
    assert years(covering_date="2030-01-01T00:00:00Z") == [2027]
    assert years(starting_at=START) == [2026, 2027]
    assert years(include_balance=True, include_ledgers=True) == [2025, 2026, 2027]
    with pytest.raises(metronome.BadRequestError, match="covering_date"):
        contracts(client, customer, starting_at=START, covering_date=START)


def test_v2_list_of_an_unknown_customer_is_a_400_with_a_code(
    client: metronome.Metronome,
) -> None:
    with pytest.raises(metronome.BadRequestError) as caught:
        contracts(client, NO_SUCH_ID)
    body = caught.value.body
    assert isinstance(body, dict) and body["code"] == "CustomerNotFound" and body["message"]


def test_archived_contracts_are_listed_only_on_request(
    client: metronome.Metronome, emulator: MetronomeEmulator, customer: str
) -> None:
    kept = create(client, customer, uniqueness_key="a")
    gone = create(client, customer, starting_at=END, uniqueness_key="b")
    answer = client.v1.contracts.archive(customer_id=customer, contract_id=gone, void_invoices=True)
    assert answer.data.id == gone
    assert [c.id for c in contracts(client, customer)] == [kept]
    every = contracts(client, customer, include_archived=True)
    assert [(c.id, c.archived_at is not None) for c in every] == [(kept, False), (gone, True)]
    assert [c["id"] for c in emulator.contracts()] == [kept, gone]  # the accessor sees both
    with pytest.raises(metronome.BadRequestError, match="already archived"):
        client.v1.contracts.archive(customer_id=customer, contract_id=gone, void_invoices=True)
    other = client.v1.customers.create(name="Other").data.id
    with pytest.raises(metronome.NotFoundError):
        client.v1.contracts.archive(customer_id=other, contract_id=kept, void_invoices=False)


# -- faults, idempotency, inspection --------------------------------------------------------------


def test_commit_then_drop_stores_the_contract_and_a_keyed_retry_finds_it(
    client: metronome.Metronome, emulator: MetronomeEmulator, customer: str
) -> None:
    emulator.set_faults(MetronomeFaults(commit_then_drop_rate=1.0, routes=(CREATE,)))
    key = {"Idempotency-Key": "contract-006A-1"}
    terms = {"uniqueness_key": "crmsync:006A", "extra_headers": key}
    with pytest.raises(metronome.APIConnectionError):
        create(client, customer, **terms)
    [stored] = emulator.contracts(with_request=True)
    assert (stored["customer_id"], stored["uniqueness_key"]) == (customer, "crmsync:006A")
    assert stored["request"] == {
        "customer_id": customer,
        "starting_at": START,
        "rate_card_alias": "standard",
        "uniqueness_key": "crmsync:006A",
    }
    emulator.set_faults(MetronomeFaults())
    assert create(client, customer, **terms) == stored["id"]  # the stored answer, replayed
    assert refused(client, customer, 409, uniqueness_key="crmsync:006A") == UNIQUENESS_KEY_USED
    assert len(emulator.contracts()) == 1
    assert emulator.request_counts()[f"{CREATE} DROP"] == 1


def test_faults_limited_to_contract_create_leave_customers_alone(
    client: metronome.Metronome, emulator: MetronomeEmulator
) -> None:
    emulator.set_faults(MetronomeFaults(server_error_rate=1.0, latency_s=0.01, routes=(CREATE,)))
    customer_id = client.v1.customers.create(name="Acme").data.id  # no fault here
    key = {"Idempotency-Key": "contract-500"}
    with pytest.raises(metronome.InternalServerError):
        create(client, customer_id, extra_headers=key)
    assert emulator.contracts() == []
    emulator.set_faults(MetronomeFaults())
    with pytest.raises(metronome.InternalServerError):  # the 5xx is cached under its key
        create(client, customer_id, extra_headers=key)
    assert emulator.contracts() == []
    create(client, customer_id, extra_headers={"Idempotency-Key": "contract-500-2"})
    with pytest.raises(metronome.ConflictError, match="Idempotency-Key"):
        create(client, customer_id, name="other body", extra_headers=key)
    assert emulator.request_counts() == {
        "POST /v1/customers 200": 1,
        f"{CREATE} 500": 2,
        f"{CREATE} 200": 1,
        f"{CREATE} 409": 1,
    }


def test_contract_create_is_rate_limited_like_any_route(
    client: metronome.Metronome, emulator: MetronomeEmulator, customer: str
) -> None:
    emulator.set_faults(MetronomeFaults(too_many_requests_rate=1.0, routes=(CREATE,)))
    with pytest.raises(metronome.RateLimitError) as caught:
        create(client, customer)
    assert caught.value.response.headers["X-Metronome-Rate-Limit-Type"] == "client"
    client.v2.contracts.list(customer_id=customer)  # not limited: another route
    assert emulator.faults_injected() == {"too_many_requests": 1}


def test_sandbox_endpoints_show_contracts_and_accepted_bodies(
    client: metronome.Metronome, emulator: MetronomeEmulator, customer: str
) -> None:
    contract_id = create(client, customer, uniqueness_key="crmsync:006A")
    refused(client, customer, 409, uniqueness_key="crmsync:006A")
    shown = httpx.get(f"{emulator.url}/_sandbox/contracts").json()["data"]
    assert [c["id"] for c in shown] == [contract_id] and shown == emulator.contracts()
    accepted = httpx.get(
        f"{emulator.url}/_sandbox/accepted-bodies", params={"route": CREATE}
    ).json()
    assert accepted["data"] == emulator.accepted_bodies(CREATE)
    assert accepted["data"] == [
        {
            "customer_id": customer,
            "starting_at": START,
            "rate_card_alias": "standard",
            "uniqueness_key": "crmsync:006A",
        }
    ]  # the refused second create is not an accepted body
    faults = httpx.post(f"{emulator.url}/_sandbox/faults", json={"routes": [CREATE]}).json()
    assert faults["faults"]["routes"] == [CREATE]
