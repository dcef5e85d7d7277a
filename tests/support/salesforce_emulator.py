"""The Salesforce emulator as fixtures: a fresh emulator per test and clients that talk to it
over real HTTP; and the small helpers those tests share.

The fixtures reach a test directory through its conftest.py (tests/salesforce/ for our client,
tests/sandbox/salesforce/ for the emulator itself): each imports them from here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, cast

import pytest
from simple_salesforce.api import Salesforce, SFType
from simple_salesforce.exceptions import SalesforceError

from worker.sandbox.salesforce import SalesforceEmulator
from worker.sandbox.salesforce.client import build_sandbox_salesforce

#: The field list a mapping would ask for (relationship fields included).
MAPPING_FIELDS = [
    "Id",
    "Name",
    "StageName",
    "Amount",
    "Account.Name",
    "Account.Billing_Provider__c",
    "Account.Stripe_Customer_Id__c",
    "Account.Parent.Id",
    "Account.Parent.Parent.Id",
]


def sobject(sf: Salesforce, name: str) -> SFType:
    """``sf.Account`` typed as what it is at run time (its stub says "SFType or bulk")."""
    return cast(SFType, getattr(sf, name))


def error_code(exc: SalesforceError) -> str:
    """The ``errorCode`` of Salesforce's error-list body."""
    content = cast(Any, exc.content)
    return str(content[0]["errorCode"])


@pytest.fixture
def emulator() -> Iterator[SalesforceEmulator]:
    with SalesforceEmulator() as emu:
        yield emu


@pytest.fixture
def make_client(emulator: SalesforceEmulator) -> Iterator[Callable[[], Salesforce]]:
    clients: list[Salesforce] = []

    def make() -> Salesforce:
        sf = build_sandbox_salesforce(emulator.url)
        clients.append(sf)
        return sf

    yield make
    for sf in clients:
        sf.session.close()


@pytest.fixture
def sf(make_client: Callable[[], Salesforce]) -> Salesforce:
    return make_client()
