"""The chaos scenario in ``make test`` size, and the verdict's own logic.

The short run is the full one's shape (all fault kinds, a SIGKILL, a Redis restart and a
FLUSHALL, an expired Salesforce session, a Metronome and a Salesforce outage, deals closed
meanwhile) on ~100 accounts.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from bench.chaos import run_chaos
from bench.chaos_scenario import (
    KILL,
    METRONOME_DOWN,
    METRONOME_UP,
    REDIS_FLUSH,
    RESPAWN,
    SALESFORCE_DOWN,
    SALESFORCE_UP,
    ChaosConfig,
    schedule,
)
from bench.chaos_verify import Expected, expected_state, judge
from mappings import DesiredCustomer, MappingError, load_default_mapping
from tests.support.prewarmed import start_service

OUTAGE_KINDS = (METRONOME_DOWN, METRONOME_UP, SALESFORCE_DOWN, SALESFORCE_UP)
ACCOUNT = "001000000000001AAA"
OTHER = "001000000000002AAA"


@pytest.mark.integration
# About 2.5 minutes alone on 2 cores; the outage phase added about 40 s, and a machine shared
# with other test runs has taken 4.5 minutes.
@pytest.mark.timeout(600)
def test_short_chaos_run_has_no_duplicate_no_lost_close_and_no_drift() -> None:
    result = run_chaos(ChaosConfig(seed=11).short(), launcher=start_service)
    assert result["converged"], result
    assert (result["duplicates"], result["missing"], result["drifted"]) == (0, 0, 0), result
    assert (result["duplicate_contracts"], result["missing_contracts"]) == (0, 0), result
    assert result["contracts_expected"] > 0, result
    # Expansions edit their contract once, renewals transition from theirs once.
    lifecycle = ("duplicate_edits", "missing_edits", "duplicate_renewals")
    assert [result[k] for k in lifecycle] == [0, 0, 0], result
    assert result["edits_expected"] > 0 and result["renewals_expected"] > 0, result
    assert result["unattributed"] == 0 and result["dead_letters_unexpected"] == 0, result
    assert result["unmappable_not_dead_lettered"] == 0, result
    faults = result["faults_injected"]
    for kind in ("server_error", "too_many_requests", "commit_then_drop", "latency"):
        assert faults.get(kind, 0) > 0, (kind, faults)
    for kind in ("kill_worker", "restart_redis", "flushall", "expire_salesforce_sessions"):
        assert faults.get(kind) == 1, (kind, faults)
    for kind in ("metronome_outage_start", "salesforce_outage_start"):
        assert faults.get(kind) == 1, (kind, faults)
    assert faults.get("close_new_account", 0) > 0 and result["ok"] is True
    # The listener ran beside the poll through lost, late, duplicated and stalled events.
    for kind in ("suppress_change_events", "delay_change_events", "duplicate_change_events"):
        assert faults.get(kind, 0) > 0, (kind, faults)
    assert faults.get("stall_event_streams") == 1, faults
    assert result["listener"]["events_delivered"] > 0, result["listener"]
    assert result["listener"]["active"], result["listener"]
    # The outage phase: no dead letter (checked above), the parking empty at the end, and
    # the figures reported.
    assert result["parked_at_end"] == 0, result
    assert result["outage_requests_per_min"] is not None and result["recovery_s"] is not None


def test_the_schedule_is_a_pure_function_of_the_seed() -> None:
    config = ChaosConfig(seed=5)
    assert schedule(config) == schedule(config)
    assert schedule(config) != schedule(ChaosConfig(seed=6))
    events = schedule(config)
    kills = [e for e in events if e.kind == KILL]
    assert len(kills) == 2 and len([e for e in events if e.kind == RESPAWN]) == 2
    assert len([e for e in events if e.kind == REDIS_FLUSH]) == 1
    ends = (RESPAWN, METRONOME_UP, SALESFORCE_UP)  # an outage may end after the window
    assert all(2.0 <= e.at <= config.window_s for e in events if e.kind not in ends)
    [down] = [e for e in events if e.kind == METRONOME_DOWN]
    [up] = [e for e in events if e.kind == METRONOME_UP]
    assert up.at - down.at == config.metronome_outage_s
    # Adding the outage phase moved none of the other events (a seed replays the same run).
    quiet = replace(config, metronome_outage_s=0.0, salesforce_outage_s=0.0)
    assert [e for e in events if e.kind not in OUTAGE_KINDS] == schedule(quiet)


def desired(account: str = ACCOUNT, name: str = "Acme") -> DesiredCustomer:
    return DesiredCustomer(
        salesforce_account_id=account,
        name=name,
        ingest_aliases=(f"salesforce:{account}", "ops@acme.example"),
        identity_alias=f"salesforce:{account}",
        custom_fields={"sfdc_account_id": account},
    )


def customer(cid: str, account: str = ACCOUNT, **overrides: Any) -> dict[str, Any]:
    return {
        "id": cid,
        "name": "Acme",
        "ingest_aliases": [f"salesforce:{account}", "ops@acme.example", "kept-by-hand"],
        "custom_fields": {"sfdc_account_id": account},
        "customer_config": {"salesforce_account_id": account},
        "archived_at": None,
        **overrides,
    }


def test_the_verdict_counts_duplicates_missing_and_drift() -> None:
    expected = Expected(desired={ACCOUNT: desired(), OTHER: desired(OTHER)}, unmappable={})
    clean = judge(expected, [customer("c1"), customer("c2", OTHER)], [], [])
    assert clean.ok and (clean.duplicates, clean.missing, clean.drifted) == (0, 0, 0)

    twice = judge(expected, [customer("c1"), customer("c3"), customer("c2", OTHER)], [], [])
    assert twice.duplicates == 1 and not twice.ok

    lost = judge(expected, [customer("c1")], [], [])
    assert lost.missing == 1 and lost.examples["missing"] == [OTHER]

    renamed = judge(expected, [customer("c1", name="Old"), customer("c2", OTHER)], [], [])
    unlinked = judge(
        expected,
        [customer("c1", customer_config={"salesforce_account_id": None}), customer("c2", OTHER)],
        [],
        [],
    )
    alias_gone = judge(expected, [customer("c1", ingest_aliases=[]), customer("c2", OTHER)], [], [])
    assert renamed.drifted == unlinked.drifted == alias_gone.drifted == 1


def test_only_dead_letters_of_unmappable_records_are_expected() -> None:
    mapping = load_default_mapping()
    good = {
        "Id": "006000000000001AAA",
        "AccountId": ACCOUNT,
        "Account": {"Id": ACCOUNT, "Name": "Acme", "Billing_Provider__c": None, "Parent": None},
    }
    bad = {
        "Id": "006000000000002AAA",
        "AccountId": OTHER,
        "Account": {
            "Id": OTHER,
            "Name": "Bad Region",
            "Billing_Provider__c": "aws_marketplace",
            "AWS_Region__c": "mars-north-1",
            "Parent": None,
        },
    }
    with pytest.raises(MappingError):
        mapping.map_record(bad)
    expected = expected_state([good, bad], mapping.map_record)
    assert set(expected.desired) == {ACCOUNT} and set(expected.unmappable) == {OTHER}
    verdict = judge(
        expected,
        [],
        [],
        [(OTHER, "mapping", "aws_region"), (ACCOUNT, "transient_exhausted", "gave up")],
    )
    assert [d["account_id"] for d in verdict.unexpected_dead_letters] == [ACCOUNT]
    assert verdict.missing == 1 and not verdict.ok
