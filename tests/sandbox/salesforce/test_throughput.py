"""How fast the emulator serves a big query: measured and printed, never asserted on time.

The benchmark and ``crmsync demo`` lean on the emulator for 100k-row orgs; this keeps the
number visible in the test log (``pytest -s`` or ``-rP``) and proves the row count is right.
"""

from __future__ import annotations

import json
import time

from simple_salesforce.api import Salesforce

from tests.support.salesforce_emulator import MAPPING_FIELDS
from worker.salesforce.queries import select_list
from worker.sandbox.salesforce import SalesforceEmulator


def test_rows_per_second_for_a_100k_row_query(emulator: SalesforceEmulator, sf: Salesforce) -> None:
    started = time.perf_counter()
    emulator.seed(50_000, seed=1)  # 1-3 opportunities per account: ~100k rows
    seeded_s = time.perf_counter() - started
    total = len(emulator.ids("Opportunity"))
    soql = "SELECT " + select_list(MAPPING_FIELDS) + " FROM Opportunity ORDER BY SystemModstamp, Id"  # noqa: S608 -- constant test SOQL
    started = time.perf_counter()
    rows = sum(1 for _ in sf.query_all_iter(soql))
    elapsed = time.perf_counter() - started
    assert rows == total > 95_000
    print(
        json.dumps(
            {
                "salesforce_emulator_rows": rows,
                "seconds": round(elapsed, 2),
                "rows_per_s": round(rows / elapsed),
                "pages": emulator.request_counts().get("query_more 200", 0) + 1,
                "seed_s": round(seeded_s, 2),
            }
        )
    )
