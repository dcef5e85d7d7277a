"""The stable task names, as operators type them (``celery call crmsync.sync_account``).

A job that starts another one sends it by this name (``app.send_task``) instead of importing
its module: the jobs stay free of import circles, and a name is the contract a queued message
already relies on.
"""

from __future__ import annotations

SYNC_ACCOUNT = "crmsync.sync_account"
SYNC_BATCH = "crmsync.sync_batch"
POLL = "crmsync.poll_closed_won"
DRAIN = "crmsync.drain_parked"

#: The ``reason`` of a parked sync's replay (tasks/parked.py): once it ends, it leaves the
#: parking (tasks/sync.py).
PARKED_REASON = "parked"
