"""The rate governor's shared limiter as Redis holds it: one hash (``Keys.governor``) and the
Lua script (``rate.lua``) that reserves slots, lowers the rate on a 429 and reads it back.

The policy -- when to ask again, how a 429 is answered, waiting for Redis when it is away --
lives in :mod:`worker.metronome.governor`; this module only runs the script (one round trip
each, on Redis's clock) and turns its replies into numbers and a :class:`GovernorState`.
Redis errors pass through unchanged: the governor decides what an unreachable Redis means.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.resources import files
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import redis

    from worker.state.keys import Keys

_SCRIPT = files("worker.state").joinpath("rate.lua").read_text(encoding="utf-8")


@dataclass(frozen=True, slots=True)
class GovernorState:
    """What ``crmsync status`` and the metrics show: the shared rate now and why."""

    allowed_rps: float
    max_rps: float
    held_s: float
    #: The end of the current (or last) hold, on the governor's clock (ms).
    hold_until_ms: float
    refused: dict[str, int]
    seconds_since_refused: float | None
    last_limit_type: str | None

    @property
    def throttled(self) -> bool:
        """Below the ceiling (still climbing back after 429s), or held back right now."""
        return self.held_s > 0 or self.allowed_rps < self.max_rps

    def as_dict(self) -> dict[str, Any]:
        return {
            "allowed_rps": round(self.allowed_rps, 2),
            "max_rps": self.max_rps,
            "throttled": self.throttled,
            "held_s": round(self.held_s, 3),
            "refused": dict(self.refused),
            "seconds_since_refused": (
                None if self.seconds_since_refused is None else round(self.seconds_since_refused)
            ),
            "last_limit_type": self.last_limit_type,
        }


class SharedRate:
    """The limiter's script bound to its hash: ``run`` one operation, read ``state``."""

    def __init__(self, client: redis.Redis, key: str) -> None:
        self._script = client.register_script(_SCRIPT)
        self.key = key

    def run(self, op: str, now: str, *args: str) -> list[float]:
        """One operation of the script (``acquire``, ``refused``); ``now`` is "" for Redis's
        clock. The reply as numbers; Redis errors are raised as they come."""
        reply = self._script(keys=[self.key], args=[op, now, *args])
        return [_number(value) for value in reply]

    def state(self, server_now_ms: Callable[[], float] | None = None) -> GovernorState | None:
        """The limiter's state as Redis holds it now; None before its first request."""
        now = "" if server_now_ms is None else repr(server_now_ms())
        reply: Sequence[Any] = self._script(keys=[self.key], args=["state", now])
        if not reply:
            return None
        rate, hold_ms, now_ms = (_number(v) for v in reply[:3])
        fields = {_text(reply[i]): _text(reply[i + 1]) for i in range(3, len(reply) - 1, 2)}
        refused = {
            name.removeprefix("refused:"): int(value)
            for name, value in fields.items()
            if name.startswith("refused:")
        }
        last = fields.get("last_refused")
        return GovernorState(
            allowed_rps=rate,
            max_rps=float(fields["max"]),
            held_s=max(0.0, (hold_ms - now_ms) / 1000),
            hold_until_ms=hold_ms,
            refused=refused,
            seconds_since_refused=None if last is None else max(0.0, (now_ms - float(last)) / 1000),
            last_limit_type=fields.get("last_type"),
        )


def rate_state(client: redis.Redis, keys: Keys) -> GovernorState | None:
    """For readers without a governor of their own (``crmsync status``, the metrics)."""
    return SharedRate(client, keys.governor).state()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _number(value: Any) -> float:
    return float(_text(value))
