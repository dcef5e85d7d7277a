"""An open-items book: items that open once per thing, count repeats while open, and close
for good (resolved, acknowledged), the newest closed ones kept for audit.

Dead letters (worker/state/dead_letters.py) and "needs attention" (worker/state/attention.py)
are both such books: each item is JSON in one hash by id, an "open" hash maps the thing's key
to its open item's id (so a repeat bumps it instead of opening another), and a sorted set
orders the closed ones for trimming. This module owns how a book is written as well as read:
one script records an occurrence, one closes items, so the two books cannot drift apart in
how an item opens, repeats, closes or is trimmed. What differs is passed in: which fields a
repeat refreshes, and the dead letters' extras (the record snapshot kept beside an item, the
stream entry per occurrence, the per-record index sets an item is filed in when it opens).
Each script is one atomic step on the server, and every key it touches is in KEYS.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    import redis

# KEYS: items, open, sequence, then, each only when its ARGV says so: the attachments hash
# (ARGV[6] not ''), the stream (ARGV[7] not ''), and the index sets (the rest).
# ARGV: 1 the thing's key ('' = never grouped: the item is keyed 'once|<id>'), 2 now (ISO),
# 3 the occurrence as JSON, 4 the name of the item's key field, 5 the fields a repeat
# refreshes (JSON list), 6 an attachment for the item ('' = keep the last), 7 stream MAXLEN,
# 8 the stream's name for the item id, 9 the item fields each stream entry carries (JSON
# list), 10 how many ids an index set keeps, 11 the index score (ms).
# Returns {id, opened (1/0), stream entry id ('' without a stream)}.
_RECORD = """
local id = false
if ARGV[1] ~= '' then id = redis.call('HGET', KEYS[2], ARGV[1]) end
local item = false
if id then
  local raw = redis.call('HGET', KEYS[1], id)
  if raw then item = cjson.decode(raw) end
end
local next_key = 4
local attachments = false
if ARGV[6] ~= '' then attachments = KEYS[next_key]; next_key = next_key + 1 end
local stream = false
if ARGV[7] ~= '' then stream = KEYS[next_key]; next_key = next_key + 1 end
local seen = cjson.decode(ARGV[3])
local opened = 0
if not item then
  id = tostring(redis.call('INCR', KEYS[3]))
  item = seen
  item.id = id
  item.count = 0
  item.first_at = ARGV[2]
  item.status = 'open'
  local key = ARGV[1]
  if key == '' then key = 'once|' .. id end
  item[ARGV[4]] = key
  redis.call('HSET', KEYS[2], key, id)
  local cap = tonumber(ARGV[10])
  for i = next_key, #KEYS do
    redis.call('ZADD', KEYS[i], tonumber(ARGV[11]), id)
    if redis.call('ZCARD', KEYS[i]) > cap then
      redis.call('ZREMRANGEBYRANK', KEYS[i], 0, -cap - 1)
    end
  end
  opened = 1
else
  for _, name in ipairs(cjson.decode(ARGV[5])) do item[name] = seen[name] end
end
item.count = item.count + 1
item.last_at = ARGV[2]
redis.call('HSET', KEYS[1], id, cjson.encode(item))
if attachments then redis.call('HSET', attachments, id, ARGV[6]) end
local entry = ''
if stream then
  local fields = {ARGV[8], id, 'opened', tostring(opened)}
  for _, name in ipairs(cjson.decode(ARGV[9])) do
    fields[#fields + 1] = name
    fields[#fields + 1] = item[name]
  end
  fields[#fields + 1] = 'at'
  fields[#fields + 1] = ARGV[2]
  entry = redis.call('XADD', stream, 'MAXLEN', '~', ARGV[7], '*', unpack(fields))
end
return {id, opened, entry}
"""

# KEYS: items, open, closed, then the attachments hash (ARGV[5] = '1'), then the index set
# whose items are the candidates (ARGV[1] = '').
# ARGV: 1 the one item to close ('' = the open ones of the index set that match the filter),
# 2 the fields set on each item closed (JSON: status, when, by whom), 3 the closed score (ms),
# 4 how many closed items to keep, 5 '1' when attachments are trimmed with their items,
# 6 the filter's field ('' = none), 7 'is' or 'not', 8 the value it is compared with, 9 the
# name of the item's key field (its entry in ``open`` goes, if it still names this item).
# Returns {how many closed, 1 when ARGV[1] named no item}.
_CLOSE = """
local ids
if ARGV[1] ~= '' then
  if not redis.call('HGET', KEYS[1], ARGV[1]) then return {0, 1} end
  ids = {ARGV[1]}
else
  ids = redis.call('ZRANGE', KEYS[#KEYS], 0, -1)
end
local attachments = false
if ARGV[5] == '1' then attachments = KEYS[4] end
local closing = cjson.decode(ARGV[2])
local n = 0
for _, id in ipairs(ids) do
  local raw = redis.call('HGET', KEYS[1], id)
  if raw then
    local item = cjson.decode(raw)
    local ours = ARGV[6] == ''
      or (ARGV[7] == 'is' and item[ARGV[6]] == ARGV[8])
      or (ARGV[7] == 'not' and item[ARGV[6]] ~= ARGV[8])
    if item.status == 'open' and ours then
      for name, value in pairs(closing) do item[name] = value end
      redis.call('HSET', KEYS[1], id, cjson.encode(item))
      local key = item[ARGV[9]]
      if redis.call('HGET', KEYS[2], key) == id then redis.call('HDEL', KEYS[2], key) end
      redis.call('ZADD', KEYS[3], tonumber(ARGV[3]), id)
      n = n + 1
    end
  end
end
if n > 0 then
  local extra = redis.call('ZCARD', KEYS[3]) - tonumber(ARGV[4])
  if extra > 0 then
    for _, old in ipairs(redis.call('ZRANGE', KEYS[3], 0, extra - 1)) do
      redis.call('HDEL', KEYS[1], old)
      if attachments then redis.call('HDEL', attachments, old) end
    end
    redis.call('ZREMRANGEBYRANK', KEYS[3], 0, extra - 1)
  end
end
return {n, 0}
"""


@dataclass(frozen=True, slots=True)
class Extras:
    """What a book files beside an item when it records an occurrence (the dead letters')."""

    #: The hash of attachments by item id (the record snapshot), and this occurrence's ('':
    #: keep the last).
    attachments: str = ""
    attachment: str = ""
    #: The stream with one entry per occurrence ('': none), its MAXLEN, the name its entries
    #: give the item id, and the item fields each entry carries.
    stream: str = ""
    stream_max: int = 0
    stream_id_field: str = "id"
    stream_fields: Sequence[str] = ()
    #: Sorted sets an item is filed in when it opens (per record), each kept to ``index_cap``.
    indexes: Sequence[str] = ()
    index_cap: int = 0
    score_ms: int = 0


@dataclass(frozen=True, slots=True)
class Noted:
    """One occurrence recorded: the item's id, whether it opened it, its stream entry."""

    item_id: str
    opened: bool
    entry_id: str = ""


@dataclass(frozen=True, slots=True)
class Closing:
    """Which open items a close takes: one by id, or those of an index set that match."""

    item_id: str = ""
    index: str = ""
    field: str = ""
    #: True: the field must equal ``value``; False: it must differ from it.
    equals: bool = True
    value: str = ""


class OpenItems:
    """One book's three keys: ``items`` (id -> JSON), ``open`` (key -> id) and ``closed`` (id
    by when it closed), with ``sequence`` handing out ids; ``key_field`` names the item field
    that holds its key in ``open``."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        items: str,
        open: str,
        closed: str,
        sequence: str,
        key_field: str = "key",
        refreshed: Sequence[str] = (),
    ) -> None:
        self.client = client
        self.items_key = items
        self.open_key = open
        self.closed_key = closed
        self.sequence_key = sequence
        self.key_field = key_field
        #: The fields a repeat copies from the new occurrence (the rest stay as first seen).
        self.refreshed = list(refreshed)
        self._record = client.register_script(_RECORD)
        self._close = client.register_script(_CLOSE)

    # --- writing -------------------------------------------------------------------------
    def record(
        self,
        key: str,
        seen: Mapping[str, Any],
        *,
        now: str,
        extras: Extras | None = None,
        client: Any = None,
    ) -> Any:
        """Open an item for ``key`` with ``seen``, or count one more occurrence of its open
        one. Returns the script's raw reply (read it with :func:`noted`); inside a pipeline
        (``client``) the pipeline itself."""
        more = extras or Extras()
        keys = [self.items_key, self.open_key, self.sequence_key]
        if more.attachment:
            keys.append(more.attachments)
        if more.stream:
            keys.append(more.stream)
        keys.extend(more.indexes)
        args: list[str | int] = [
            key,
            now,
            json.dumps(seen, default=str),
            self.key_field,
            json.dumps(self.refreshed),
            more.attachment,
            more.stream_max if more.stream else "",
            more.stream_id_field,
            json.dumps(list(more.stream_fields)),
            more.index_cap,
            more.score_ms,
        ]
        return self._record(keys=keys, args=args, client=client or self.client)

    def close(
        self,
        which: Closing,
        fields: Mapping[str, str],
        *,
        score_ms: int,
        keep: int,
        attachments: str = "",
    ) -> tuple[int, bool]:
        """Close the open items ``which`` names, setting ``fields`` (status, when, by whom) on
        each, then trim the closed ones to the newest ``keep`` (with their attachments).
        Returns how many closed, and whether ``which`` named an item that does not exist."""
        keys, args = self._closing(which, fields, score_ms, keep, attachments)
        closed, unknown = self._close(keys=keys, args=args)
        return int(closed), bool(int(unknown))

    def close_in(
        self,
        pipe: Any,
        which: Closing,
        fields: Mapping[str, str],
        *,
        score_ms: int,
        keep: int,
        attachments: str = "",
    ) -> None:
        """:meth:`close`, queued in ``pipe`` (a MULTI that records something else too)."""
        keys, args = self._closing(which, fields, score_ms, keep, attachments)
        self._close(keys=keys, args=args, client=pipe)

    def _closing(
        self,
        which: Closing,
        fields: Mapping[str, str],
        score_ms: int,
        keep: int,
        attachments: str,
    ) -> tuple[list[str], list[str | int]]:
        keys = [self.items_key, self.open_key, self.closed_key]
        if attachments:
            keys.append(attachments)
        if not which.item_id:
            keys.append(which.index)
        args: list[str | int] = [
            which.item_id,
            json.dumps(dict(fields)),
            score_ms,
            keep,
            "1" if attachments else "0",
            which.field,
            "is" if which.equals else "not",
            which.value,
            self.key_field,
        ]
        return keys, args

    # --- reading -------------------------------------------------------------------------
    def open_count(self) -> int:
        return int(self.client.hlen(self.open_key))

    def closed_count(self) -> int:
        return int(self.client.zcard(self.closed_key))

    def open_keys(self) -> list[str]:
        """The keys of the things with an open item (``event|record``, ``account|kind``)."""
        return cast(list[str], self.client.hkeys(self.open_key))

    def open_ids(self) -> list[str]:
        return list(cast(dict[str, str], self.client.hgetall(self.open_key)).values())

    def raw(self, item_id: str) -> str | None:
        return cast(str | None, self.client.hget(self.items_key, item_id))

    def raws(self, ids: Sequence[str]) -> list[str | None]:
        """The items' JSON in the order of ``ids`` (None where one is gone)."""
        if not ids:
            return []
        return cast(list[str | None], self.client.hmget(self.items_key, list(ids)))

    def every_raw(self) -> dict[str, str | None]:
        """Every item kept, open and closed: id -> JSON."""
        return cast(dict[str, str | None], self.client.hgetall(self.items_key))


def noted(reply: Sequence[Any]) -> Noted:
    """The record script's reply as a value."""
    item_id, opened, entry = reply
    return Noted(str(item_id), bool(int(opened)), str(entry or ""))
