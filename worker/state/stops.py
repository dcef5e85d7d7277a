"""A poll stopped for a configuration problem: polls stop asking Salesforce until the
configuration changes (or, at the latest, ``CRMSYNC_LOGIN_BACKOFF_MAX_S`` later).

A mapped field the org does not have, a permission the user lacks, a session that cannot be
renewed: asking again every poll interval only repeats the refusal (and spends API quota).
The poll records the problem here with a fingerprint of the configuration it failed with (the
login settings and the fields the mapping reads); a poll with the same fingerprint is
answered from this record without a call, a poll with another fingerprint -- the operator
changed something -- asks at once. The key expires after the longest wait so a fix made in
Salesforce alone (a permission set assigned) is seen within ``CRMSYNC_LOGIN_BACKOFF_MAX_S``;
``crmsync worker``/``run``/``listen`` delete it when their start-up check proves the fields fine.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import redis

    from worker.state.keys import Keys


@dataclass(frozen=True, slots=True)
class Stop:
    fingerprint: str
    kind: str
    line: str
    since: float


class SalesforceStops:
    """The one stop record (``Keys.salesforce_stop``)."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._client = client
        self._key = keys.salesforce_stop

    def record(self, fingerprint: str, kind: str, line: str, ttl_s: float) -> None:
        current = self.current()
        since = current.since if current and current.fingerprint == fingerprint else time.time()
        value = {"fingerprint": fingerprint, "kind": kind, "line": line, "since": since}
        self._client.set(self._key, json.dumps(value), ex=max(1, int(ttl_s)))

    def current(self) -> Stop | None:
        raw = self._client.get(self._key)
        if not raw:
            return None
        value = json.loads(raw)
        return Stop(
            str(value["fingerprint"]), str(value["kind"]), str(value["line"]), value["since"]
        )

    def clear(self) -> None:
        self._client.delete(self._key)
