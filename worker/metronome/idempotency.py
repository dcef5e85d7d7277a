"""Idempotency keys for Metronome POSTs: a repeated key replays the first answer.

A key is deterministic per (Salesforce account id, desired-state hash, generation), refined by
the operation and its body so that two different calls in one sync never share a key (same
key + other body is a 409 at Metronome). Consequences:

- after a timeout or dropped connection the caller re-sends the SAME key and Metronome
  replays the first answer (the customer id of a create that did happen);
- after a 5xx the generation is bumped *before* anything is retried, because Metronome
  caches the 5xx under the key and would replay the failure forever.

The generation lives in Redis in production (the lead's implementation); ``current`` must be
stored before the call is made, which is why ``bump`` returns the new value it persisted.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import Protocol

KEY_PREFIX = "crmsync"


class IdempotencyGenerations(Protocol):
    """Where the per-account key generation lives."""

    def current(self, account_id: str) -> int: ...

    def bump(self, account_id: str) -> int: ...


class InMemoryGenerations:
    """For tests and single-process tools: forgets everything on exit."""

    def __init__(self) -> None:
        self._generations: Counter[str] = Counter()

    def current(self, account_id: str) -> int:
        return self._generations[account_id]

    def bump(self, account_id: str) -> int:
        self._generations[account_id] += 1
        return self._generations[account_id]


def idempotency_key(
    account_id: str, state_hash: str, generation: int, operation: str, body: str
) -> str:
    """The Idempotency-Key header for one POST of one sync attempt."""
    material = "\n".join((account_id, state_hash, str(generation), operation, body))
    return f"{KEY_PREFIX}-{hashlib.sha256(material.encode()).hexdigest()[:40]}"
