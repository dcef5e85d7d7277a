"""The benchmark's org: N won accounts that all map cleanly, closed over the past year.

Clean on purpose: the seed data of ``worker.sandbox.salesforce.seed`` is awkward (broken
provider ids, 255-character names) so that tests catch bugs; here every account must become a
customer, or "calls per account" would be diluted by dead letters that make no call.

Back-dated on purpose: a real backfill reads deals won over months, not in the last second.
Stamped "now", all 10,000 rows would sit inside the poll's look-back overlap (300 s) and the
re-run would re-read every one of them; that case is measured separately (``full re-read``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from worker.sandbox.billing import PROVIDERS, provider_fields
from worker.sandbox.salesforce.emulator import SalesforceEmulator

HISTORY = timedelta(days=365)


def account_fields(n: int, prefix: str = "Bench") -> dict[str, Any]:
    provider = PROVIDERS[n % len(PROVIDERS)]
    return {
        "Name": f"{prefix} Customer {n:06d}",
        "Billing_Email__c": f"billing+{prefix.lower()}{n:06d}@bench.example",
        **provider_fields(provider, n, tag="bench"),
    }


def seed_won_accounts(
    salesforce: SalesforceEmulator,
    count: int,
    *,
    now: datetime | None = None,
    rate_card: str | None = None,
) -> list[str]:
    """``count`` accounts, each with one Closed Won deal, stamped evenly over HISTORY.

    With ``rate_card`` each deal names it, so each becomes a contract too (the default
    mapping's rule); without, the benchmark measures customers alone."""
    end = (now or datetime.now(UTC)) - timedelta(hours=1)
    step = HISTORY / max(1, count)
    ids: list[str] = []
    for n in range(count):
        stamp = end - HISTORY + step * n
        account_id = salesforce.insert("Account", account_fields(n), late_commit_at=stamp)
        salesforce.insert(
            "Opportunity",
            {
                "AccountId": account_id,
                "Name": "Annual plan",
                "StageName": "Closed Won",
                "CloseDate": stamp.date().isoformat(),
                "Amount": 12_000,
                **({"Metronome_Rate_Card__c": rate_card} if rate_card else {}),
            },
            late_commit_at=stamp,
        )
        ids.append(account_id)
    return ids
