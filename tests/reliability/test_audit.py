"""The dependency audit's verdict: a vulnerability fails the build, an unreachable database
only skips the audit (this machine reaches no vulnerability service)."""

from __future__ import annotations

import json

from bench.chaos_audit import verdict


def report(*vulns: str) -> str:
    return json.dumps(
        {
            "dependencies": [
                {"name": "safe", "version": "1.0", "vulns": []},
                {"name": "leaky", "version": "0.1", "vulns": [{"id": v} for v in vulns]},
            ]
        }
    )


def test_a_known_vulnerability_fails() -> None:
    status, message = verdict(1, report("PYSEC-2026-1", "GHSA-xxxx"), "")
    assert status == 1 and "leaky 0.1: PYSEC-2026-1, GHSA-xxxx" in message


def test_a_clean_report_passes_and_counts_packages() -> None:
    assert verdict(0, report(), "") == (
        0,
        "dependency audit: no known vulnerability in 2 packages",
    )


def test_an_unreachable_database_skips_with_the_reason() -> None:
    stderr = "requests.exceptions.ConnectionError: Max retries exceeded with url: /pypi/x/json"
    status, message = verdict(1, "", stderr)
    assert (
        status == 0 and message.startswith("dependency audit SKIPPED") and "Max retries" in message
    )


def test_any_other_failure_fails() -> None:
    status, message = verdict(2, "", "usage: pip-audit: error: unrecognized arguments: --bogus")
    assert status == 2 and "unrecognized arguments" in message
