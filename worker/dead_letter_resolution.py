"""Dead letters that resolve themselves: a later sync that succeeds marks them resolved.

A dead letter says "a person must fix this". When the account syncs fine later (the record
was fixed in Salesforce, the mapping was changed, a redrive went through, or -- before parking
existed -- the outage behind a ``transient_exhausted`` ended), the letter no longer means that;
left open, it keeps the alert count, ``crmsync status`` and the metrics crying wolf (issue #16).
So a successful sync marks its subject's open dead letters *resolved*, with the time and the
sync (task id) that resolved them. Nothing is deleted: the entries stay in the stream for
audit, and a resolved one is simply not counted as open.

- The subject of a dead letter is its account id, or ``opportunity:<id>`` for a contract
  that could not be made (``tasks/contract_step.py``): a customer that syncs does not fix a
  deal whose rate card is unknown; only that deal's contract being made does.
- ``worker.store.SyncStore.dead_letter`` indexes each entry under its subject (a set per
  subject, ``Keys.dead_letter_subject``), so resolving is one round trip, not a scan of the
  stream; the resolved marks are one hash by entry id (``Keys.dead_letters_resolved``).

Kept small on purpose, to be folded into the grouped dead-letter module of issue #18: that
module owns listing and grouping; this one only needs ``resolve_dead_letters`` called after a
sync succeeded and ``open_count`` / :func:`open_letters` for the counts.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from worker.store import DeadLetter, SyncStore

# KEYS: the subject's set, the resolved hash, the dead-letter stream. ARGV: the mark (JSON).
# Marks each indexed entry still in the stream (a redrive may have deleted it), once.
_RESOLVE = """
local ids = redis.call('SMEMBERS', KEYS[1])
if #ids == 0 then return {} end
local resolved = {}
for _, id in ipairs(ids) do
  if #redis.call('XRANGE', KEYS[3], id, id) > 0 then
    if redis.call('HSETNX', KEYS[2], id, ARGV[1]) == 1 then
      resolved[#resolved + 1] = id
    end
  end
end
redis.call('DEL', KEYS[1])
return resolved
"""


def contract_subject(opportunity_id: str) -> str:
    """The subject of a contract's dead letter."""
    return f"opportunity:{opportunity_id}"


def resolve_dead_letters(store: SyncStore, account_id: str, task_id: str) -> list[str]:
    """A sync of ``account_id`` succeeded: mark its open dead letters resolved by ``task_id``.
    Returns the entry ids resolved now (usually none: one cheap round trip)."""
    return resolve_subject(store, account_id, task_id)


def resolve_subject(store: SyncStore, subject: str, task_id: str) -> list[str]:
    mark = json.dumps(
        {"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "task_id": task_id},
        sort_keys=True,
    )
    script = store.client.register_script(_RESOLVE)
    reply = cast(
        list[Any],
        script(
            keys=[
                store.keys.dead_letter_subject(subject),
                store.keys.dead_letters_resolved,
                store.keys.dead_letters,
            ],
            args=[mark],
        ),
    )
    return [_text(entry) for entry in reply]


def resolved(store: SyncStore, entry_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The resolution marks of those of ``entry_ids`` that are resolved."""
    ids = list(entry_ids)
    if not ids:
        return {}
    marks = cast(list[Any], store.client.hmget(store.keys.dead_letters_resolved, ids))
    return {i: json.loads(_text(m)) for i, m in zip(ids, marks, strict=True) if m is not None}


def open_letters(store: SyncStore, letters: list[DeadLetter]) -> list[DeadLetter]:
    """``letters`` without the resolved ones."""
    done = resolved(store, (letter.entry_id for letter in letters))
    return [letter for letter in letters if letter.entry_id not in done]


def open_count(store: SyncStore) -> int:
    """Open dead letters, without reading them (the metrics, at every scrape): resolved marks
    are only written for entries in the stream and dropped with them."""
    pipe = store.client.pipeline(transaction=False)
    pipe.xlen(store.keys.dead_letters)
    pipe.hlen(store.keys.dead_letters_resolved)
    total, done = pipe.execute()
    return max(0, int(total) - int(done))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
