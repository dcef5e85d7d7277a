""" "Needs attention": what crmsync saw and, on purpose, did not act on, kept until a person has.

crmsync never archives, edits or moves anything on its own (a person decides): a re-opened deal, a
merged or deleted account, a deal changed after its contract was made, a contract a person
archived, or a customer that cannot be made right without taking an alias from another one are
each recorded as an *item* with what to do, listed by ``crmsync attention`` and acknowledged
with ``crmsync attention ack ID`` (kept, with who and when, for audit).

The same situation seen again (a re-sync meets the same conflict) bumps its open item's count
and last-seen time instead of opening a second one; once acknowledged, a new occurrence opens
a new item. Each item is also a ``needs_attention`` ledger entry (the account's history) and
counted in the ``needs_attention`` outcome, written in the same MULTI as the item.

The alert watcher (:mod:`worker.telemetry.alerts`) sends one ``needs_attention`` webhook per new
item;
``crmsync_attention_open{event}`` counts the open ones at scrape time.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import redis

from worker.state.keys import CLOSED_ITEMS_KEPT, Keys
from worker.state.ledger import Ledger, now_iso
from worker.state.open_items import Closing, OpenItems, noted

#: What an operator does about each event; the recorder's own text, when it has one, wins.
WHAT_TO_DO: dict[str, str] = {
    "opportunity_reopened": "the deal is no longer won; crmsync archived nothing: if it is "
    "lost, end its contract or archive the customer in Metronome by hand; if it will be won "
    "again, nothing to do",
    "account_merged": "the account was merged into its master record; its customer still "
    "exists: move its contracts and aliases to the master's customer by hand, or archive it",
    "account_deleted": "the account was deleted in Salesforce; its customer still exists: "
    "archive it in Metronome by hand if it must stop billing",
    "contract_opportunity_changed": "the deal changed after its contract was made; crmsync "
    "never edits a contract: change it in Metronome if the change is meant",
    "contract_archived": "the deal's contract was archived in Metronome; crmsync never "
    "re-creates it: make a new contract by hand if it is still won",
    "customer_conflict": "another customer holds an alias or the Salesforce link this account "
    "needs; crmsync never moves them: decide which customer is right and fix the record in "
    "Salesforce (the next poll syncs it) or the other customer in Metronome (then `crmsync "
    "resync` the account)",
}

#: What a repeat of an open item refreshes (the rest stays as first seen).
_REFRESHED = ("details", "task_id")


@dataclass(frozen=True, slots=True)
class AttentionItem:
    id: str
    event: str
    record_id: str
    account_id: str
    what_to_do: str
    details: dict[str, Any] = field(default_factory=dict)
    count: int = 1
    first_at: str = ""
    last_at: str = ""
    status: str = "open"  # open | acked
    task_id: str = ""
    acked_at: str = ""
    acked_by: str = ""
    note: str = ""

    @property
    def open(self) -> bool:
        return self.status == "open"

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "event": self.event,
            "record_id": self.record_id,
            "account_id": self.account_id,
            "details": self.details,
            "what_to_do": self.what_to_do,
            "count": self.count,
            "first_at": self.first_at,
            "last_at": self.last_at,
            "status": self.status,
            "task_id": self.task_id or None,
            "acked_at": self.acked_at or None,
            "acked_by": self.acked_by or None,
            "note": self.note or None,
        }


@dataclass(frozen=True, slots=True)
class Noted:
    item_id: str
    #: True when this occurrence opened a new item (false: an open one was bumped).
    opened: bool


class UnknownItem(LookupError):
    """``attention ack`` was given an id no item has (or one trimmed long ago)."""


class AttentionBook:
    def __init__(self, client: redis.Redis, keys: Keys, ledger: Ledger) -> None:
        self.client = client
        self.keys = keys
        self.ledger = ledger
        self.book = OpenItems(
            client,
            items=keys.attention_items,
            open=keys.attention_open,
            closed=keys.attention_acked,
            sequence=keys.attention_sequence,
            key_field="key",
            refreshed=_REFRESHED,
        )

    def record(
        self,
        event: str,
        *,
        record_id: str,
        account_id: str,
        details: Mapping[str, Any] | None = None,
        what_to_do: str | None = None,
        task_id: str = "",
        trigger: str = "",
    ) -> Noted:
        """One item (or one more occurrence of an open one), its ledger entry and the
        ``needs_attention`` outcome count, in one MULTI."""
        advice = what_to_do or WHAT_TO_DO.get(event, "look into it in Salesforce and Metronome")
        extra = {k: v for k, v in (details or {}).items() if v not in (None, "", [])}
        item = {
            "event": event,
            "record_id": record_id,
            "account_id": account_id,
            "details": extra,
            "what_to_do": advice,
            "task_id": task_id,
        }
        entry: dict[str, Any] = {
            "outcome": "needs_attention",
            "event": event,
            "record_id": record_id,
            "account_id": account_id,
            **extra,
            "what_to_do": advice,
        }
        if trigger:
            entry["reason"] = trigger
        if task_id:
            entry["task_id"] = task_id
        pipe = self.client.pipeline(transaction=True)
        self.book.record(f"{event}|{record_id}", item, now=now_iso(), client=pipe)
        self.ledger.append(entry, client=pipe)
        pipe.hincrby(self.keys.outcomes, "needs_attention", 1)
        reply, *_ = pipe.execute()
        recorded = noted(reply)
        return Noted(recorded.item_id, recorded.opened)

    def acknowledge(self, item_id: str, *, by: str = "", note: str = "") -> bool:
        """Mark an item handled; False when it already was. Raises UnknownItem."""
        fields = {
            "status": "acked",
            "acked_at": now_iso(),
            "acked_by": by or _operator(),
            "note": note,
        }
        acked, unknown = self.book.close(
            Closing(item_id=item_id),
            fields,
            score_ms=int(time.time() * 1000),
            keep=CLOSED_ITEMS_KEPT,
        )
        if unknown:
            raise UnknownItem(
                f"no attention item {item_id!r}; `crmsync attention --all` lists them"
            )
        return acked == 1

    def open_count(self) -> int:
        return self.book.open_count()

    def open_by_event(self) -> dict[str, int]:
        """Open items per event (the metric), from the open index alone."""
        counts: dict[str, int] = {}
        for key in self.book.open_keys():
            event = key.split("|", 1)[0]
            counts[event] = counts.get(event, 0) + 1
        return counts

    def items(
        self, *, include_acked: bool = False, record_ids: set[str] | None = None
    ) -> list[AttentionItem]:
        """Items, newest first; open only unless ``include_acked``; only those about
        ``record_ids`` (as record or account) when given."""
        if include_acked or record_ids is not None:
            raws = list(self.book.every_raw().values())
        else:
            raws = self.book.raws(self.book.open_ids())
        items = [_item(json.loads(raw)) for raw in raws if raw]
        selected = [
            i
            for i in items
            if (include_acked or i.open)
            and (record_ids is None or i.record_id in record_ids or i.account_id in record_ids)
        ]
        return sorted(selected, key=lambda i: int(i.id), reverse=True)

    def open_items_after(self, item_id: int) -> list[AttentionItem]:
        """Open items with an id above ``item_id``, oldest first (the alert watcher's "new")."""
        ids = [i for i in self.book.open_ids() if int(i) > item_id]
        if not ids:
            return []
        raws = self.book.raws(ids)
        items = [_item(json.loads(raw)) for raw in raws if raw]
        return sorted((i for i in items if i.open), key=lambda i: int(i.id))

    def get(self, item_id: str) -> AttentionItem | None:
        raw = self.book.raw(item_id)
        return _item(json.loads(raw)) if raw else None


def _operator() -> str:
    """Who acknowledged: the login of the shell that ran the command (audit, not auth)."""
    return os.environ.get("USER") or os.environ.get("LOGNAME") or "unknown"


def _item(raw: Mapping[str, Any]) -> AttentionItem:
    details = raw.get("details")
    return AttentionItem(
        id=str(raw.get("id", "")),
        event=str(raw.get("event", "")),
        record_id=str(raw.get("record_id", "")),
        account_id=str(raw.get("account_id", "")),
        what_to_do=str(raw.get("what_to_do", "")),
        details=dict(details) if isinstance(details, dict) else {},
        count=int(raw.get("count", 1)),
        first_at=str(raw.get("first_at", "")),
        last_at=str(raw.get("last_at", "")),
        status=str(raw.get("status", "open")),
        task_id=str(raw.get("task_id", "")),
        acked_at=str(raw.get("acked_at", "")),
        acked_by=str(raw.get("acked_by", "")),
        note=str(raw.get("note", "")),
    )
