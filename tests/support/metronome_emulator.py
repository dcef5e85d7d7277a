"""The Metronome emulator as fixtures: one emulator per session (reset per test), the real SDK
through our gateway; and desired customers to sync against it.

The fixtures reach a test directory through its conftest.py (tests/metronome/ for the client,
tests/sandbox/metronome/ for the emulator itself): each imports them from here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from mappings.desired import BillingProviderConfiguration, DesiredCustomer
from worker.metronome import InMemoryGenerations, MetronomeGateway, UpsertEngine
from worker.sandbox.metronome import MetronomeEmulator

TOKEN = "test-token"


@pytest.fixture(scope="session")
def running_emulator() -> Iterator[MetronomeEmulator]:
    with MetronomeEmulator(token=TOKEN) as emulator:
        yield emulator


@pytest.fixture
def emulator(running_emulator: MetronomeEmulator) -> MetronomeEmulator:
    running_emulator.reset()
    return running_emulator


@pytest.fixture
def gateway(emulator: MetronomeEmulator) -> Iterator[MetronomeGateway]:
    gw = MetronomeGateway(TOKEN, emulator.url, timeout_s=5.0, retry_immediately=True)
    yield gw
    gw.close()


@pytest.fixture
def generations() -> InMemoryGenerations:
    return InMemoryGenerations()


@pytest.fixture
def engine(gateway: MetronomeGateway, generations: InMemoryGenerations) -> UpsertEngine:
    engine = UpsertEngine(gateway, generations)
    engine.bootstrap()
    return engine


def make_desired(
    account: str = "001000000000001AAA",
    name: str = "Acme Corp",
    aliases: tuple[str, ...] = (),
    billing: tuple[BillingProviderConfiguration, ...] = (),
    **extra: Any,
) -> DesiredCustomer:
    identity = f"sfdc:{account}"
    return DesiredCustomer(
        salesforce_account_id=account,
        name=name,
        ingest_aliases=(identity, *aliases),
        identity_alias=identity,
        custom_fields={"sfdc_account_id": account},
        billing_provider_configurations=billing,
        **extra,
    )


@pytest.fixture
def desired_factory() -> Callable[..., DesiredCustomer]:
    return make_desired


STRIPE = BillingProviderConfiguration(
    billing_provider="stripe",
    delivery_method="direct_to_billing_provider",
    configuration={
        "stripe_customer_id": "cus_123",
        "stripe_collection_method": "charge_automatically",
    },
)
