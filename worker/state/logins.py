"""Salesforce login refusals, shared by every process of one deployment: how long to wait
before the next login.

Why: when Salesforce keeps refusing a session (a wrong org id, a revoked permission, a user an
admin froze), logging in again at once and asking again made 1,750 logins in 20 seconds from
one listener. A real org locks the user or rate-limits its login endpoint long before that.
Each consecutive refusal here doubles the wait before anyone logs in again (1 s, 2 s, 4 s …,
at most ``CRMSYNC_LOGIN_BACKOFF_MAX_S``, each with ±25 % jitter so processes do not line up):
about six logins in the first minute, then one per ``CRMSYNC_LOGIN_BACKOFF_MAX_S``. The
state is one Redis hash, changed only by the Lua scripts below on Redis's clock, so a worker's
children, the beat and the listener count the same refusals and take turns.

A refusal is counted once per login (the caller knows which session it refused). A session
that works (a query answered, a subscription that delivered) clears the count. A change of
login settings clears it too: the refusal was about the old ones, so the new ones are tried at
once ("stop asking until the configuration changes").
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import redis

    from worker.state.keys import Keys

#: The first wait after a refusal; it doubles with every consecutive one.
BASE_WAIT_S = 1.0
#: Each wait is drawn from [1 - JITTER, 1 + JITTER] times the nominal one.
JITTER = 0.25

# KEYS[1] the hash; ARGV: fingerprint, hold_s (the wait a refusal of this login would set).
# Returns the seconds to wait (as text), "0" when this caller may log in now. A caller let
# through while refusals are counted holds the turn for hold_s: two processes never both spend
# a login on the same turn.
_ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local h = redis.call('HMGET', KEYS[1], 'failures', 'next_at', 'fingerprint')
local failures = tonumber(h[1]) or 0
if failures == 0 then return '0' end
if h[3] ~= ARGV[1] then
  redis.call('DEL', KEYS[1])
  return '0'
end
local next_at = tonumber(h[2]) or 0
if now < next_at then return tostring(next_at - now) end
redis.call('HSET', KEYS[1], 'next_at', tostring(now + tonumber(ARGV[2])))
return '0'
"""

# KEYS[1] the hash; ARGV: fingerprint, reason, base_s, max_s, jitter factor, ttl_s.
# Returns "failures wait_s".
_REFUSED = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local h = redis.call('HMGET', KEYS[1], 'failures', 'fingerprint')
local failures = tonumber(h[1]) or 0
if h[2] ~= ARGV[1] then failures = 0 end
if failures == 0 then redis.call('HSET', KEYS[1], 'since', tostring(now)) end
failures = failures + 1
local wait = math.min(tonumber(ARGV[4]), tonumber(ARGV[3]) * 2 ^ math.min(failures - 1, 30))
wait = wait * tonumber(ARGV[5])
redis.call('HSET', KEYS[1], 'failures', failures, 'next_at', tostring(now + wait),
  'fingerprint', ARGV[1], 'reason', ARGV[2], 'last_at', tostring(now))
redis.call('EXPIRE', KEYS[1], ARGV[6])
return failures .. ' ' .. tostring(wait)
"""


@dataclass(frozen=True, slots=True)
class LoginRefusals:
    """What ``crmsync status`` shows: how many refusals in a row, since when, why, and how long
    until the next login may be tried (0 when one may be tried now)."""

    failures: int
    since: float | None
    reason: str
    next_in_s: float

    @property
    def refusing(self) -> bool:
        return self.failures > 0

    def line(self) -> str:
        """``Salesforce refuses the login since …`` (empty when nothing is refused)."""
        if not self.refusing or self.since is None:
            return ""
        since = datetime.fromtimestamp(self.since, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        wait = f"; next login in {self.next_in_s:.0f} s" if self.next_in_s > 0 else ""
        return (
            f"Salesforce refuses the login since {since} ({self.failures} in a row: "
            f"{self.reason}){wait}"
        )

    def as_dict(self) -> dict[str, object]:
        since = (
            datetime.fromtimestamp(self.since, UTC).isoformat(timespec="seconds")
            if self.since is not None
            else None
        )
        return {
            "line": self.line(),
            "failures": self.failures,
            "since": since,
            "reason": self.reason,
            "next_in_s": round(self.next_in_s, 1),
        }


class LoginBackoff:
    """The shared count of consecutive login refusals (one hash, ``Keys.login_refusals``)."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        *,
        max_wait_s: float = 900.0,
        base_wait_s: float = BASE_WAIT_S,
        rng: random.Random | None = None,
    ) -> None:
        self._client = client
        self._key = keys.login_refusals
        self._max_s = max(base_wait_s, max_wait_s)
        self._base_s = base_wait_s
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self._admit = client.register_script(_ADMIT)
        self._refused = client.register_script(_REFUSED)

    def _jitter(self) -> float:
        return self._rng.uniform(1 - JITTER, 1 + JITTER)

    def admit(self, fingerprint: str) -> tuple[float, int]:
        """(0.0 when a login may be tried now -- its turn is then held -- else the seconds to
        wait; the refusals counted so far)."""
        failures = int(self._client.hget(self._key, "failures") or 0)
        if failures == 0:
            return 0.0, 0  # the common case: one read, nothing to hold
        hold = min(self._max_s, self._base_s * 2 ** min(failures, 30)) * self._jitter()
        wait = float(self._admit(keys=[self._key], args=[fingerprint, f"{hold:.3f}"]))
        return wait, failures

    def refused(self, fingerprint: str, reason: str) -> tuple[int, float]:
        """Count one refusal; (refusals in a row, seconds until the next login may be tried)."""
        answer = self._refused(
            keys=[self._key],
            args=[
                fingerprint,
                reason[:300],
                self._base_s,
                self._max_s,
                f"{self._jitter():.4f}",
                int(self._ttl_s()),
            ],
        )
        failures, wait = (answer.decode() if isinstance(answer, bytes) else str(answer)).split()
        return int(failures), float(wait)

    def _ttl_s(self) -> float:
        # Kept while it can still matter: a few of the longest waits, at least a day (status
        # keeps showing a refusal that stopped being retried overnight).
        return max(86_400.0, 4 * self._max_s)

    def accepted(self) -> None:
        """A session worked: the refusals are over."""
        self._client.delete(self._key)

    def state(self) -> LoginRefusals:
        raw = self._client.hgetall(self._key)
        fields = {
            (k.decode() if isinstance(k, bytes) else str(k)): (
                v.decode() if isinstance(v, bytes) else str(v)
            )
            for k, v in raw.items()
        }
        failures = int(fields.get("failures", "0") or 0)
        if failures == 0:
            return LoginRefusals(0, None, "", 0.0)
        seconds, micros = self._client.time()
        now = float(seconds) + float(micros) / 1e6
        next_at = float(fields.get("next_at", "0") or 0)
        return LoginRefusals(
            failures=failures,
            since=float(fields["since"]) if fields.get("since") else None,
            reason=fields.get("reason", ""),
            next_in_s=max(0.0, next_at - now),
        )
