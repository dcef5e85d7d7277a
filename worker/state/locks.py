"""The one lock primitive: a key held by a random token, with a lease.

Taken with ``SET NX`` (and a lease: PX/EX), released and extended only by its holder -- a
compare-and-delete and a compare-and-extend, as Lua scripts so each is atomic on the server.
The poll lock, the account locks, the drain lock and the listener's lease all use it: a holder
that was killed, or whose lease ran out and was taken by another, can never free or extend the
new holder's lock.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

import redis

# KEYS: lock key. ARGV: holder token. Deletes the key only for its holder.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS: lock key. ARGV: holder token, lease in ms. Extends the lease only for its holder.
_EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""


def new_token(nbytes: int = 16) -> str:
    """A holder's token: random, so no other holder can present it."""
    return secrets.token_hex(nbytes)


class TokenLocks:
    """Take, release and extend token locks on one Redis client."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._release = client.register_script(_RELEASE)
        self._extend = client.register_script(_EXTEND)

    def take(
        self, key: str, token: str, *, lease_ms: int | None = None, ttl_s: int | None = None
    ) -> bool:
        """True when ``token`` now holds ``key`` (for ``lease_ms`` or ``ttl_s``)."""
        return bool(self.client.set(key, token, nx=True, px=lease_ms, ex=ttl_s))

    def release(self, key: str, token: str, *, client: Any = None) -> bool:
        """Free ``key`` if ``token`` still holds it (``client``: a pipeline to join)."""
        return bool(self._release(keys=[key], args=[token], client=client))

    def extend(self, key: str, token: str, lease_ms: int) -> bool:
        """Renew the lease if ``token`` still holds it; False when it is no longer ours."""
        return bool(self._extend(keys=[key], args=[token, lease_ms]))


@dataclass(slots=True)
class _Lease:
    key: str
    lease_ms: int
    deadline: float
    renew_at: float


class LeaseKeeper:
    """Renews every lease this process holds, from one background thread.

    A thread per lock (started and joined around every sync) cost more CPU than the sync's own
    Redis calls once syncs ran in batches; one long-lived thread that sleeps until the next
    lease is a third gone does the same job. A lease is renewed only while its holder still
    holds it (the Lua script compares tokens), and never past its deadline: a sync that hangs
    that long lets its lease run out.
    """

    def __init__(self, locks: TokenLocks) -> None:
        self._locks = locks
        self._leases: dict[str, _Lease] = {}
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def hold(self, key: str, token: str, lease_ms: int, ttl_s: float) -> None:
        now = time.monotonic()
        with self._wake:
            self._leases[token] = _Lease(key, lease_ms, now + ttl_s, now + lease_ms / 3000)
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                # First lease, or a forked child (which inherits no threads).
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._run, name="lock-leases", daemon=True)
                self._thread.start()
            self._wake.notify()

    def drop(self, token: str) -> None:
        with self._wake:
            self._leases.pop(token, None)

    def _run(self) -> None:
        while True:
            with self._wake:
                now = time.monotonic()
                due = [(t, lease) for t, lease in self._leases.items() if lease.renew_at <= now]
                if not due:
                    next_at = min((lease.renew_at for lease in self._leases.values()), default=0)
                    self._wake.wait(timeout=max(0.01, next_at - now) if next_at else 60.0)
                    continue
                for _token, lease in due:
                    lease.renew_at = now + lease.lease_ms / 3000
            for token, lease in due:
                self._renew(token, lease, now)

    def _renew(self, token: str, lease: _Lease, now: float) -> None:
        if now >= lease.deadline:
            self.drop(token)  # a holder this slow is hung: let the lease run out
            return
        try:
            if not self._locks.extend(lease.key, token, lease.lease_ms):
                self.drop(token)  # lost (expired, or Redis flushed): nothing left to renew
        except redis.RedisError:
            pass  # Redis restarting: try again at the next tick
