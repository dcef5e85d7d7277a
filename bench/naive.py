"""The baseline: the script teams write first, run on the same org in the same benchmark.

For each won opportunity: create the customer, ignore a 409. It reads every won row every
time (no cursor), makes one create per row (no dedupe, no batched find) and treats "alias
already taken" as "already done". To compare only the *strategy*, its request bodies are the
ones crmsync would send (the same mapping, via the pure planner): same customers, same billing
configurations, same payload sizes.

Runs as its own process (``python -m bench.naive SF_URL METRONOME_URL TOKEN``), as such a
script would, against a Metronome emulator of its own, so its customers never meet crmsync's.
Calls are counted by the emulators, not by this script.
"""

from __future__ import annotations

import json
import sys
import time

import httpx
import metronome

from mappings import MappingError, load_default_mapping
from worker.metronome.plan import CreateCustomer, plan_sync
from worker.salesforce.queries import select_list, won_changed_since
from worker.salesforce.source import strip_attributes
from worker.sandbox.salesforce.client import build_sandbox_salesforce


def run(salesforce_url: str, metronome_url: str, token: str) -> dict[str, float]:
    started = time.perf_counter()
    mapping = load_default_mapping()
    sf = build_sandbox_salesforce(salesforce_url)
    created = conflicts = skipped = 0
    with httpx.Client(timeout=30) as http:
        client = metronome.Metronome(
            bearer_token=token, base_url=metronome_url, max_retries=0, http_client=http
        )
        # The custom field the bodies carry must exist (the script's one piece of set-up).
        client.v1.custom_fields.add_key(
            entity="customer", key="sfdc_account_id", enforce_uniqueness=True
        )
        soql = won_changed_since(select_list(mapping.opportunity_fields()), None)
        for row in sf.query_all_iter(soql):
            try:
                desired = mapping.map_record(strip_attributes(row))
            except MappingError:
                skipped += 1
                continue
            step = plan_sync(desired, None).steps[0]
            assert isinstance(step, CreateCustomer)  # noqa: S101 - nothing exists to update
            try:
                client.v1.customers.create(**step.body())
                created += 1
            except metronome.ConflictError:
                conflicts += 1
    return {
        "created": created,
        "conflicts": conflicts,
        "skipped": skipped,
        "seconds": round(time.perf_counter() - started, 3),
    }


if __name__ == "__main__":
    print(json.dumps(run(sys.argv[1], sys.argv[2], sys.argv[3])))
