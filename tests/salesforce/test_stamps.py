"""Snapshot stamps (pure): which of two snapshots of an account is the newer."""

from __future__ import annotations

from typing import Any

import pytest

from worker.salesforce.stamps import is_superseded, snapshot_stamp


def snapshot(opportunity: Any = None, account: Any = None) -> dict[str, Any]:
    return {"Id": "006", "SystemModstamp": opportunity, "Account": {"SystemModstamp": account}}


@pytest.mark.parametrize(
    ("opportunity", "account", "expected"),
    [
        ("2026-11-20T10:00:00.000+0000", None, "2026-11-20T10:00:00.000000Z"),
        (None, "2026-11-20T10:00:00Z", "2026-11-20T10:00:00.000000Z"),
        # The newer of the two: an Account rename after the deal closed.
        (
            "2026-11-20T10:00:00.000+0000",
            "2026-11-21T08:30:00.250+0000",
            "2026-11-21T08:30:00.250000Z",
        ),
        # Other offsets are brought to UTC before comparing.
        ("2026-11-20T12:00:00.000+0200", None, "2026-11-20T10:00:00.000000Z"),
        ("2026-11-20T10:00:00", None, "2026-11-20T10:00:00.000000Z"),
        (None, None, None),
        ("not a date", 42, None),
    ],
)
def test_the_stamp_is_the_newer_systemmodstamp_in_utc(
    opportunity: Any, account: Any, expected: str | None
) -> None:
    assert snapshot_stamp(snapshot(opportunity, account)) == expected


def test_a_record_without_an_account_object_still_has_a_stamp() -> None:
    record = {"SystemModstamp": "2026-11-20T10:00:00.000+0000", "Account": "not an object"}
    assert snapshot_stamp(record) == "2026-11-20T10:00:00.000000Z"


def test_only_a_strictly_older_known_stamp_is_superseded() -> None:
    old, new = "2026-11-20T10:00:00.000000Z", "2026-11-21T10:00:00.000000Z"
    assert is_superseded(old, new)
    assert not is_superseded(new, old)
    assert not is_superseded(new, new)  # the same snapshot again: the hash decides
    assert not is_superseded(None, new)  # a hand-made message without stamps
    assert not is_superseded(old, None)  # nothing applied yet (or Redis was flushed)
