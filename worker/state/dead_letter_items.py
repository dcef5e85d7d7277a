"""What a dead letter is, as the operator reads it: a group (one thing to fix), an
occurrence (one attempt in the ``dead-letters`` stream) and what recording one returned;
parsed from the JSON and stream fields worker/state/dead_letters.py writes."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One group: the thing to fix, how often and since when, and whether it was fixed."""

    entry_id: str  # the group id (what `dead-letters redrive ID` takes)
    account_id: str
    kind: str
    reason: str  # the latest attempt's
    task_id: str  # the latest attempt's
    at: str  # last seen
    snapshot: dict[str, Any] | None
    opportunity_id: str = ""
    count: int = 1
    first_at: str = ""
    status: str = "open"  # open | resolved
    trigger: str = ""  # what ran the latest attempt: poll, event, resync, redrive
    resolved_at: str = ""
    resolved_by: str = ""
    resolved_how: str = ""

    @property
    def open(self) -> bool:
        return self.status == "open"

    def as_dict(self) -> dict[str, Any]:
        """For ``--json`` output (without the snapshot, which may be large)."""
        return {
            "id": self.entry_id,
            "account_id": self.account_id,
            "opportunity_id": self.opportunity_id or None,
            "kind": self.kind,
            "reason": self.reason,
            "count": self.count,
            "first_at": self.first_at,
            "last_at": self.at,
            "task_id": self.task_id,
            "trigger": self.trigger or None,
            "status": self.status,
            "resolved_at": self.resolved_at or None,
            "resolved_by": self.resolved_by or None,
            "resolved_how": self.resolved_how or None,
        }


@dataclass(frozen=True, slots=True)
class Occurrence:
    """One attempt that dead-lettered (an entry of the ``dead-letters`` stream)."""

    entry_id: str
    group_id: str
    opened: bool
    account_id: str
    opportunity_id: str
    kind: str
    reason: str
    task_id: str
    at: str


@dataclass(frozen=True, slots=True)
class Recorded:
    group_id: str
    entry_id: str
    #: True when this attempt opened a new group (the first of its kind for its account).
    opened: bool


def parse_group(raw: str) -> dict[str, Any]:
    loaded = json.loads(raw)
    return loaded if isinstance(loaded, dict) else {}


def letter_from(group: Mapping[str, Any], snapshot: str | None) -> DeadLetter:
    parsed: dict[str, Any] | None = None
    if snapshot:
        loaded = json.loads(snapshot)
        parsed = loaded if isinstance(loaded, dict) else {"raw": loaded}
    return DeadLetter(
        entry_id=str(group.get("id", "")),
        account_id=str(group.get("account_id", "")),
        kind=str(group.get("kind", "")),
        reason=str(group.get("reason", "")),
        task_id=str(group.get("task_id", "")),
        at=str(group.get("last_at", "")),
        snapshot=parsed,
        opportunity_id=str(group.get("opportunity_id", "")),
        count=int(group.get("count", 1)),
        first_at=str(group.get("first_at", "")),
        status=str(group.get("status", "open")),
        trigger=str(group.get("trigger", "")),
        resolved_at=str(group.get("resolved_at", "")),
        resolved_by=str(group.get("resolved_by", "")),
        resolved_how=str(group.get("resolved_how", "")),
    )


def occurrence_from(entry_id: str, fields: Mapping[str, str]) -> Occurrence:
    return Occurrence(
        entry_id=entry_id,
        group_id=fields.get("group", ""),
        opened=fields.get("opened") == "1",
        account_id=fields.get("account_id", ""),
        opportunity_id=fields.get("opportunity_id", ""),
        kind=fields.get("kind", ""),
        reason=fields.get("reason", ""),
        task_id=fields.get("task_id", ""),
        at=fields.get("at", ""),
    )
