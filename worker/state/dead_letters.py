"""Dead letters grouped by what an operator has to fix, and resolved when the fix lands.

A record that cannot be synced is retried by every poll that sees it change, every re-sync and
every redrive: one entry per attempt buried the four accounts to fix under fourteen lines. So
a dead letter is a *group*: one open group per thing to fix -- an account (an opportunity, for
a deal whose contract cannot be made) and a kind -- with a count, first and last seen, and the
latest reason, task and record snapshot (what ``redrive`` re-sends). A message that names no
valid account (not ours, malformed) has nothing to group by and is a group of its own.

When a later sync of the same account succeeds, its open groups are marked resolved (when, by
which task, with which outcome) in the same MULTI that records the sync, and are kept for
audit; a deal's contract group is resolved when its contract is made. The outage work's
parking (issue #16) resolves through the same :meth:`DeadLetterBook.resolve` call.

Every attempt is still one entry of the ``dead-letters`` stream (group id, whether it opened
the group, reason; no snapshot): the alert watcher reads it to alert once per new group, and
``poll --wait`` / ``resync`` read it to report the attempts their syncs made.

Storage (:mod:`worker.state.keys`): groups as JSON in one hash, written by the open-items
book's scripts (worker/state/open_items.py: atomic, shared with "needs attention"), an "open"
hash from group key to id, per-record sorted sets for history and resolution, and a sorted set
of resolved ids to trim the oldest.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any, cast

import redis

from worker.state.dead_letter_items import (
    DeadLetter,
    Occurrence,
    Recorded,
    letter_from,
    occurrence_from,
    parse_group,
)
from worker.state.keys import (
    CLOSED_ITEMS_KEPT,
    DEAD_LETTER_GROUPS_PER_ID,
    DEAD_LETTER_MAX_ENTRIES,
    Keys,
)
from worker.state.ledger import Ledger, now_iso
from worker.state.open_items import Closing, Extras, OpenItems, noted

#: The dead-letter kind of a deal whose contract cannot be made; grouped by opportunity.
CONTRACT_KIND = "contract"

__all__ = ["CONTRACT_KIND", "DeadLetter", "DeadLetterBook", "Occurrence", "Recorded"]

#: What a repeat of an open group refreshes (the rest stays as first seen).
_REFRESHED = ("reason", "task_id", "trigger")
#: The group fields each ``dead-letters`` stream entry carries (after its group id and whether
#: it opened the group, before its time).
_STREAM_FIELDS = ("account_id", "opportunity_id", "kind", "reason", "task_id")


class DeadLetterBook:
    def __init__(self, client: redis.Redis, keys: Keys, ledger: Ledger) -> None:
        self.client = client
        self.keys = keys
        self.ledger = ledger
        self.book = OpenItems(
            client,
            items=keys.dead_letter_groups,
            open=keys.dead_letters_open,
            closed=keys.dead_letters_resolved,
            sequence=keys.dead_letter_sequence,
            key_field="group_key",
            refreshed=_REFRESHED,
        )

    # --- writing -------------------------------------------------------------------------
    def record(
        self,
        *,
        account_id: str,
        kind: str,
        reason: str,
        task_id: str,
        snapshot: Mapping[str, Any] | None,
        opportunity_id: str = "",
        trigger: str = "",
    ) -> Recorded:
        """Count one failed attempt in its group (opening the group if none is open), with
        its ``dead_lettered`` ledger entry (the account's history), in one MULTI."""
        subject = opportunity_id if kind == CONTRACT_KIND and opportunity_id else account_id
        group_key = f"{subject}|{kind}" if _groupable(subject) else ""
        seen = {
            "account_id": account_id,
            "opportunity_id": opportunity_id,
            "kind": kind,
            "reason": reason,
            "task_id": task_id,
            "trigger": trigger,
        }
        records = [r for r in dict.fromkeys([account_id, opportunity_id]) if _groupable(r)]
        snapshot_json = json.dumps(snapshot, sort_keys=True, default=str) if snapshot else ""
        extras = Extras(
            attachments=self.keys.dead_letter_snapshots,
            attachment=snapshot_json,
            stream=self.keys.dead_letters,
            stream_max=DEAD_LETTER_MAX_ENTRIES,
            stream_id_field="group",
            stream_fields=_STREAM_FIELDS,
            indexes=[self.keys.dead_letters_of(r) for r in records],
            index_cap=DEAD_LETTER_GROUPS_PER_ID,
            score_ms=_wall_ms(),
        )
        pipe = self.client.pipeline(transaction=True)
        self.book.record(group_key, seen, now=now_iso(), extras=extras, client=pipe)
        entry: dict[str, Any] = {
            "outcome": "dead_lettered",
            "kind": kind,
            "why": reason[:2000],
            "account_id": account_id,
            "task_id": task_id,
        }
        if opportunity_id:
            entry["opportunity_id"] = opportunity_id
        if trigger:
            entry["reason"] = trigger
        self.ledger.append(entry, client=pipe)
        reply, *_ = pipe.execute()
        group = noted(reply)
        return Recorded(group.item_id, group.entry_id, group.opened)

    def resolve(
        self,
        record_id: str,
        *,
        by: str,
        how: str,
        opportunity_id: str | None = None,
        client: Any = None,
    ) -> int | None:
        """Mark the open groups of an account (every kind but ``contract``), or of one
        opportunity's contract (``opportunity_id``), resolved by task ``by`` with outcome
        ``how``. Returns how many; None inside a pipeline (``client``)."""
        which = Closing(
            index=self.keys.dead_letters_of(opportunity_id or record_id),
            field="opportunity_id" if opportunity_id else "kind",
            equals=bool(opportunity_id),
            value=opportunity_id or CONTRACT_KIND,
        )
        fields = {
            "status": "resolved",
            "resolved_at": now_iso(),
            "resolved_by": by,
            "resolved_how": how,
        }
        options: dict[str, Any] = {
            "score_ms": _wall_ms(),
            "keep": CLOSED_ITEMS_KEPT,
            "attachments": self.keys.dead_letter_snapshots,
        }
        if client is not None:
            self.book.close_in(client, which, fields, **options)
            return None
        return self.book.close(which, fields, **options)[0]

    def delete(self, group_id: str) -> None:
        """Forget a group entirely (tests; an operator resolves by fixing, not deleting)."""
        raw = self.book.raw(group_id)
        pipe = self.client.pipeline(transaction=True)
        if raw:
            pipe.hdel(self.keys.dead_letters_open, json.loads(raw).get("group_key", ""))
        pipe.hdel(self.keys.dead_letter_groups, group_id)
        pipe.hdel(self.keys.dead_letter_snapshots, group_id)
        pipe.zrem(self.keys.dead_letters_resolved, group_id)
        pipe.execute()

    # --- reading -------------------------------------------------------------------------
    def open_count(self) -> int:
        return self.book.open_count()

    def resolved_count(self) -> int:
        """Groups a later sync resolved (the newest CLOSED_ITEMS_KEPT are kept)."""
        return self.book.closed_count()

    def groups(
        self,
        *,
        include_resolved: bool = False,
        account_id: str | None = None,
        kind: str | None = None,
        with_snapshots: bool = True,
        limit: int | None = None,
    ) -> list[DeadLetter]:
        """Groups, oldest first (by id), open only unless ``include_resolved``."""
        rows: dict[str, str | None]
        if include_resolved and account_id is None:
            rows = self.book.every_raw()
        else:
            if account_id is not None:
                key = self.keys.dead_letters_of(account_id)
                ids = cast(list[str], self.client.zrange(key, 0, -1))
            else:
                ids = self.book.open_ids()
            rows = dict(zip(ids, self.book.raws(ids), strict=True))
        groups = [parse_group(raw) for raw in rows.values() if raw]
        selected = sorted(
            (
                g
                for g in groups
                if (include_resolved or g["status"] == "open")
                and (kind is None or g.get("kind") == kind)
            ),
            key=lambda g: int(g["id"]),
        )
        if limit is not None:
            selected = selected[-limit:] if limit else []
        snapshots: list[str | None] = [None] * len(selected)
        if with_snapshots and selected:
            snapshots = cast(
                list[str | None],
                self.client.hmget(self.keys.dead_letter_snapshots, [g["id"] for g in selected]),
            )
        return [letter_from(g, s) for g, s in zip(selected, snapshots, strict=True)]

    def get(self, group_id: str) -> DeadLetter | None:
        raw = self.book.raw(group_id)
        if not raw:
            return None
        snapshot = cast(str | None, self.client.hget(self.keys.dead_letter_snapshots, group_id))
        return letter_from(parse_group(raw), snapshot)

    def last_occurrence_id(self) -> str:
        """The newest attempt's stream id ("0-0" when none): a mark for occurrences_since."""
        rows = cast(
            list[tuple[str, dict[str, str]]],
            self.client.xrevrange(self.keys.dead_letters, count=1),
        )
        return rows[0][0] if rows else "0-0"

    def stream_after(self, entry_id: str, count: int) -> list[tuple[str, dict[str, str]]]:
        """The stream's raw entries after ``entry_id`` (exclusive), oldest first: the alert
        watcher reads every field as written."""
        return cast(
            list[tuple[str, dict[str, str]]],
            self.client.xrange(self.keys.dead_letters, min=f"({entry_id}", count=count),
        )

    def occurrences_since(self, entry_id: str = "0-0", count: int = 100_000) -> list[Occurrence]:
        """Attempts after ``entry_id`` (exclusive), oldest first."""
        rows = cast(
            list[tuple[str, dict[str, str]]],
            self.client.xrange(self.keys.dead_letters, min=f"({entry_id}", count=count),
        )
        return [occurrence_from(entry, fields) for entry, fields in rows]


def _groupable(record_id: str) -> bool:
    """Only a valid Salesforce id names something to fix; "-" or a hostile string do not."""
    from mappings.ids import InvalidSalesforceId, normalize_salesforce_id

    if not record_id or record_id == "-":
        return False
    try:
        normalize_salesforce_id(record_id)
    except InvalidSalesforceId:
        return False
    return True


def _wall_ms() -> int:
    """A sorted-set score (order only: the ISO times in the JSON are what is shown)."""
    return int(time.time() * 1000)
