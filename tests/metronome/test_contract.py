"""Contract: the official SDK drives every emulated endpoint, and every response body the
emulator sends validates against the schema Metronome's OpenAPI spec gives for it.

The spec lives outside the repo (``<repo>/../shared/reference/metronome-openapi.json``, or
``$CRMSYNC_REFERENCE_DIR``); without it this one test skips and says why.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema  # type: ignore[import-untyped]
import metronome
import pytest

from worker.sandbox.metronome import MetronomeEmulator
from worker.sandbox.metronome.routes import match

from .conftest import TOKEN

SPEC_NAME = "metronome-openapi.json"


def reference_dir() -> Path:
    override = os.environ.get("CRMSYNC_REFERENCE_DIR")
    if override:
        return Path(override)
    repo_root = Path(__file__).resolve().parents[2]
    return repo_root.parent / "shared" / "reference"


def _openapi_to_jsonschema(node: Any, spec: dict[str, Any], seen: tuple[str, ...] = ()) -> Any:
    """Inline ``$ref``s and turn OpenAPI 3.0 ``nullable`` into a JSON Schema null type."""
    if isinstance(node, list):
        return [_openapi_to_jsonschema(item, spec, seen) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        ref = node["$ref"]
        if ref in seen:
            return {}
        target: Any = spec
        for part in ref.removeprefix("#/").split("/"):
            target = target[part]
        return _openapi_to_jsonschema(target, spec, (*seen, ref))
    out = {
        k: _openapi_to_jsonschema(v, spec, seen)
        for k, v in node.items()
        if k not in ("example", "examples", "nullable", "x-mint", "x-cf-entity")
    }
    if node.get("nullable"):
        kind = out.get("type")
        if isinstance(kind, str):
            out["type"] = [kind, "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    return out


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    path = reference_dir() / SPEC_NAME
    if not path.is_file():
        pytest.skip(f"Metronome OpenAPI spec not found at {path} (set CRMSYNC_REFERENCE_DIR)")
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


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


def test_every_response_body_matches_the_spec(
    spec: dict[str, Any], recorded: tuple[metronome.Metronome, list[Any]]
) -> None:
    client, responses = recorded
    _drive_every_endpoint(client)

    validated: set[str] = set()
    for method, path, status, body in responses:
        found = match(method, path)
        assert found is not None, f"{method} {path}"
        template = found[0].template
        operation = spec["paths"][template][method.lower()]
        declared = operation["responses"].get(str(status))
        assert declared is not None, f"{method} {template} answered undeclared {status}"
        declared = _openapi_to_jsonschema(declared, spec)  # responses may be $refs too
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
    }
    assert validated == every_route_with_a_body
