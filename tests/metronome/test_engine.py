"""The upsert engine against the emulator over real HTTP with the real SDK.

Call counts come from the emulator's request log: they are behaviour (how many requests a
sync costs, that nothing is written twice), not timing.
"""

from __future__ import annotations

from collections import Counter

import pytest

from mappings.desired import BillingProviderConfiguration
from tests.support.metronome_emulator import STRIPE, TOKEN, make_desired
from worker.metronome import InMemoryGenerations, MetronomeGateway, UpsertEngine
from worker.metronome.errors import PermanentError, TransientError, UnresolvableConflictError
from worker.sandbox.metronome import MetronomeEmulator, MetronomeFaults

LIST = "GET /v1/customers 200"
RETRIEVE = "GET /v1/customers/{customer_id} 200"
CREATE = "POST /v1/customers 200"
LINK = "POST /v1/customers/{customer_id}/updateConfig 200"
SET_NAME = "POST /v1/customers/{customer_id}/setName 200"
SET_ALIASES = "POST /v1/customers/{customer_id}/setIngestAliases 200"
SET_VALUES = "POST /v1/customFields/setValues 200"
GET_BILLING = "POST /v1/getCustomerBillingProviderConfigurations 200"
SET_BILLING = "POST /v1/setCustomerBillingProviderConfigurations 200"


def counts_during(emulator: MetronomeEmulator, before: dict[str, int]) -> dict[str, int]:
    delta = Counter(emulator.request_counts())
    delta.subtract(before)
    return {k: v for k, v in delta.items() if v}


def test_new_account_is_one_find_one_create_one_link(
    emulator: MetronomeEmulator, engine: UpsertEngine
) -> None:
    before = emulator.request_counts()
    outcome = engine.sync(make_desired(aliases=("acme-prod",)))

    assert counts_during(emulator, before) == {LIST: 1, CREATE: 1, LINK: 1}
    assert outcome.calls == 3
    assert outcome.created
    assert outcome.changes == ("create", "updateConfig")
    [customer] = emulator.customers()
    assert customer["id"] == outcome.customer_id
    assert customer["customer_config"]["salesforce_account_id"] == "001000000000001AAA"
    assert customer["custom_fields"] == {"sfdc_account_id": "001000000000001AAA"}
    assert customer["ingest_aliases"] == ["sfdc:001000000000001AAA", "acme-prod"]


def test_unchanged_desired_state_makes_no_writes(
    emulator: MetronomeEmulator, engine: UpsertEngine
) -> None:
    desired = make_desired(name="N" * 200)  # stored truncated: must not look renamed
    first = engine.sync(desired)

    before = emulator.request_counts()
    again = engine.sync(desired)
    assert counts_during(emulator, before) == {LIST: 1}
    assert (again.changes, again.calls, again.created) == ((), 1, False)

    before = emulator.request_counts()
    cached = engine.sync(desired, cached_customer_id=first.customer_id)
    assert counts_during(emulator, before) == {RETRIEVE: 1}
    assert cached.customer_id == first.customer_id


def test_rename_is_set_name_only(emulator: MetronomeEmulator, engine: UpsertEngine) -> None:
    first = engine.sync(make_desired(name="Acme"))
    before = emulator.request_counts()
    outcome = engine.sync(make_desired(name="Acme Inc"), cached_customer_id=first.customer_id)

    assert counts_during(emulator, before) == {RETRIEVE: 1, SET_NAME: 1}
    assert outcome.changes == ("setName",)
    assert emulator.customers()[0]["name"] == "Acme Inc"


def test_new_alias_keeps_the_union(
    emulator: MetronomeEmulator, engine: UpsertEngine, gateway: MetronomeGateway
) -> None:
    first = engine.sync(make_desired(aliases=("a1",)))
    # Someone adds an alias by hand in the Metronome app: a sync must never drop it.
    gateway.set_ingest_aliases(
        first.customer_id, ["sfdc:001000000000001AAA", "a1", "manual"], key="by-hand"
    )
    before = emulator.request_counts()
    outcome = engine.sync(make_desired(aliases=("a2", "a3")))

    assert counts_during(emulator, before) == {LIST: 1, SET_ALIASES: 1}
    assert outcome.changes == ("setIngestAliases +2",)
    assert emulator.customers()[0]["ingest_aliases"] == [
        "sfdc:001000000000001AAA",
        "a1",
        "manual",
        "a2",
        "a3",
    ]


def test_hand_made_customer_with_matching_alias_is_adopted_and_linked(
    emulator: MetronomeEmulator, engine: UpsertEngine, gateway: MetronomeGateway
) -> None:
    hand_made = gateway.create_customer({"name": "Acme", "ingest_aliases": ["acme-prod"]}, key="h")
    before = emulator.request_counts()
    outcome = engine.sync(make_desired(name="Acme", aliases=("acme-prod",)))

    assert counts_during(emulator, before) == {
        LIST: 1,
        "POST /v1/customers 409": 1,
        RETRIEVE: 1,  # the 409's conflicting_id
        LINK: 1,
        SET_ALIASES: 1,
        SET_VALUES: 1,
    }
    assert outcome.customer_id == hand_made
    assert not outcome.created
    [customer] = emulator.customers()
    assert customer["customer_config"]["salesforce_account_id"] == "001000000000001AAA"
    assert customer["ingest_aliases"] == ["acme-prod", "sfdc:001000000000001AAA"]


def test_commit_then_drop_on_create_still_one_customer(
    emulator: MetronomeEmulator, engine: UpsertEngine
) -> None:
    emulator.set_faults(MetronomeFaults(commit_then_drop_rate=1.0))
    before = emulator.request_counts()
    outcome = engine.sync(make_desired())

    # Each write commits, the connection drops, the same Idempotency-Key replays the answer.
    assert counts_during(emulator, before) == {
        LIST: 1,
        "POST /v1/customers DROP": 1,
        CREATE: 1,
        "POST /v1/customers/{customer_id}/updateConfig DROP": 1,
        LINK: 1,
    }
    assert len(emulator.customers()) == 1
    assert outcome.customer_id == emulator.customers()[0]["id"]
    assert emulator.faults_injected() == {"commit_then_drop": 2}


def test_unanswered_create_is_found_by_identity_alias_not_repeated(
    emulator: MetronomeEmulator,
) -> None:
    # No transport retries: the engine itself must re-read instead of creating again.
    gateway = MetronomeGateway(TOKEN, emulator.url, max_attempts=1, retry_immediately=True)
    engine = UpsertEngine(gateway, InMemoryGenerations())
    engine.bootstrap()
    emulator.set_faults(MetronomeFaults(commit_then_drop_rate=1.0))
    before = emulator.request_counts()
    outcome = engine.sync(make_desired())

    assert counts_during(emulator, before) == {
        LIST: 3,  # find by account; after the lost create: by account, then identity alias
        "POST /v1/customers DROP": 1,
        "POST /v1/customers/{customer_id}/updateConfig DROP": 1,
        RETRIEVE: 1,  # after the lost link: by the id we now know
    }
    [customer] = emulator.customers()
    assert customer["customer_config"]["salesforce_account_id"] == "001000000000001AAA"
    assert (outcome.customer_id, outcome.created) == (customer["id"], True)
    assert outcome.rounds == 3
    gateway.close()


def test_server_error_bumps_the_generation_so_the_cached_500_is_not_replayed(
    emulator: MetronomeEmulator, engine: UpsertEngine, generations: InMemoryGenerations
) -> None:
    emulator.set_faults(MetronomeFaults(server_error_rate=1.0))
    before = emulator.request_counts()
    with pytest.raises(TransientError):
        engine.sync(make_desired(), searched=True)  # the create 500s, the re-read too
    assert generations.current("001000000000001AAA") == 1
    assert counts_during(emulator, before) == {
        "POST /v1/customers 500": 1,  # a POST's 5xx is never resent under the same key
        "GET /v1/customers 500": 5,  # a GET's is, up to max_attempts
    }

    emulator.set_faults(MetronomeFaults())
    outcome = engine.sync(make_desired(), searched=True)
    assert outcome.created  # a new Idempotency-Key: Metronome did not replay the 500
    assert len(emulator.customers()) == 1


def test_conflict_on_create_adopts_the_existing_customer(
    emulator: MetronomeEmulator, engine: UpsertEngine, gateway: MetronomeGateway
) -> None:
    # A crashed earlier sync created the customer but never linked it.
    existing = gateway.create_customer(
        {
            "name": "Acme Corp",
            "ingest_aliases": ["sfdc:001000000000001AAA"],
            "custom_fields": {"sfdc_account_id": "001000000000001AAA"},
        },
        key="crashed-run",
    )
    before = emulator.request_counts()
    outcome = engine.sync(make_desired())

    assert counts_during(emulator, before) == {
        LIST: 1,
        "POST /v1/customers 409": 1,
        RETRIEVE: 1,
        LINK: 1,
    }
    assert outcome.customer_id == existing
    assert outcome.changes == ("updateConfig",)
    assert len(emulator.customers()) == 1


def test_alias_owned_by_another_accounts_customer_is_a_permanent_conflict(
    emulator: MetronomeEmulator, engine: UpsertEngine
) -> None:
    other = engine.sync(make_desired(account="001000000000002AAA", aliases=("shared",)))
    ours = engine.sync(make_desired())

    with pytest.raises(UnresolvableConflictError) as caught:
        engine.sync(make_desired(aliases=("shared",)))

    assert ours.customer_id in str(caught.value)
    assert other.customer_id in str(caught.value)
    assert set(caught.value.customer_ids) == {ours.customer_id, other.customer_id}
    by_id = {c["id"]: c["ingest_aliases"] for c in emulator.customers()}
    assert by_id[other.customer_id] == ["sfdc:001000000000002AAA", "shared"]  # never moved
    assert by_id[ours.customer_id] == ["sfdc:001000000000001AAA"]


def test_bad_request_is_permanent_and_carries_the_api_message(
    emulator: MetronomeEmulator, engine: UpsertEngine
) -> None:
    broken = BillingProviderConfiguration(
        billing_provider="stripe",
        delivery_method="direct_to_billing_provider",
        configuration={"stripe_customer_id": "cus_1"},
    )
    before = emulator.request_counts()
    with pytest.raises(PermanentError) as caught:
        engine.sync(make_desired(billing=(broken,)))

    assert caught.value.status == 400
    assert "stripe configuration is missing stripe_collection_method" in str(caught.value)
    assert counts_during(emulator, before) == {LIST: 1, "POST /v1/customers 400": 1}
    assert emulator.customers() == []


def test_mapped_billing_configuration_already_present_is_not_added_again(
    emulator: MetronomeEmulator, engine: UpsertEngine, gateway: MetronomeGateway
) -> None:
    # Added by hand (or by an earlier sync) after the customer was created without it.
    first = engine.sync(make_desired())
    gateway.set_billing_configurations(
        first.customer_id,
        [
            {
                "billing_provider": "stripe",
                "delivery_method": "direct_to_billing_provider",
                "configuration": dict(STRIPE.configuration),
            }
        ],
        key="by-hand",
    )
    before = emulator.request_counts()
    outcome = engine.sync(make_desired(billing=(STRIPE,)), cached_customer_id=first.customer_id)

    assert counts_during(emulator, before) == {RETRIEVE: 1, GET_BILLING: 1}
    assert outcome.changes == ()
    assert len(emulator.billing_configurations()) == 1


def test_missing_billing_configuration_is_added_once(
    emulator: MetronomeEmulator, engine: UpsertEngine
) -> None:
    first = engine.sync(make_desired())
    outcome = engine.sync(make_desired(billing=(STRIPE,)), cached_customer_id=first.customer_id)
    again = engine.sync(make_desired(billing=(STRIPE,)), cached_customer_id=first.customer_id)

    assert outcome.changes == ("setCustomerBillingProviderConfigurations +1 stripe",)
    assert again.changes == ()
    assert len(emulator.billing_configurations()) == 1


def test_billing_configuration_created_inline_with_the_customer(
    emulator: MetronomeEmulator, engine: UpsertEngine
) -> None:
    outcome = engine.sync(make_desired(billing=(STRIPE,)))
    assert outcome.calls == 3
    [config] = emulator.billing_configurations()
    assert config["customer_id"] == outcome.customer_id
    assert config["configuration"] == STRIPE.configuration


def test_archives_only_providers_the_mapping_names(
    emulator: MetronomeEmulator, engine: UpsertEngine
) -> None:
    first = engine.sync(make_desired(billing=(STRIPE,)))
    kept = engine.sync(make_desired(), cached_customer_id=first.customer_id)
    assert kept.changes == ()  # a configuration missing from the mapping is left alone
    archived = engine.sync(
        make_desired(archive_billing_providers=("stripe",)), cached_customer_id=first.customer_id
    )
    assert archived.changes == ("archiveCustomerBillingProviderConfigurations 1 stripe",)
    assert emulator.billing_configurations()[0]["archived_at"] is not None


def test_find_many_batches_one_hundred_accounts_per_list(
    emulator: MetronomeEmulator, engine: UpsertEngine
) -> None:
    desired = [make_desired(account=f"001{n:012d}AAA") for n in range(150)]
    for item in desired[:3]:
        engine.sync(item)
    before = emulator.request_counts()
    found = engine.find_many(desired, {})

    assert counts_during(emulator, before) == {LIST: 2}
    assert sorted(k for k, v in found.items() if v is not None) == [
        d.salesforce_account_id for d in desired[:3]
    ]
    assert len(found) == 150


def test_converges_under_injected_5xx_and_429(emulator: MetronomeEmulator) -> None:
    # 36 % of requests fail: 10 attempts per call make a GET failing throughout rare (4e-5).
    gateway = MetronomeGateway(TOKEN, emulator.url, max_attempts=10, retry_immediately=True)
    generations = InMemoryGenerations()
    engine = UpsertEngine(gateway, generations, max_rounds=6)
    engine.bootstrap()
    emulator.set_faults(MetronomeFaults(server_error_rate=0.2, too_many_requests_rate=0.2, seed=3))
    desired = [make_desired(account=f"001{n:012d}AAA", aliases=(f"a{n}",)) for n in range(20)]
    outcomes = [engine.sync(item) for item in desired]

    injected = emulator.faults_injected()
    assert injected["server_error"] > 0
    assert injected["too_many_requests"] > 0
    assert any(generations.current(d.salesforce_account_id) > 0 for d in desired)
    customers = emulator.customers()
    assert len(customers) == 20
    assert {c["customer_config"]["salesforce_account_id"] for c in customers} == {
        d.salesforce_account_id for d in desired
    }
    total = sum(o.calls for o in outcomes)
    assert total == emulator.total_requests() - 2  # all but bootstrap's listKeys + addKey
    assert total <= 20 * 3 * 4  # bounded: at most 4x the fault-free 3 calls per account

    emulator.set_faults(MetronomeFaults())
    before = emulator.request_counts()
    for item in desired:
        assert engine.sync(item).changes == ()
    assert counts_during(emulator, before) == {LIST: 20}
    gateway.close()


def test_bootstrap_registers_the_identity_key_once(
    emulator: MetronomeEmulator, gateway: MetronomeGateway
) -> None:
    engine = UpsertEngine(gateway, InMemoryGenerations())
    engine.bootstrap()
    engine.bootstrap()
    assert emulator.custom_field_keys() == [
        {"entity": "customer", "key": "sfdc_account_id", "enforce_uniqueness": True}
    ]
    assert emulator.request_counts() == {
        "POST /v1/customFields/listKeys 200": 2,
        "POST /v1/customFields/addKey 200": 1,
    }


def test_batched_find_then_sync_skips_the_per_account_find(
    emulator: MetronomeEmulator, engine: UpsertEngine
) -> None:
    desired = [make_desired(account=f"001{n:012d}AAA") for n in range(3)]
    engine.sync(desired[0])
    before = emulator.request_counts()
    found = engine.find_many(desired, {})
    outcomes = [
        engine.sync(d, known=found[d.salesforce_account_id], searched=True) for d in desired
    ]

    assert counts_during(emulator, before) == {LIST: 1, CREATE: 2, LINK: 2}
    assert [o.created for o in outcomes] == [False, True, True]
    assert [o.calls for o in outcomes] == [0, 2, 2]


def test_find_many_answers_are_complete_enough_to_plan(
    emulator: MetronomeEmulator, engine: UpsertEngine
) -> None:
    engine.sync(make_desired(billing=(STRIPE,)))
    desired = make_desired(billing=(STRIPE,))
    before = emulator.request_counts()
    found = engine.find_many([desired], {})
    plan = engine.plan(desired, found[desired.salesforce_account_id])

    assert plan.is_noop
    assert counts_during(emulator, before) == {LIST: 1, GET_BILLING: 1}
