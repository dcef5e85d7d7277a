"""How recent a record snapshot is, from Salesforce's own SystemModstamps (pure).

A message carries a snapshot of the record as the poll read it. Two messages for one account
can be in flight at once (a rename read by the next poll while the first snapshot waits in a
batch, in a retry's countdown, or in a redelivered message), and they may finish in either
order. Whichever finishes last must not be the older one: the sync compares the snapshot's
stamp with the stamp of the snapshot last applied to the account, under the account's lock,
and skips an older one (found by the chaos run, seed 32: a rename undone by an older snapshot
that finished later).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def _parse(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    text = value.replace("Z", "+00:00")
    if len(text) > 5 and text[-5] in "+-" and text[-3] != ":":
        text = f"{text[:-2]}:{text[-2:]}"  # Salesforce writes +0000; Python 3.11 wants +00:00
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def snapshot_stamp(record: dict[str, Any]) -> str | None:
    """The newer of the Opportunity's and its Account's SystemModstamp, as fixed-width UTC
    text that compares in time order; None when the record carries neither (a hand-made
    message): such a snapshot is never refused and never refuses another."""
    account = record.get("Account")
    stamps = [
        parsed
        for parsed in (
            _parse(record.get("SystemModstamp")),
            _parse(account.get("SystemModstamp") if isinstance(account, dict) else None),
        )
        if parsed is not None
    ]
    if not stamps:
        return None
    return max(stamps).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def is_superseded(stamp: str | None, applied: str | None) -> bool:
    """True when a snapshot older than the one already applied arrives."""
    return stamp is not None and applied is not None and stamp < applied
