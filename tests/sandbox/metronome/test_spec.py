"""Contract: the official SDK drives every emulated endpoint, every response body the
emulator sends validates against the schema Metronome's OpenAPI spec gives for it, and every
request body the emulator accepts validates against the spec's request schema.

The spec lives outside the repo (see tests/support/metronome_spec.py); without it these
tests skip and say why.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import jsonschema  # type: ignore[import-untyped]
import metronome
import pytest

from tests.support.metronome_emulator import TOKEN
from tests.support.metronome_spec import (
    assert_requests_match_spec,
    load_spec,
    openapi_to_jsonschema,
    request_errors,
)
from worker.sandbox.metronome import MetronomeEmulator, MetronomeFaults
from worker.sandbox.metronome.routes import ROUTES, match


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return load_spec()


@pytest.fixture
def recorded(emulator: MetronomeEmulator) -> Iterator[tuple[metronome.Metronome, list[Any]]]:
    responses: list[tuple[str, str, int, bytes]] = []

    def record(response: httpx.Response) -> None:
        response.read()
        responses.append(
            (
                response.request.method,
                response.request.url.path,
                response.status_code,
                response.content,
            )
        )

    http = httpx.Client(event_hooks={"response": [record]}, timeout=5)
    client = metronome.Metronome(
        bearer_token=TOKEN, base_url=emulator.url, max_retries=0, http_client=http
    )
    yield client, responses
    http.close()


def _drive_every_endpoint(client: metronome.Metronome) -> None:
    v1 = client.v1
    v1.custom_fields.add_key(entity="customer", key="sfdc_account_id", enforce_uniqueness=True)
    v1.custom_fields.add_key(entity="customer", key="tier", enforce_uniqueness=False)
    v1.custom_fields.list_keys(entities=["customer"])
    created = v1.customers.create(
        name="Acme",
        ingest_aliases=["acme"],
        custom_fields={"sfdc_account_id": "001A"},
        customer_billing_provider_configurations=[
            {
                "billing_provider": "stripe",
                "delivery_method": "direct_to_billing_provider",
                "configuration": {
                    "stripe_customer_id": "cus_1",
                    "stripe_collection_method": "send_invoice",
                },
            }
        ],
    )
    customer_id = created.data.id
    with pytest.raises(metronome.ConflictError):
        v1.customers.create(name="Dup", ingest_aliases=["acme"])
    v1.customers.retrieve(customer_id=customer_id)
    v1.customers.set_ingest_aliases(customer_id=customer_id, ingest_aliases=["acme", "acme-2"])
    v1.customers.set_name(customer_id=customer_id, name="Acme Inc")
    v1.customers.update_config(customer_id=customer_id, salesforce_account_id="001A")
    with pytest.raises(metronome.NotFoundError):
        v1.customers.update_config(
            customer_id="00000000-0000-0000-0000-000000000000", salesforce_account_id="x"
        )
    v1.custom_fields.set_values(
        entity="customer", entity_id=customer_id, custom_fields={"tier": "gold"}
    )
    v1.custom_fields.delete_values(entity="customer", entity_id=customer_id, keys=["tier"])
    v1.customers.list(salesforce_account_ids=["001A", "001B"])
    v1.customers.list(ingest_alias="acme", limit=1)
    v1.customers.list(customer_ids=[customer_id])
    added = v1.customers.set_billing_configurations(
        data=[
            {
                "customer_id": customer_id,
                "billing_provider": "netsuite",
                "delivery_method": "direct_to_billing_provider",
                "configuration": {"netsuite_customer_id": "ns-1"},
            }
        ]
    )
    with pytest.raises(metronome.BadRequestError):
        v1.customers.set_billing_configurations(
            data=[
                {
                    "customer_id": customer_id,
                    "billing_provider": "netsuite",
                    "delivery_method": "aws_sqs",
                }
            ]
        )
    v1.customers.retrieve_billing_configurations(customer_id=customer_id, include_archived=True)
    config_id = added.data[0].id
    assert config_id is not None
    v1.customers.archive_billing_configurations(
        customer_id=customer_id, customer_billing_provider_configuration_ids=[config_id]
    )
    v1.customers.archive(id=customer_id)
    with pytest.raises(metronome.BadRequestError):
        v1.customers.archive(id=customer_id)
    v1.customers.list(only_archived=True)
    v1.custom_fields.remove_key(entity="customer", key="tier")


def _drive_contract_endpoints(client: metronome.Metronome, emulator: MetronomeEmulator) -> None:
    """The catalog lists, contract create (every status it answers with), the v2 list across
    pages and filters, and archive."""
    v1, v2 = client.v1, client.v2
    assert len(list(v1.contracts.rate_cards.list(limit=1))) == 4  # pages by next_page
    every = list(v1.contracts.products.list(archive_filter="ALL", limit=2))
    assert len(every) == len(emulator.catalog.products)
    assert [p.name for p in v1.packages.list()] == ["Startup package"]
    v1.custom_fields.add_key(entity="contract", key="sfdc_opportunity_id", enforce_uniqueness=True)
    customer_id = v1.customers.create(
        name="Contracted",
        customer_billing_provider_configurations=[
            {
                "billing_provider": "stripe",
                "delivery_method": "direct_to_billing_provider",
                "configuration": {
                    "stripe_customer_id": "cus_2",
                    "stripe_collection_method": "charge_automatically",
                },
            }
        ],
    ).data.id
    [config] = v1.customers.retrieve_billing_configurations(customer_id=customer_id).data
    assert config.id is not None
    catalog = emulator.catalog
    start, end = "2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z"
    first = v1.contracts.create(
        customer_id=customer_id,
        starting_at=datetime(2026, 1, 1, tzinfo=UTC),
        ending_before=datetime(2027, 1, 1, tzinfo=UTC),
        rate_card_alias="standard",
        name="Contracted 2026",
        uniqueness_key="crmsync:006A",
        net_payment_terms_days=30,
        custom_fields={"sfdc_opportunity_id": "006A"},
        usage_statement_schedule={"frequency": "MONTHLY", "day": "FIRST_OF_MONTH"},
        billing_provider_configuration={
            "billing_provider": "stripe",
            "delivery_method": "direct_to_billing_provider",
        },
        commits=[
            {
                "type": "PREPAID",
                "product_id": catalog.product_named("Prepaid commit").id,
                "name": "Prepaid",
                "access_schedule": {
                    "schedule_items": [
                        {"amount": 5_000_000, "starting_at": start, "ending_before": end}
                    ]
                },
                "invoice_schedule": {"schedule_items": [{"timestamp": start, "amount": 5_000_000}]},
            },
            {
                "type": "PREPAID",  # no invoice schedule: complimentary
                "product_id": catalog.product_named("Prepaid commit").id,
                "access_schedule": {
                    "schedule_items": [
                        {"amount": 10_000, "starting_at": start, "ending_before": end}
                    ]
                },
            },
            {
                "type": "POSTPAID",
                "product_id": catalog.product_named("Postpaid commit").id,
                "access_schedule": {
                    "schedule_items": [{"amount": 300, "starting_at": start, "ending_before": end}]
                },
                "invoice_schedule": {
                    "schedule_items": [{"timestamp": end, "unit_price": 100, "quantity": 3}]
                },
            },
        ],
    ).data.id
    v1.contracts.create(
        customer_id=customer_id,
        starting_at="2027-01-01T00:00:00Z",
        package_alias="startup-package",
        uniqueness_key="crmsync:006B",
        transition={"type": "RENEWAL", "from_contract_id": first},
    )
    v1.contracts.create(
        customer_id=customer_id,
        starting_at="2028-01-01T00:00:00+00:00",
        rate_card_id=catalog.rate_card_named("Enterprise").id,
        billing_provider_configuration={"billing_provider_configuration_id": config.id},
    )
    with pytest.raises(metronome.ConflictError):
        v1.contracts.create(
            customer_id=customer_id,
            starting_at="2029-01-01T00:00:00Z",
            rate_card_alias="standard",
            uniqueness_key="crmsync:006A",
        )
    with pytest.raises(metronome.BadRequestError):
        v1.contracts.create(
            customer_id=customer_id, starting_at="2029-01-01T00:30:00Z", rate_card_alias="standard"
        )
    with pytest.raises(metronome.NotFoundError):
        v1.contracts.create(
            customer_id="00000000-0000-0000-0000-000000000000",
            starting_at="2029-01-01T00:00:00Z",
            rate_card_alias="standard",
        )
    assert len(list(v2.contracts.list(customer_id=customer_id, limit=1))) == 3  # by cursor
    v2.contracts.list(customer_id=customer_id, covering_date="2026-06-01T00:00:00Z")
    with pytest.raises(metronome.BadRequestError):
        v2.contracts.list(customer_id="00000000-0000-0000-0000-000000000000")
    v1.contracts.archive(customer_id=customer_id, contract_id=first, void_invoices=False)
    with pytest.raises(metronome.BadRequestError):
        v1.contracts.archive(customer_id=customer_id, contract_id=first, void_invoices=False)
    with pytest.raises(metronome.NotFoundError):
        v1.contracts.archive(
            customer_id=customer_id,
            contract_id="00000000-0000-0000-0000-000000000000",
            void_invoices=False,
        )
    v2.contracts.list(customer_id=customer_id, include_archived=True)


#: Answers the spec does not declare for an operation but Metronome documents elsewhere,
#: each with the component schema its body has: the contract 409 is in the spec's
#: UniquenessKey description ("the request will fail with a 409 error").
DOCUMENTED_ELSEWHERE = {"POST /v1/contracts/create 409": "#/components/schemas/Error"}


def test_every_response_body_matches_the_spec(
    spec: dict[str, Any],
    recorded: tuple[metronome.Metronome, list[Any]],
    emulator: MetronomeEmulator,
) -> None:
    client, responses = recorded
    _drive_every_endpoint(client)
    _drive_contract_endpoints(client, emulator)

    validated: set[str] = set()
    for method, path, status, body in responses:
        found = match(method, path)
        assert found is not None, f"{method} {path}"
        template = found[0].template
        operation = spec["paths"][template][method.lower()]
        declared = operation["responses"].get(str(status))
        elsewhere = DOCUMENTED_ELSEWHERE.get(f"{method} {template} {status}")
        if elsewhere is not None:
            assert declared is None, f"the spec now declares {method} {template} {status}"
            declared = {"content": {"application/json": {"schema": {"$ref": elsewhere}}}}
        assert declared is not None, f"{method} {template} answered undeclared {status}"
        declared = openapi_to_jsonschema(declared, spec)  # responses may be $refs too
        schema = declared.get("content", {}).get("application/json", {}).get("schema")
        if schema is None:
            assert body == b"", f"{method} {template} {status} has no body in the spec"
            continue
        jsonschema.validate(json.loads(body), schema)
        validated.add(f"{method} {template} {status}")

    every_route_with_a_body = {
        "GET /v1/customers 200",
        "POST /v1/customers 200",
        "POST /v1/customers 409",
        "GET /v1/customers/{customer_id} 200",
        "POST /v1/customers/archive 200",
        "POST /v1/customers/archive 400",
        "POST /v1/customers/{customer_id}/setName 200",
        "POST /v1/customers/{customer_id}/updateConfig 404",
        "POST /v1/customFields/listKeys 200",
        "POST /v1/setCustomerBillingProviderConfigurations 200",
        "POST /v1/setCustomerBillingProviderConfigurations 400",
        "POST /v1/getCustomerBillingProviderConfigurations 200",
        "POST /v1/archiveCustomerBillingProviderConfigurations 200",
        "POST /v1/contract-pricing/rate-cards/list 200",
        "POST /v1/contract-pricing/products/list 200",
        "POST /v1/packages/list 200",
        "POST /v1/contracts/create 200",
        "POST /v1/contracts/create 400",
        "POST /v1/contracts/create 404",
        "POST /v1/contracts/create 409",
        "POST /v2/contracts/list 200",
        "POST /v2/contracts/list 400",
        "POST /v1/contracts/archive 200",
        "POST /v1/contracts/archive 400",
        "POST /v1/contracts/archive 404",
    }
    assert validated == every_route_with_a_body


def test_every_accepted_request_body_matches_the_spec(
    spec: dict[str, Any],
    recorded: tuple[metronome.Metronome, list[Any]],
    emulator: MetronomeEmulator,
) -> None:
    """What the emulator accepts, the spec allows: a client tested against the emulator
    cannot rely on a request Metronome's schema refuses."""
    client, _ = recorded
    _drive_every_endpoint(client)
    _drive_contract_endpoints(client, emulator)
    # A dropped answer is still an accepted request: its body is kept too.
    emulator.set_faults(
        MetronomeFaults(commit_then_drop_rate=1.0, routes=("POST /v1/contracts/create",))
    )
    customer_id = client.v1.customers.create(name="Dropped").data.id
    with pytest.raises(metronome.APIConnectionError):
        client.v1.contracts.create(
            customer_id=customer_id, starting_at="2026-01-01T00:00:00Z", rate_card_alias="startup"
        )

    contract_creates = emulator.accepted_bodies("POST /v1/contracts/create")
    assert len(contract_creates) == 4
    checked = 0
    for route in ROUTES:
        bodies = emulator.accepted_bodies(f"{route.method} {route.template}")
        if route.method == "POST" and bodies:
            assert_requests_match_spec(spec, route.method, route.template, bodies)
            checked += 1
    assert checked >= 15


def test_the_request_check_catches_a_body_the_spec_refuses(spec: dict[str, Any]) -> None:
    good = {"customer_id": "c", "starting_at": "2026-01-01T00:00:00Z"}
    assert request_errors(spec, "POST", "/v1/contracts/create", [good]) == []
    bad: list[dict[str, Any]] = [
        {"starting_at": "2026-01-01T00:00:00Z"},  # no customer_id
        {**good, "uniqueness_key": ""},  # minLength 1
        {**good, "commits": [{"type": "UPFRONT", "product_id": "p"}]},
    ]
    errors = request_errors(spec, "POST", "/v1/contracts/create", bad)
    assert [e.split(":")[0] for e in errors] == ["body 0", "body 1", "body 2"]
