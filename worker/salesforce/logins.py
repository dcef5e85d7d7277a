"""Every Salesforce login crmsync makes passes one gate: bounded logins, clear refusals.

The gate (:class:`LoginGate`) does three things around simple-salesforce's logins:

- **Before a login** it asks the shared refusal count (``worker/state/logins.py``) whether one
  may be tried now; while refusals back off it raises :class:`LoginDeferred` instead of logging
  in. That covers the first login of a client, the re-login simple-salesforce makes by itself
  when a query meets 401 ``INVALID_SESSION_ID`` (``Salesforce._refresh_session``), and the
  listener's re-login after the Pub/Sub API's ``…service.auth.error``.
- **A refused login** (``SalesforceAuthenticationFailed`` with a reason: ``INVALID_LOGIN``, a
  frozen user, ``invalid_grant``) is counted and becomes :class:`LoginRefused`, whose message
  names the SALESFORCE_* settings to check and never carries simple-salesforce's unfilled
  ``{content}`` template.
- **A refused session** (a query's 401, the Pub/Sub ``auth.error``) is counted once per login,
  and a session that works (a data call answered 2xx, a subscription that delivered) clears
  the count.

Both exceptions pickle to themselves (one text argument, plus the wait), so they cross Celery's
result backend and process pools intact instead of as ``UnpickleableExceptionWrapper``.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from simple_salesforce.exceptions import SalesforceAuthenticationFailed

from worker.salesforce.errors import SalesforceFailure, SalesforceUnavailable
from worker.settings import SalesforceAuthMode, salesforce_auth_mode, salesforce_mode_variables

if TYPE_CHECKING:
    import requests
    from simple_salesforce.api import Salesforce

    from worker.settings import Settings
    from worker.state.logins import LoginBackoff

log = logging.getLogger(__name__)

#: How long simple-salesforce's re-login after an expired session waits for its turn at most:
#: a short backoff is waited out (the caller's query then goes on), a long one is raised.
RELOGIN_WAIT_MAX_S = 15.0

#: The login endpoints: their 2xx answers say nothing about whether the session will work.
_LOGIN_PATHS = ("/services/Soap/u/", "/services/oauth2/")

#: Every SALESFORCE_* value that decides who logs in where. Each mode includes a high-entropy
#: secret (a security token, a consumer secret, a private key or a session id), so the short
#: hash below cannot be turned back into a password.
_LOGIN_FIELDS = (
    "salesforce_username",
    "salesforce_password",
    "salesforce_security_token",
    "salesforce_consumer_key",
    "salesforce_consumer_secret",
    "salesforce_private_key",
    "salesforce_private_key_file",
    "salesforce_session_id",
    "salesforce_instance_url",
    "salesforce_domain",
    "salesforce_org_id",
)


class LoginDeferred(SalesforceUnavailable):
    """Raised in place of a login while Salesforce's refusals back off; ``wait_s`` says when
    the next one may be tried. Transient: the poll, the sync and the listener wait and retry."""

    def __init__(self, message: str, wait_s: float = 0.0) -> None:
        super().__init__(message)
        self.wait_s = wait_s

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.wait_s))


class LoginRefused(SalesforceFailure):
    """Salesforce refused the login itself, with a reason: a person must fix a setting (or the
    user in Salesforce). Logins still go on, one per ``CRMSYNC_LOGIN_BACKOFF_MAX_S`` at most."""

    def __init__(self, message: str, wait_s: float = 0.0) -> None:
        super().__init__(message)
        self.wait_s = wait_s

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.wait_s))


def login_fingerprint(settings: Settings) -> str:
    """A short hash of the login settings: a refusal counted for other settings is forgotten."""
    digest = hashlib.sha256()
    for name in _LOGIN_FIELDS:
        value = getattr(settings, name, None)
        if value is not None and hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        digest.update(f"{name}={value if value is not None else ''}\0".encode())
    return digest.hexdigest()[:16]


def settings_to_check(settings: Settings) -> str:
    """The SALESFORCE_* variables the configured login mode reads, for a refusal's message."""
    try:
        mode = salesforce_auth_mode(settings)
    except ValueError:
        mode = None
    if mode is None:
        return "the SALESFORCE_* settings"
    names = salesforce_mode_variables(mode)
    if mode is not SalesforceAuthMode.SESSION:
        names.append("SALESFORCE_DOMAIN")
    return ", ".join(names)


def refusal_reason(exc: SalesforceAuthenticationFailed) -> str:
    """``INVALID_LOGIN: Invalid username, password…`` from the exception's fields (its str()
    is a template with ``{content}`` left unfilled)."""
    code = getattr(exc, "code", None)
    message = str(getattr(exc, "auth_message", "") or "").strip()
    text = ": ".join(part for part in (str(code) if code is not None else "", message) if part)
    return text[:200] or "no reason given"


class LoginGate:
    """The login gate of one process; ``backoff`` None (no Redis) lets every login through."""

    def __init__(self, settings: Settings, backoff: LoginBackoff | None) -> None:
        self._backoff = backoff
        self._fingerprint = login_fingerprint(settings)
        self._to_check = settings_to_check(settings)
        self._lock = threading.Lock()
        #: a login whose session has not yet been judged (a refusal counts once per login)
        self._fresh = False
        #: this process has seen refusals counted: a working session must clear them
        self._dirty = False

    # --- the gate ------------------------------------------------------------------------
    def before_login(self) -> None:
        """Raise :class:`LoginDeferred` while refusals back off; else take the turn."""
        if self._backoff is None:
            return
        wait, failures = self._backoff.admit(self._fingerprint)
        if failures:
            self._dirty = True
        if wait > 0:
            state = self._backoff.state()
            raise LoginDeferred(
                (state.line() or "Salesforce refused the last login") + f"; check {self._to_check}",
                wait,
            )

    def login(self, build: Callable[[], Salesforce]) -> Salesforce:
        """Log in through the gate and keep simple-salesforce's own re-logins behind it too."""
        sf: Salesforce = self._attempt(build)
        partial = getattr(sf, "_salesforce_login_partial", None)
        if partial is not None:
            # simple-salesforce types it as a functools.partial; it only ever calls it.
            setattr(sf, "_salesforce_login_partial", self._relogin(partial))  # noqa: B010
        self.watch(sf.session)
        return sf

    def _relogin(self, partial: Callable[[], Any]) -> Callable[[], Any]:
        def relogin() -> Any:
            # simple-salesforce calls this after 401 INVALID_SESSION_ID only. A session that
            # worked and then expired is not counted (session_refused); either way the caller's
            # query is waiting: wait for the turn while the backoff is short, as any caller of
            # the shared count would, instead of failing the task that happened to ask first.
            self.session_refused("Salesforce refused the session (401 INVALID_SESSION_ID)")
            deadline = time.monotonic() + RELOGIN_WAIT_MAX_S
            while True:
                try:
                    return self._attempt(partial)
                except LoginDeferred as exc:
                    if time.monotonic() + exc.wait_s > deadline:
                        raise
                    time.sleep(max(exc.wait_s, 0.05))

        return relogin

    def _attempt(self, call: Callable[[], Any]) -> Any:
        self.before_login()
        try:
            result = call()
        except SalesforceAuthenticationFailed as exc:
            reason = refusal_reason(exc)
            wait = self._count(f"refused the login ({reason})")
            raise LoginRefused(
                f"Salesforce refused the login ({reason}): check {self._to_check}", wait
            ) from None
        with self._lock:
            self._fresh = True
        return result

    # --- what the sessions say -----------------------------------------------------------
    def session_refused(self, reason: str) -> None:
        """The session of the last login was refused (counted once per login)."""
        with self._lock:
            fresh, self._fresh = self._fresh, False
        if fresh:
            self._count(reason)

    def accepted(self) -> None:
        """A session worked: clear the refusals (one Redis call, only after refusals)."""
        with self._lock:
            self._fresh = False
            dirty, self._dirty = self._dirty, False
        if dirty and self._backoff is not None:
            try:
                self._backoff.accepted()
            except Exception as exc:  # the count then clears at the next accepted session
                self._dirty = True
                log.debug("login refusals not cleared: %s", exc)

    def watch(self, session: requests.Session) -> None:
        """Clear the refusals when a data call on ``session`` is answered 2xx."""

        def on_response(response: requests.Response, *_: Any, **__: Any) -> None:
            login_answer = any(path in response.url for path in _LOGIN_PATHS)
            if response.status_code < 300 and not login_answer:
                # The session worked: a later 401 on it is an expiry, not a refusal.
                self._fresh = False
                if self._dirty:
                    self.accepted()

        hooks = session.hooks.setdefault("response", [])
        if not any(getattr(hook, "crmsync_gate", None) is self for hook in hooks):
            on_response.crmsync_gate = self  # type: ignore[attr-defined]
            hooks.append(on_response)

    def _count(self, reason: str) -> float:
        if self._backoff is None:
            return 0.0
        self._dirty = True
        failures, wait = self._backoff.refused(self._fingerprint, reason)
        log.warning(
            "salesforce login backoff: %s (%d in a row); next login in %.0f s at the earliest; "
            "check %s",
            reason,
            failures,
            wait,
            self._to_check,
        )
        return wait
