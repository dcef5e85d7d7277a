"""Metronome refusing crmsync's bearer token, shared by every process of one deployment.

Why: a wrong or revoked METRONOME_BEARER_TOKEN makes every call answer 401 (403 for a token
without the permission). Each account's sync used to spend its calls on that answer and
become a dead letter, one by one, and the operator who fixed the token then had to redrive
hundreds of them. It is the configuration that is wrong, not the record: the first refusal is
recorded here, every process reads it before calling Metronome and stops asking (the syncs
park, worker/outages/token.py), and one probe per backoff interval asks again.

The record is one Redis hash (``Keys.metronome_token``), changed only by the Lua scripts below
on Redis's clock. It names the refused configuration by ``identity``: the token's fingerprint
(a short sha256 prefix, never the token) and METRONOME_BASE_URL. A process configured
otherwise (an operator rotated the secret and restarted) is not held back: it tries at once.

Counting: the first refusal starts an episode (``since``); after that only a *probe* that is
refused counts again (1 s, 2 s, 4 s ... up to ``max_wait_s``, each ±25 % jitter), so the many
calls already on the wire when the token was revoked do not jump the wait to its maximum. A
probe that gets through (or any call made with another token) deletes the record.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import redis

    from worker.state.keys import Keys

#: The first wait after a refusal; it doubles with every refused probe.
BASE_WAIT_S = 1.0
#: Each wait is drawn from [1 - JITTER, 1 + JITTER] times the nominal one.
JITTER = 0.25

GO = "go"
OTHER = "other"
PROBE = "probe"
WAIT = "wait"

# KEYS[1] the hash; ARGV: identity, hold_s (the wait a refusal of this probe would set).
# Returns {decision, seconds to wait}: go (nothing refused), other (another configuration was
# refused: try), probe (this caller's turn, held for hold_s so no other process probes on it),
# or wait.
_ADMIT = """
local h = redis.call('HMGET', KEYS[1], 'identity', 'next_at')
if not h[1] then return {'go', '0'} end
if h[1] ~= ARGV[1] then return {'other', '0'} end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local next_at = tonumber(h[2]) or 0
if now < next_at then return {'wait', tostring(next_at - now)} end
redis.call('HSET', KEYS[1], 'next_at', tostring(now + tonumber(ARGV[2])))
return {'probe', '0'}
"""

# KEYS[1] the hash; ARGV: identity, fingerprint, base_url, status, reason, base_s, max_s,
# jitter factor, ttl_s, probe ("1"/"0"). Returns {refusals, wait_s, started ("1": this refusal
# began the episode)}.
_REFUSED = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local h = redis.call('HMGET', KEYS[1], 'identity', 'refusals', 'next_at')
local refusals = tonumber(h[2]) or 0
local started = '0'
if h[1] ~= ARGV[1] or refusals == 0 then
  refusals = 1
  started = '1'
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'since', tostring(now), 'identity', ARGV[1],
    'fingerprint', ARGV[2], 'base_url', ARGV[3])
elseif ARGV[10] == '1' then
  refusals = refusals + 1
else
  redis.call('HSET', KEYS[1], 'last_at', tostring(now), 'status', ARGV[4], 'reason', ARGV[5])
  redis.call('EXPIRE', KEYS[1], ARGV[9])
  return {tostring(refusals), tostring(math.max(0, (tonumber(h[3]) or 0) - now)), started}
end
local wait = math.min(tonumber(ARGV[7]), tonumber(ARGV[6]) * 2 ^ math.min(refusals - 1, 30))
wait = wait * tonumber(ARGV[8])
redis.call('HSET', KEYS[1], 'refusals', refusals, 'next_at', tostring(now + wait),
  'status', ARGV[4], 'reason', ARGV[5], 'last_at', tostring(now))
redis.call('EXPIRE', KEYS[1], ARGV[9])
return {tostring(refusals), tostring(wait), started}
"""

# KEYS[1] the hash; ARGV: identity, probe ("1"/"0"). A call that got through clears the record
# when it was the probe, or when it was made with another configuration than the refused one;
# a call of the refused configuration that was merely sent before the refusal proves nothing.
_ACCEPTED = """
local identity = redis.call('HGET', KEYS[1], 'identity')
if not identity then return 0 end
if ARGV[2] == '1' or identity ~= ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""

# KEYS[1] the hash. An operator asks for a probe now (``crmsync parked retry-now``): the next
# caller is the probe. Only an existing record is touched (a partial hash would have no TTL).
_PROBE_NOW = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'next_at', '0')
return 1
"""


@dataclass(frozen=True, slots=True)
class Admission:
    """May this caller call Metronome now (``decision``: go, other, probe or wait)?"""

    decision: str
    wait_s: float = 0.0

    @property
    def go(self) -> bool:
        return self.decision != WAIT

    @property
    def probe(self) -> bool:
        return self.decision == PROBE


@dataclass(frozen=True, slots=True)
class TokenRefusal:
    """The record as ``crmsync status``, the metrics and the gate read it."""

    refusals: int = 0
    since: float | None = None
    identity: str = ""
    fingerprint: str = ""
    base_url: str = ""
    status: str = ""
    reason: str = ""
    next_in_s: float = 0.0

    @property
    def refusing(self) -> bool:
        return self.refusals > 0

    @property
    def probe_due(self) -> bool:
        return self.refusing and self.next_in_s <= 0

    def headline(self) -> str:
        """``Metronome refuses the token since …: check METRONOME_BEARER_TOKEN``."""
        if not self.refusing:
            return ""
        since = _when(self.since) or "?"
        status = f"{self.status} " if self.status else ""
        return (
            f"Metronome refuses the token since {since} ({status}{self.reason}; token "
            f"sha256:{self.fingerprint} at {self.base_url}, {self.refusals} in a row): check "
            "METRONOME_BEARER_TOKEN"
        )

    def line(self) -> str:
        """What ``crmsync status`` prints (empty when nothing is refused)."""
        if not self.refusing:
            return ""
        wait = f"; next try in {self.next_in_s:.0f} s" if self.next_in_s > 0 else ""
        return f"{self.headline()}; syncs are parked, not dead-lettered{wait}"

    def as_dict(self) -> dict[str, Any]:
        since = (
            datetime.fromtimestamp(self.since, UTC).isoformat(timespec="seconds")
            if self.since is not None
            else None
        )
        return {
            "line": self.line(),
            "refusals": self.refusals,
            "since": since,
            "token_sha256": self.fingerprint or None,
            "base_url": self.base_url or None,
            "status": self.status or None,
            "reason": self.reason or None,
            "next_in_s": round(self.next_in_s, 1),
        }


class TokenRefusals:
    """The shared record of Metronome refusing the token (one hash, ``Keys.metronome_token``)."""

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
        self._key = keys.metronome_token
        self._base_s = min(base_wait_s, max_wait_s)
        self._max_s = max_wait_s
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self._admit = client.register_script(_ADMIT)
        self._refused = client.register_script(_REFUSED)
        self._accepted = client.register_script(_ACCEPTED)
        self._probe_now = client.register_script(_PROBE_NOW)

    def _jitter(self) -> float:
        return self._rng.uniform(1 - JITTER, 1 + JITTER)

    def admit(self, identity: str) -> Admission:
        """Go, other, probe (the turn is then held) or wait; one script run."""
        refusals = int(_text(self._client.hget(self._key, "refusals") or 0))
        hold = min(self._max_s, self._base_s * 2 ** min(refusals, 30)) * self._jitter()
        decision, wait = self._admit(keys=[self._key], args=[identity, f"{hold:.3f}"])
        return Admission(_text(decision), float(_text(wait)))

    def refused(
        self,
        identity: str,
        *,
        fingerprint: str,
        base_url: str,
        status: int | None,
        reason: str,
        probe: bool,
    ) -> tuple[int, float, bool]:
        """Record one refusal; (refusals in a row, seconds until the next probe, whether this
        refusal started the episode)."""
        refusals, wait, started = self._refused(
            keys=[self._key],
            args=[
                identity,
                fingerprint,
                base_url,
                "" if status is None else str(status),
                reason[:300],
                self._base_s,
                self._max_s,
                f"{self._jitter():.4f}",
                int(self._ttl_s()),
                "1" if probe else "0",
            ],
        )
        return int(_text(refusals)), float(_text(wait)), _text(started) == "1"

    def _ttl_s(self) -> float:
        # Refreshed by every refusal: kept while probes are still refused, and for a day after
        # the last one (status still shows a refusal nobody probed overnight), then gone.
        return max(86_400.0, 4 * self._max_s)

    def accepted(self, identity: str, *, probe: bool) -> bool:
        """A call got through: True when that cleared the record (see ``_ACCEPTED``)."""
        return bool(int(self._accepted(keys=[self._key], args=[identity, "1" if probe else "0"])))

    def probe_now(self) -> bool:
        """The next caller is the probe (an operator re-enabled the token at Metronome's);
        False when nothing is refused."""
        return bool(int(self._probe_now(keys=[self._key])))

    def state(self) -> TokenRefusal:
        fields = {_text(k): _text(v) for k, v in self._client.hgetall(self._key).items()}
        refusals = int(fields.get("refusals", "0") or 0)
        if refusals == 0:
            return TokenRefusal()
        seconds, micros = self._client.time()
        now = float(seconds) + float(micros) / 1e6
        return TokenRefusal(
            refusals=refusals,
            since=float(fields["since"]) if fields.get("since") else None,
            identity=fields.get("identity", ""),
            fingerprint=fields.get("fingerprint", ""),
            base_url=fields.get("base_url", ""),
            status=fields.get("status", ""),
            reason=fields.get("reason", ""),
            next_in_s=max(0.0, float(fields.get("next_at", "0") or 0) - now),
        )


def _when(epoch_s: float | None) -> str | None:
    if epoch_s is None:
        return None
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
