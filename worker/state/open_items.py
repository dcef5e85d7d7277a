"""An open-items book: items that open once per thing, count repeats while open, and close
for good (resolved, acknowledged), the newest closed ones kept for audit.

Dead letters (worker/state/dead_letters.py) and "needs attention" (worker/state/attention.py)
are both such books: each item is JSON in one hash by id, an "open" hash maps the thing's key
to its open item's id (so a repeat bumps it instead of opening another), and a sorted set
orders the closed ones for trimming. Each book writes through its own Lua script (what an
item holds differs); the reads below are the same for both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    import redis


class OpenItems:
    """The reads of one book's three keys: ``items`` (id -> JSON), ``open`` (key -> id) and
    ``closed`` (id by when it closed)."""

    def __init__(self, client: redis.Redis, *, items: str, open: str, closed: str) -> None:
        self.client = client
        self.items_key = items
        self.open_key = open
        self.closed_key = closed

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
