"""Metronome refusing the bearer token: park the work, stop asking, probe, resume by itself.

A 401 (or a 403 for a token without the permission) is the deployment's configuration, not
the record: every account would meet it. So, as for an open circuit breaker
(worker/outages/metronome.py), the sync parks instead of dead-lettering, and the drain
(tasks/parked.py) replays the parked syncs once Metronome accepts a token again:

- **The refusal is shared** (worker/state/metronome_token.py): the gateway reports every
  401/403 answer here (``refused``), and every process reads the record before it calls
  (``gate``, cached for CACHE_S), so all of them stop asking at once. The record names the
  refused token by its fingerprint (a sha256 prefix, never the token) and METRONOME_BASE_URL:
  a process configured otherwise -- an operator rotated the secret and restarted -- is not
  held back and tries at once.
- **Admission** comes before a sync takes its account lock (worker/syncing/steps.py), on a
  fresh read of the record: nothing refused, go; refused and a probe due (1 s, 2 s, 4 s ...
  after the last refused probe, at most CRMSYNC_METRONOME_TOKEN_BACKOFF_MAX_S), this sync is
  the probe and its requests pass the gate; otherwise it parks at once, with zero calls.
- **A probe that gets through** (the sync ended well) deletes the record and asks the drain
  to send every parked sync; a probe refused doubles the wait.
- **One log line per process and episode** names METRONOME_BEARER_TOKEN (and ``crmsync
  status`` shows ``Metronome refuses the token since …``); the syncs it parks log no more
  than a short line each.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from worker.metronome.errors import TokenRefusedError
from worker.state.metronome_token import GO, WAIT, Admission, TokenRefusal, TokenRefusals

if TYPE_CHECKING:
    import redis
    from pydantic import SecretStr

    from worker.settings import Settings
    from worker.state.keys import Keys

log = logging.getLogger(__name__)

#: How long a process trusts the record it read last (seconds). While nothing is refused the
#: gate costs one Redis read per CACHE_S per process; a process may send requests for that
#: long after another recorded a refusal (they are answered 401 too, and not counted again).
CACHE_S = 1.0
#: Hex digits of the token's sha256 shown and compared: enough to tell two tokens apart,
#: far too few to say anything about a high-entropy secret.
FINGERPRINT_CHARS = 12


def token_fingerprint(token: SecretStr | str | None) -> str:
    """The first FINGERPRINT_CHARS hex digits of the token's sha256 ("" without a token)."""
    if token is None:
        return ""
    secret = token if isinstance(token, str) else token.get_secret_value()
    return hashlib.sha256(secret.encode()).hexdigest()[:FINGERPRINT_CHARS]


class MetronomeToken:
    """The token's standing as one process sees it (thread-safe)."""

    def __init__(
        self,
        refusals: TokenRefusals,
        *,
        fingerprint: str,
        base_url: str,
        cache_s: float = CACHE_S,
    ) -> None:
        self._refusals = refusals
        self.fingerprint = fingerprint
        self.base_url = base_url
        self.identity = f"{fingerprint} {base_url}"
        self._cache_s = cache_s
        self._lock = threading.Lock()
        self._cached = TokenRefusal()
        self._cached_at = -1e9
        self._announced: float | None = None
        self._local = threading.local()

    @classmethod
    def from_settings(cls, settings: Settings, client: redis.Redis, keys: Keys) -> MetronomeToken:
        refusals = TokenRefusals(client, keys, max_wait_s=settings.metronome_token_backoff_max_s)
        return cls(
            refusals,
            fingerprint=token_fingerprint(settings.metronome_bearer_token),
            base_url=settings.metronome_base_url,
        )

    # -- syncs -------------------------------------------------------------------------------

    def admit(self) -> Admission:
        """Go, be the probe, or wait (park). Always read fresh (one round trip per sync that
        would call Metronome): a sync admitted on a cached "nothing refused" would spend its
        calls on a refusal another process recorded a moment ago."""
        state = self._refresh()
        if not state.refusing or state.identity != self.identity:
            return Admission(GO)  # nothing refused, or another token was: try at once
        admission = self._refusals.admit(self.identity)
        if admission.decision == WAIT:
            self._announce(state)
        else:
            self._forget()
        return admission

    @contextlib.contextmanager
    def probing(self, admission: Admission) -> Iterator[None]:
        """Run the body as the probe when ``admission`` made this caller the probe: its
        requests pass the gate."""
        if not admission.probe:
            yield
            return
        self._local.probe = True
        try:
            yield
        finally:
            self._local.probe = False

    def accepted(self) -> bool:
        """A sync or probe that called Metronome ended well; True when that ended a refusal
        (the caller then has every parked sync sent). No round trip on the hot path."""
        probe = self._is_probe()
        known = self._known()
        if not probe and known is not None and not known.refusing:
            return False
        cleared = self._refusals.accepted(self.identity, probe=probe)
        self._forget()
        if cleared:
            log.warning(
                "Metronome accepts the token again (sha256:%s at %s); parked syncs resume",
                self.fingerprint,
                self.base_url,
            )
        return cleared

    # -- the gateway -------------------------------------------------------------------------

    def gate(self) -> None:
        """Before each request: raise an unsent TokenRefusedError while Metronome is known to
        refuse this token (the probe's thread excepted)."""
        if self._is_probe():
            return
        state = self._known()
        if state is None:
            state = self._refresh()
        if state.refusing and state.identity == self.identity:
            self._announce(state)
            raise TokenRefusedError(describe(state), status=None, sent=False)

    def refused(self, exc: TokenRefusedError) -> None:
        """The gateway got a 401/403 for the token: record it for every process."""
        refusals, wait, started = self._refusals.refused(
            self.identity,
            fingerprint=self.fingerprint,
            base_url=self.base_url,
            status=exc.status,
            reason=_api_reason(exc),
            probe=self._is_probe(),
        )
        state = self._refresh()
        if started or self._is_probe():
            self._announced = None  # a new episode, or a refused probe: say it again once
        self._announce(state, wait_s=wait, refusals=refusals)

    def state(self) -> TokenRefusal:
        return self._refresh()

    @property
    def probing_now(self) -> bool:
        return self._is_probe()

    # -- the one line per process ----------------------------------------------------------

    def _announce(
        self, state: TokenRefusal, *, wait_s: float | None = None, refusals: int | None = None
    ) -> None:
        """Log the refusal once per process and episode (and once per refused probe)."""
        if not state.refusing or state.identity != self.identity:
            return
        with self._lock:
            if self._announced == state.since:
                return
            self._announced = state.since
        wait = state.next_in_s if wait_s is None else wait_s
        # A warning, as the Salesforce login backoff's: a one-shot command (which logs only
        # errors) already says it in its own one line; a service logs it here.
        log.warning(
            "%s; syncs park (no dead letters) and resume by themselves once Metronome accepts "
            "a token; next try in %.0f s (at most one per CRMSYNC_METRONOME_TOKEN_BACKOFF_MAX_S)",
            state.headline(),
            wait,
            extra={"refusals": refusals if refusals is not None else state.refusals},
        )

    # -- the cache ---------------------------------------------------------------------------

    def _known(self) -> TokenRefusal | None:
        with self._lock:
            fresh = time.monotonic() - self._cached_at < self._cache_s
            return self._cached if fresh else None

    def _refresh(self) -> TokenRefusal:
        state = self._refusals.state()
        with self._lock:
            self._cached, self._cached_at = state, time.monotonic()
        return state

    def _forget(self) -> None:
        with self._lock:
            self._cached_at = -1e9

    def _is_probe(self) -> bool:
        return bool(getattr(self._local, "probe", False))


def describe(state: TokenRefusal) -> str:
    """Why a call was not sent, for the parked sync's reason (``crmsync parked list``)."""
    since = state.as_dict()["since"] or "?"
    return (
        f"Metronome refuses the token (sha256:{state.fingerprint}) since {since}: check "
        "METRONOME_BEARER_TOKEN; parked until Metronome accepts a token"
    )


def _api_reason(exc: TokenRefusedError) -> str:
    """``Unauthorized on GET /v1/customers``-ish: the operation and the API's message."""
    text = exc.message
    prefix = "Metronome "
    if text.startswith(prefix):
        operation, _, rest = text[len(prefix) :].partition(" answered ")
        _status, _, message = rest.partition(": ")
        if message:
            return f"{message.strip()[:200]} on {operation}"
    return text[:200]
