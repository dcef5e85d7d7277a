"""The emulator refuses what Metronome refuses, over raw HTTP (httpx, no SDK in between)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.metronome_emulator import TOKEN
from worker.sandbox.metronome import MetronomeEmulator, MetronomeFaults


@pytest.fixture
def http(emulator: MetronomeEmulator) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=emulator.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5
    ) as client:
        yield client


@pytest.fixture
def keys(http: httpx.Client) -> None:
    for key, unique in (("sfdc_account_id", True), ("tier", False)):
        answer = http.post(
            "/v1/customFields/addKey",
            json={"entity": "customer", "key": key, "enforce_uniqueness": unique},
        )
        assert answer.status_code == 200


def create(http: httpx.Client, **body: Any) -> httpx.Response:
    return http.post("/v1/customers", json={"name": "Acme", **body})


def test_bearer_token_is_required(emulator: MetronomeEmulator) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        answer = httpx.get(f"{emulator.url}/v1/customers", headers=headers)
        assert answer.status_code == 401
        assert answer.json() == {"message": "Unauthorized"}


def test_name_is_truncated_to_160(http: httpx.Client) -> None:
    answer = create(http, name="x" * 300)
    assert answer.status_code == 200
    assert answer.json()["data"]["name"] == "x" * 160


def test_alias_is_unique_across_customers_archived_included(http: httpx.Client) -> None:
    first = create(http, ingest_aliases=["a"]).json()["data"]["id"]
    assert http.post("/v1/customers/archive", json={"id": first}).status_code == 200
    answer = create(http, ingest_aliases=["b", "a"])
    assert answer.status_code == 409
    assert answer.json()["conflicting_id"] == first
    assert "message" in answer.json()


def test_set_ingest_aliases_replaces_the_set_and_checks_owners(http: httpx.Client) -> None:
    one = create(http, ingest_aliases=["a", "b"]).json()["data"]["id"]
    two = create(http, ingest_aliases=["c"]).json()["data"]["id"]
    assert (
        http.post(
            f"/v1/customers/{one}/setIngestAliases", json={"ingest_aliases": ["b", "d"]}
        ).status_code
        == 200
    )
    taken = http.post(f"/v1/customers/{two}/setIngestAliases", json={"ingest_aliases": ["d"]})
    assert (taken.status_code, taken.json()["conflicting_id"]) == (409, one)
    # "a" was released by the replacement, so another customer may take it.
    assert (
        http.post(
            f"/v1/customers/{two}/setIngestAliases", json={"ingest_aliases": ["a"]}
        ).status_code
        == 200
    )
    assert http.get(f"/v1/customers/{one}").json()["data"]["ingest_aliases"] == ["b", "d"]


@pytest.mark.usefixtures("keys")
def test_custom_field_rules(http: httpx.Client) -> None:
    unknown = create(http, custom_fields={"nope": "1"})
    assert unknown.status_code == 400
    assert "not registered" in unknown.json()["message"]
    too_long = create(http, custom_fields={"tier": "x" * 201})
    assert too_long.status_code == 400
    first = create(http, custom_fields={"sfdc_account_id": "001A"}).json()["data"]["id"]
    assert create(http, custom_fields={"sfdc_account_id": "001A"}).status_code == 409
    second = create(http).json()["data"]["id"]
    clash = http.post(
        "/v1/customFields/setValues",
        json={
            "entity": "customer",
            "entity_id": second,
            "custom_fields": {"sfdc_account_id": "001A"},
        },
    )
    assert (clash.status_code, clash.json()["conflicting_id"]) == (409, first)
    ok = http.post(
        "/v1/customFields/setValues",
        json={"entity": "customer", "entity_id": second, "custom_fields": {"tier": "gold"}},
    )
    assert ok.status_code == 200
    assert http.get(f"/v1/customers/{second}").json()["data"]["custom_fields"] == {"tier": "gold"}
    http.post(
        "/v1/customFields/deleteValues",
        json={"entity": "customer", "entity_id": second, "keys": ["tier"]},
    )
    assert http.get(f"/v1/customers/{second}").json()["data"]["custom_fields"] == {}
    assert (
        http.post(
            "/v1/customFields/removeKey", json={"entity": "customer", "key": "tier"}
        ).status_code
        == 200
    )
    keys = http.post("/v1/customFields/listKeys", json={"entities": ["customer"]}).json()["data"]
    assert [k["key"] for k in keys] == ["sfdc_account_id"]


def test_list_filters_and_pages(http: httpx.Client) -> None:
    ids = [
        create(http, name=f"c{n}", ingest_aliases=[f"a{n}"]).json()["data"]["id"] for n in range(5)
    ]
    http.post(f"/v1/customers/{ids[0]}/updateConfig", json={"salesforce_account_id": "001A"})
    http.post(f"/v1/customers/{ids[1]}/updateConfig", json={"salesforce_account_id": "001B"})
    http.post("/v1/customers/archive", json={"id": ids[4]})

    def listed(**params: Any) -> list[str]:
        return [c["id"] for c in http.get("/v1/customers", params=params).json()["data"]]

    assert listed(ingest_alias="a2") == [ids[2]]
    assert listed(salesforce_account_ids="001A,001B,001C") == ids[:2]
    assert listed(customer_ids=f"{ids[3]},{ids[4]}") == [ids[3]]  # archived hidden by default
    assert listed(only_archived="true") == [ids[4]]
    first = http.get("/v1/customers", params={"limit": 3}).json()
    assert len(first["data"]) == 3 and first["next_page"]
    rest = http.get("/v1/customers", params={"limit": 3, "next_page": first["next_page"]}).json()
    assert [c["id"] for c in first["data"] + rest["data"]] == ids[:4]
    assert rest["next_page"] is None
    too_many = ",".join(f"id{n}" for n in range(101))
    assert http.get("/v1/customers", params={"salesforce_account_ids": too_many}).status_code == 400
    assert http.get("/v1/customers", params={"limit": 101}).status_code == 400


def test_billing_configurations_validate_append_and_archive(http: httpx.Client) -> None:
    customer = create(http).json()["data"]["id"]
    good = {
        "customer_id": customer,
        "billing_provider": "aws_marketplace",
        "delivery_method": "aws_sqs",
        "configuration": {
            "aws_customer_id": "a",
            "aws_product_code": "p",
            "aws_region": "us-east-1",
        },
    }
    missing = dict(good, configuration={"aws_customer_id": "a"})
    answer = http.post("/v1/setCustomerBillingProviderConfigurations", json={"data": [missing]})
    assert answer.status_code == 400
    assert "aws_product_code" in answer.json()["message"]
    bad_method = dict(good, delivery_method="email")
    assert (
        http.post(
            "/v1/setCustomerBillingProviderConfigurations", json={"data": [bad_method]}
        ).status_code
        == 400
    )
    for _ in range(2):  # appends: the same configuration twice is two configurations
        assert (
            http.post(
                "/v1/setCustomerBillingProviderConfigurations", json={"data": [good]}
            ).status_code
            == 200
        )
    listed = http.post(
        "/v1/getCustomerBillingProviderConfigurations", json={"customer_id": customer}
    ).json()["data"]
    assert len(listed) == 2
    archived = http.post(
        "/v1/archiveCustomerBillingProviderConfigurations",
        json={
            "customer_id": customer,
            "customer_billing_provider_configuration_ids": [listed[0]["id"]],
        },
    )
    assert archived.status_code == 200
    live = http.post(
        "/v1/getCustomerBillingProviderConfigurations", json={"customer_id": customer}
    ).json()["data"]
    every = http.post(
        "/v1/getCustomerBillingProviderConfigurations",
        json={"customer_id": customer, "include_archived": True},
    ).json()["data"]
    assert [c["id"] for c in live] == [listed[1]["id"]]
    assert len(every) == 2


def test_idempotency_key_replays_the_first_answer_even_a_500(
    emulator: MetronomeEmulator, http: httpx.Client
) -> None:
    emulator.set_faults(MetronomeFaults(server_error_rate=1.0))
    headers = {"Idempotency-Key": "k-1"}
    failed = http.post("/v1/customers", json={"name": "A"}, headers=headers)
    assert failed.status_code == 500
    emulator.set_faults(MetronomeFaults())
    replay = http.post("/v1/customers", json={"name": "A"}, headers=headers)
    assert (replay.status_code, replay.json()) == (500, failed.json())
    assert emulator.customers() == []

    made = http.post("/v1/customers", json={"name": "B"}, headers={"Idempotency-Key": "k-2"})
    again = http.post("/v1/customers", json={"name": "B"}, headers={"Idempotency-Key": "k-2"})
    assert again.json() == made.json()
    other = http.post("/v1/customers", json={"name": "C"}, headers={"Idempotency-Key": "k-2"})
    assert other.status_code == 409
    assert len(emulator.customers()) == 1


def test_commit_then_drop_writes_but_answers_nothing(
    emulator: MetronomeEmulator, http: httpx.Client
) -> None:
    emulator.set_faults(MetronomeFaults(commit_then_drop_rate=1.0))
    with pytest.raises(httpx.TransportError):
        http.post("/v1/customers", json={"name": "A"}, headers={"Idempotency-Key": "k"})
    [customer] = emulator.customers()
    replay = http.post("/v1/customers", json={"name": "A"}, headers={"Idempotency-Key": "k"})
    assert replay.json()["data"]["id"] == customer["id"]
    assert emulator.request_counts() == {"POST /v1/customers DROP": 1, "POST /v1/customers 200": 1}


def test_rate_limit_answers_429_with_headers(
    emulator: MetronomeEmulator, http: httpx.Client
) -> None:
    emulator.set_faults(MetronomeFaults(rate_limit_rps=1))
    statuses = [http.get("/v1/customers") for _ in range(3)]
    assert statuses[0].status_code == 200
    limited = statuses[-1]
    assert limited.status_code == 429
    assert limited.headers["X-Metronome-Rate-Limit-Type"] == "client"
    assert int(limited.headers["Retry-After"]) >= 1
    assert emulator.faults_injected()["rate_limited"] >= 1


def test_sandbox_endpoints_inspect_control_and_skip_faults(
    emulator: MetronomeEmulator, http: httpx.Client
) -> None:
    create(http, ingest_aliases=["a"])
    set_faults = http.post("/_sandbox/faults", json={"server_error_rate": 1.0, "latency_s": 0.01})
    assert set_faults.json()["faults"]["server_error_rate"] == 1.0
    assert create(http).status_code == 500
    customers = http.get("/_sandbox/customers").json()["data"]  # no fault on /_sandbox
    assert [c["ingest_aliases"] for c in customers] == [["a"]]
    requests = http.get("/_sandbox/requests").json()
    assert requests["counts"] == {"POST /v1/customers 200": 1, "POST /v1/customers 500": 1}
    assert requests["faults_injected"] == {"server_error": 1, "latency": 1}
    assert http.get("/_sandbox/billing-configurations").json() == {"data": []}
    assert http.post("/_sandbox/reset").status_code == 200
    assert emulator.customers() == [] and emulator.total_requests() == 0
    assert create(http).status_code == 200  # reset also clears the faults


def test_unknown_customer_is_404(http: httpx.Client) -> None:
    answer = http.get("/v1/customers/00000000-0000-0000-0000-000000000000")
    assert answer.status_code == 404
    assert "not found" in answer.json()["message"]


@pytest.mark.usefixtures("keys")
def test_a_unique_value_is_free_again_once_changed_or_deleted(http: httpx.Client) -> None:
    def set_values(customer: str, value: str) -> httpx.Response:
        return http.post(
            "/v1/customFields/setValues",
            json={
                "entity": "customer",
                "entity_id": customer,
                "custom_fields": {"sfdc_account_id": value},
            },
        )

    first = create(http, custom_fields={"sfdc_account_id": "001U"}).json()["data"]["id"]
    assert set_values(first, "001U").status_code == 200  # its own value: no conflict
    assert set_values(first, "001V").status_code == 200
    # 001U is free now, 001V is taken.
    second = create(http, custom_fields={"sfdc_account_id": "001U"}).json()["data"]["id"]
    assert (set_values(second, "001V").json().get("conflicting_id")) == first
    http.post(
        "/v1/customFields/deleteValues",
        json={"entity": "customer", "entity_id": first, "keys": ["sfdc_account_id"]},
    )
    assert set_values(second, "001V").status_code == 200
    assert create(http, custom_fields={"sfdc_account_id": "001U"}).status_code == 200
