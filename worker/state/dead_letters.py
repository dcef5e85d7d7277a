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

Storage (:mod:`worker.state.keys`): groups as JSON in one
hash, updated by Lua scripts (atomic; every
key they touch is passed in KEYS), an "open" hash from group key to id, per-record sorted sets
for history and resolution, and a sorted set of resolved ids to trim the oldest.
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
from worker.state.open_items import OpenItems

#: The dead-letter kind of a deal whose contract cannot be made; grouped by opportunity.
CONTRACT_KIND = "contract"

__all__ = ["CONTRACT_KIND", "DeadLetter", "DeadLetterBook", "Occurrence", "Recorded"]

# KEYS: groups, snapshots, open, sequence, stream, then the per-record sets (account,
# opportunity). ARGV: group key ('' = never grouped), now (ISO), the occurrence as JSON,
# snapshot JSON ('' = keep the last), stream MAXLEN, per-record cap, score (ms).
_RECORD = """
local gid = false
if ARGV[1] ~= '' then gid = redis.call('HGET', KEYS[3], ARGV[1]) end
local group = false
if gid then
  local raw = redis.call('HGET', KEYS[1], gid)
  if raw then group = cjson.decode(raw) end
end
local seen = cjson.decode(ARGV[3])
local opened = 0
if not group then
  gid = tostring(redis.call('INCR', KEYS[4]))
  group = seen
  group.id = gid
  group.count = 0
  group.first_at = ARGV[2]
  group.status = 'open'
  if ARGV[1] == '' then group.group_key = 'once|' .. gid else group.group_key = ARGV[1] end
  redis.call('HSET', KEYS[3], group.group_key, gid)
  local cap = tonumber(ARGV[6])
  for i = 6, #KEYS do
    redis.call('ZADD', KEYS[i], tonumber(ARGV[7]), gid)
    if redis.call('ZCARD', KEYS[i]) > cap then
      redis.call('ZREMRANGEBYRANK', KEYS[i], 0, -cap - 1)
    end
  end
  opened = 1
else
  group.reason = seen.reason
  group.task_id = seen.task_id
  group.trigger = seen.trigger
end
group.count = group.count + 1
group.last_at = ARGV[2]
redis.call('HSET', KEYS[1], gid, cjson.encode(group))
if ARGV[4] ~= '' then redis.call('HSET', KEYS[2], gid, ARGV[4]) end
local entry = redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[5], '*',
  'group', gid, 'opened', tostring(opened), 'account_id', group.account_id,
  'opportunity_id', group.opportunity_id, 'kind', group.kind, 'reason', seen.reason,
  'task_id', seen.task_id, 'at', ARGV[2])
return {gid, entry, opened}
"""

# KEYS: groups, open, resolved, snapshots, the record's set. ARGV: now (ISO), score (ms), by
# (task id), how (outcome), scope ('account': every kind but contract; 'opportunity': that
# deal's), the opportunity id, how many resolved groups to keep.
_RESOLVE = """
if redis.call('EXISTS', KEYS[5]) == 0 then return 0 end
local n = 0
for _, gid in ipairs(redis.call('ZRANGE', KEYS[5], 0, -1)) do
  local raw = redis.call('HGET', KEYS[1], gid)
  if raw then
    local g = cjson.decode(raw)
    local ours = (ARGV[5] == 'account' and g.kind ~= 'contract')
      or (ARGV[5] == 'opportunity' and g.opportunity_id == ARGV[6])
    if g.status == 'open' and ours then
      g.status = 'resolved'
      g.resolved_at = ARGV[1]
      g.resolved_by = ARGV[3]
      g.resolved_how = ARGV[4]
      redis.call('HSET', KEYS[1], gid, cjson.encode(g))
      redis.call('HDEL', KEYS[2], g.group_key)
      redis.call('ZADD', KEYS[3], tonumber(ARGV[2]), gid)
      n = n + 1
    end
  end
end
if n > 0 then
  local extra = redis.call('ZCARD', KEYS[3]) - tonumber(ARGV[7])
  if extra > 0 then
    for _, old in ipairs(redis.call('ZRANGE', KEYS[3], 0, extra - 1)) do
      redis.call('HDEL', KEYS[1], old)
      redis.call('HDEL', KEYS[4], old)
    end
    redis.call('ZREMRANGEBYRANK', KEYS[3], 0, extra - 1)
  end
end
return n
"""


class DeadLetterBook:
    def __init__(self, client: redis.Redis, keys: Keys, ledger: Ledger) -> None:
        self.client = client
        self.keys = keys
        self.ledger = ledger
        self._record = client.register_script(_RECORD)
        self._resolve = client.register_script(_RESOLVE)
        self.book = OpenItems(
            client,
            items=keys.dead_letter_groups,
            open=keys.dead_letters_open,
            closed=keys.dead_letters_resolved,
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
        keys = [
            self.keys.dead_letter_groups,
            self.keys.dead_letter_snapshots,
            self.keys.dead_letters_open,
            self.keys.dead_letter_sequence,
            self.keys.dead_letters,
            *(self.keys.dead_letters_of(r) for r in records),
        ]
        snapshot_json = json.dumps(snapshot, sort_keys=True, default=str) if snapshot else ""
        pipe = self.client.pipeline(transaction=True)
        self._record(
            keys=keys,
            args=[
                group_key,
                now_iso(),
                json.dumps(seen),
                snapshot_json,
                DEAD_LETTER_MAX_ENTRIES,
                DEAD_LETTER_GROUPS_PER_ID,
                _wall_ms(),
            ],
            client=pipe,
        )
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
        (gid, stream_id, opened), *_ = pipe.execute()
        return Recorded(str(gid), str(stream_id), bool(int(opened)))

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
        scope_key = opportunity_id or record_id
        result = self._resolve(
            keys=[
                self.keys.dead_letter_groups,
                self.keys.dead_letters_open,
                self.keys.dead_letters_resolved,
                self.keys.dead_letter_snapshots,
                self.keys.dead_letters_of(scope_key),
            ],
            args=[
                now_iso(),
                _wall_ms(),
                by,
                how,
                "opportunity" if opportunity_id else "account",
                opportunity_id or "",
                CLOSED_ITEMS_KEPT,
            ],
            client=client or self.client,
        )
        return None if client is not None else int(result)

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
