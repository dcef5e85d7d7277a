"""The demo's seeded world: the Salesforce org and the one customer made by hand.

About fifty won accounts over every billing provider, a parent with two children (hierarchy
roll-up on), one account whose customer was already made by hand in Metronome (it must be
adopted, not duplicated), and two accounts whose data cannot make a valid customer (they must
dead-letter while the rest proceeds). The benchmark and the chaos run seed with the same
``provider_fields`` (worker/sandbox/billing.py) and ``deal_terms``, so their records are as
valid as the demo's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from metronome import Metronome

from worker.sandbox.billing import PROVIDERS, provider_fields
from worker.sandbox.stack import SANDBOX_METRONOME_TOKEN, SandboxStack

STANDALONE_ACCOUNTS = 48
HANDMADE_ALIAS = "ops@handmade.example"
#: Rate card aliases the Metronome emulator is seeded with; each won deal names one, so each
#: becomes a contract (the default mapping's rule). Every third deal is evergreen.
RATE_CARDS = ("standard", "enterprise", "startup")
#: Won deals that get a contract in pass 1: the standalone accounts, the roll-up parent's and
#: its EU child's deals (both on the parent's customer), and the hand-made customer's.
CONTRACTS_FIRST_PASS = STANDALONE_ACCOUNTS + 3


def deal_terms(n: int) -> dict[str, Any]:
    """The contract fields of the ``n``-th won deal: a rate card, and a 12- or 24-month term
    (every third deal evergreen)."""
    terms: dict[str, Any] = {"Metronome_Rate_Card__c": RATE_CARDS[n % len(RATE_CARDS)]}
    if n % 3:
        terms["Contract_Term_Months__c"] = 12 * (n % 3)
    return terms


def seed(stack: SandboxStack) -> None:
    sf = stack.salesforce
    assert sf is not None  # noqa: S101

    def account(name: str, email: str | None, n: int, **extra: Any) -> str:
        fields = {"Name": name, "Billing_Email__c": email, **provider_fields(PROVIDERS[n % 6], n)}
        return sf.insert("Account", {**fields, **extra})

    deals = iter(range(1000))

    def won(account_id: str, name: str) -> None:
        n = next(deals)
        sf.insert(
            "Opportunity",
            {
                "AccountId": account_id,
                "Name": name,
                "StageName": "Closed Won",
                "CloseDate": "2026-11-20",
                "Amount": 12000,
                **deal_terms(n),
            },
        )

    for n in range(STANDALONE_ACCOUNTS):
        won(account(f"Demo Customer {n:02d}", f"billing+{n:02d}@demo.example", n), "Renewal")
    parent = account("Enterprise Holdings", "ap@enterprise.example", 0)
    won(parent, "Enterprise agreement")
    for region in ("EU", "US"):
        child = account(f"Enterprise {region}", f"{region.lower()}@enterprise.example", 1)
        sf.update("Account", child, {"ParentId": parent})
        if region == "EU":
            won(child, f"Enterprise {region} expansion")
    won(account("Handmade Corp", HANDMADE_ALIAS, 3), "First order")
    # Two records that cannot make a valid customer: an AWS region outside the API's list,
    # and an ingest alias longer than Metronome's 128 characters.
    bad_region = account("Bad Region Ltd", "bad-region@demo.example", 0)
    sf.update("Account", bad_region, {"AWS_Region__c": "mars-north-1"})
    won(bad_region, "Doomed")
    won(account("Long Alias Ltd", "x" * 140 + "@demo.example", 5), "Doomed too")


def demo_mapping(path: Path) -> Path:
    """The default mapping with hierarchy roll-up switched on (the demo shows it)."""
    from importlib.resources import files

    data = yaml.safe_load(files("mappings").joinpath("default.yaml").read_text("utf-8"))
    data["hierarchy_rollup"]["enabled"] = True
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def make_customer_by_hand(stack: SandboxStack) -> None:
    assert stack.metronome is not None  # noqa: S101
    client = Metronome(bearer_token=SANDBOX_METRONOME_TOKEN, base_url=stack.metronome.url)
    client.v1.customers.create(
        name="Handmade (entered in the app)", ingest_aliases=[HANDMADE_ALIAS]
    )
    client.close()
