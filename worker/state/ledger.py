"""The ledger: one stream entry per thing crmsync did or saw, indexed by the records it concerns.

Every sync that changed something, every contract made or adopted, every dead letter and every
"needs attention" event is one entry of the ``ledger`` stream (:mod:`worker.state.keys`). ``crmsync
history ACCOUNT_ID`` must find one account's entries among up to CRMSYNC_LEDGER_MAX_ENTRIES
without reading them all, so the same Lua script that appends an entry also adds its id to a
small sorted set per Salesforce id it names (the account, the roll-up owner, the opportunity,
the record an event is about): one round trip, and a reader never sees an entry without its
index (or an index without its entry, except one the stream's own trimming removed since,
which a reader skips).

A ledger written before the index existed has no index keys: :meth:`Ledger.entries_for` then
scans the stream, newest first, which is bounded by the stream's cap.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

import redis

from worker.state.keys import LEDGER_INDEX_MAX_PER_ID, Keys

#: The entry fields that name a Salesforce record the entry is about: its index keys.
INDEXED_FIELDS = (
    "account_id",
    "owner_account_id",
    "opportunity_id",
    # The deal an expansion expands or a renewal renews: its history shows them too.
    "parent_opportunity_id",
    "record_id",
    "master_record_id",
)

# KEYS: the stream, then one index key per record the entry concerns.
# ARGV: the stream's approximate MAXLEN, the index cap, then the entry's field/value pairs.
# The score is the entry id's millisecond part, so an index reads in time order and `--since`
# is a range query.
_APPEND = """
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', unpack(ARGV, 3))
local score = tonumber(string.match(id, '^(%d+)'))
local cap = tonumber(ARGV[2])
for i = 2, #KEYS do
  redis.call('ZADD', KEYS[i], score, id)
  if redis.call('ZCARD', KEYS[i]) > cap then
    redis.call('ZREMRANGEBYRANK', KEYS[i], 0, -cap - 1)
  end
end
return id
"""

_SALESFORCE_ID = re.compile(r"^[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?$")

#: Entries read per XREVRANGE while scanning an unindexed stream.
SCAN_PAGE = 1_000


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def ledger_fields(entry: Mapping[str, Any]) -> dict[str, str]:
    """A ledger entry as stream fields: text as is, anything else as JSON; stamped ``at``."""
    fields = {k: _field(v) for k, v in entry.items()}
    fields.setdefault("at", now_iso())
    return fields


def _field(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def records_named(entry: Mapping[str, Any]) -> list[str]:
    """The Salesforce ids an entry is about (its index keys), each once; a value that is not
    an id (a malformed message's "-" or hostile text) names nothing."""
    found = (entry.get(name) for name in INDEXED_FIELDS)
    return list(dict.fromkeys(v for v in found if isinstance(v, str) and _SALESFORCE_ID.match(v)))


def stream_ms(entry_id: str) -> int:
    """The millisecond timestamp Redis put in a stream entry id."""
    return int(entry_id.split("-", 1)[0])


class Ledger:
    """Appends indexed entries and reads one record's entries back."""

    def __init__(
        self, client: redis.Redis, keys: Keys, max_entries: int = 100_000, index_cap: int = 0
    ) -> None:
        self.client = client
        self.keys = keys
        self.max_entries = max_entries
        self.index_cap = index_cap or LEDGER_INDEX_MAX_PER_ID
        self._append = client.register_script(_APPEND)

    def append(self, entry: Mapping[str, Any], *, client: Any = None) -> str | None:
        """Append ``entry`` and index it; the entry id, or None inside a pipeline (``client``),
        whose ``execute()`` returns it."""
        fields = ledger_fields(entry)
        keys = [self.keys.ledger, *(self.keys.ledger_index(r) for r in records_named(entry))]
        args: list[str | int] = [self.max_entries, self.index_cap]
        for name, value in fields.items():
            args += [name, value]
        result = self._append(keys=keys, args=args, client=client or self.client)
        return None if client is not None else str(result)

    def entries_for(
        self, record_ids: Sequence[str], *, since_ms: int = 0, limit: int = 100
    ) -> list[dict[str, str]]:
        """The entries about any of ``record_ids``, newest first, at most ``limit``, none older
        than ``since_ms``; each with its ``id``. Scans the stream when no index exists."""
        pipe = self.client.pipeline(transaction=False)
        for record in record_ids:
            pipe.exists(self.keys.ledger_index(record))
        if not any(cast(list[int], pipe.execute())):
            return self._scan(set(record_ids), since_ms, limit)
        pipe = self.client.pipeline(transaction=False)
        for record in record_ids:
            pipe.zrevrangebyscore(
                self.keys.ledger_index(record), "+inf", since_ms, start=0, num=limit
            )
        ids: set[str] = set()
        for found in cast(list[list[str]], pipe.execute()):
            ids.update(found)
        newest = sorted(ids, key=_id_order, reverse=True)[:limit]
        return self._read(newest)

    def _read(self, entry_ids: Iterable[str]) -> list[dict[str, str]]:
        ordered = list(entry_ids)
        pipe = self.client.pipeline(transaction=False)
        for entry_id in ordered:
            pipe.xrange(self.keys.ledger, entry_id, entry_id)
        out: list[dict[str, str]] = []
        for rows in cast(list[list[tuple[str, dict[str, str]]]], pipe.execute()):
            for entry_id, fields in rows:  # an id the stream trimmed since reads as nothing
                out.append({"id": entry_id, **fields})
        return out

    def _scan(self, wanted: set[str], since_ms: int, limit: int) -> list[dict[str, str]]:
        out: list[dict[str, str]] = []
        upper = "+"
        lower = f"{since_ms}-0" if since_ms else "-"
        while len(out) < limit:
            rows = cast(
                list[tuple[str, dict[str, str]]],
                self.client.xrevrange(self.keys.ledger, upper, lower, count=SCAN_PAGE),
            )
            for entry_id, fields in rows:
                if wanted & set(records_named(fields)):
                    out.append({"id": entry_id, **fields})
            if len(rows) < SCAN_PAGE:
                break
            upper = f"({rows[-1][0]}"
        return out[:limit]


def _id_order(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)
