"""What a sync ends with, as values: Done (with its outcome word) or Retry (with a countdown),
and the failures that still have effects to write before they are one of those: DeadLetter,
Park and LockWait (worker/syncing/actions.py writes them).

A caller decides what a value means for it: the single-account task turns a Retry into
Celery's retry (worker/wiring.py), a batch re-publishes the account alone (tasks/batch.py).
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from worker.app import RETRY_BACKOFF_MAX_S

if TYPE_CHECKING:
    from worker.context import WorkerContext

#: Deliveries of one message (one retry attempt) before it is treated as poison. Ten, as the
#: reliability issue asks: far above what a healthy run sees (1, or 2 after a worker kill).
MAX_DELIVERIES = 10
RETRY_BACKOFF_BASE_S = 2.0
#: A busy account lock clears when the other sync ends (seconds): retry soon.
LOCK_BUSY_COUNTDOWN_S = 1.0
#: Waits for a busy account lock before giving up: each waits at least a second and the lock
#: is a lease that a dead holder stops renewing, so this bounds only a pathological case.
MAX_LOCK_WAITS = 400


@dataclass(frozen=True, slots=True)
class Retry:
    """The sync must run again later; ``countdown`` seconds from now."""

    countdown: float
    reason: str
    #: False when the sync only waited (the account lock was busy): waits do not use up the
    #: retry budget.
    failure: bool = True
    #: The task's soft time limit struck during this sync.
    out_of_time: bool = False


@dataclass(frozen=True, slots=True)
class Done:
    outcome: str  # created | updated | in_sync | unchanged | dead_lettered | parked | skipped
    customer_id: str | None = None
    calls: int = 0
    contracts_created: int = 0


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """The sync gives up on this snapshot: a dead letter of ``kind`` (counted, logged).

    ``snapshot`` is what a redrive re-sends (the run's record unless given); ``refuse``
    remembers the snapshot as refused first, so the poll's overlap does not send it again
    until it changes; ``attention`` (event, details) is a "needs attention" item recorded
    before it (an operator must choose)."""

    kind: str
    reason: str
    snapshot: Any = None
    refuse: bool = False
    attention: tuple[str, dict[str, Any]] | None = None


@dataclass(frozen=True, slots=True)
class Park:
    """Transient, not dead: the sync waits in the parking until the drain sends it again (a
    dead letter once it has been parked for too long)."""

    cause: Exception


@dataclass(frozen=True, slots=True)
class LockWait:
    """The account lock ``owner`` (the customer's owning account) is held by another sync:
    wait for its lease, without using up the retry budget."""

    owner: str
    reason: str


#: A failure whose effects are still to be written (worker/syncing/actions.py).
Failure = DeadLetter | Park | LockWait


@dataclass(frozen=True, slots=True)
class SyncRun:
    """The facts of one sync that every step and every failure outcome reads: which
    message, which attempt, why it runs. ``account`` is the normalised id once validated."""

    ctx: WorkerContext
    record: Any
    force: bool
    reason: str
    task_id: str
    retries: int
    account: str = "-"
    started: float = field(default_factory=time.monotonic)


def snapshot_hash(record: dict[str, Any]) -> str:
    return hashlib.sha256(
        json.dumps(record, sort_keys=True, default=str).encode("utf-8")
    ).hexdigest()


def backoff(
    retries: int, settings_immediate: bool, floor: float = 0.0, visibility_timeout_s: int = 900
) -> float:
    """Full-jitter exponential backoff, capped at RETRY_BACKOFF_MAX_S and at a quarter of the
    visibility timeout: a countdown longer than that is delivered twice (Redis hands an
    unacknowledged message out again once it is older than the timeout)."""
    if settings_immediate:
        return 0.0
    cap = min(RETRY_BACKOFF_MAX_S, visibility_timeout_s / 4)
    ceiling = min(cap, RETRY_BACKOFF_BASE_S * (2**retries))
    return max(floor, random.uniform(ceiling / 2, ceiling))  # noqa: S311 - jitter, not crypto
