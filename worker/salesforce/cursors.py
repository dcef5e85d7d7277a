"""The poll's bookmarks and the non-row facts it reports.

Four cursors, one per stream, each the newest ``SystemModstamp`` that stream has seen (the
Meltano "replication key" idea). They are separate because the streams advance at different
speeds: an account rename moves only ``accounts``; keeping one shared cursor would make the
account stream skip renames older than the newest won deal.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from typing import Literal


@dataclass(frozen=True, slots=True)
class Cursors:
    opportunities: datetime | None = None
    accounts: datetime | None = None
    reopened: datetime | None = None
    deleted: datetime | None = None

    def to_json(self) -> dict[str, str | None]:
        return {
            f.name: (value.isoformat() if (value := getattr(self, f.name)) is not None else None)
            for f in fields(self)
        }

    @classmethod
    def from_json(cls, data: dict[str, str | None] | None) -> Cursors:
        if not data:
            return cls()
        values: dict[str, datetime | None] = {}
        for f in fields(cls):
            raw = data.get(f.name)
            values[f.name] = None if raw is None else _aware(datetime.fromisoformat(raw))
        return cls(**values)

    def advanced(self, **newest: datetime | None) -> Cursors:
        """Each cursor moved to the newer of itself and ``newest[name]`` (never backwards)."""
        changes = {
            name: value
            for name, value in newest.items()
            if value is not None and (getattr(self, name) is None or value > getattr(self, name))
        }
        return replace(self, **changes)


EventKind = Literal["opportunity_reopened", "account_deleted", "account_merged"]


@dataclass(frozen=True, slots=True)
class SourceEvent:
    """Something an operator must see but the worker must never act on by itself.

    A re-opened deal or a merged-away account could mean "stop billing" -- or a data-entry
    slip. Archiving automatically would stop billing a live contract on a typo, so these go
    to the ledger. ``opportunity_reopened`` covers every changed non-won opportunity; the
    pipeline keeps those whose deal it knew as won.
    """

    kind: EventKind
    record_id: str
    account_id: str | None
    system_modstamp: datetime
    master_record_id: str | None = None
    stage_name: str | None = None


def parse_salesforce_datetime(value: str) -> datetime:
    """``2026-11-24T03:01:45.123+0000`` (the REST API's form) as an aware UTC datetime."""
    try:
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%f%z").astimezone(UTC)
    except ValueError:
        return _aware(datetime.fromisoformat(value))


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
