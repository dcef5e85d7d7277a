"""Salesforce's circuit breaker: polling pauses while Salesforce is down or its daily API quota
is spent, with the cursors untouched, and resumes by itself.

The shared state and its transitions are ``worker/outages/breaker.py``'s; here is what they mean for
the poll (``tasks/poll.py``):

- **A failure is a poll** that Salesforce answered with a 5xx, with something unreadable, or
  not at all (timeout, refused connection, a login page that is not one). After
  CRMSYNC_BREAKER_FAILURES of them in a row polls pause; one poll is the probe every
  max(CRMSYNC_BREAKER_PROBE_S, CRMSYNC_POLL_INTERVAL_S); the first that works resumes them.
- **The daily quota** (403 ``REQUEST_LIMIT_EXCEEDED``, or usage at SALESFORCE_QUOTA_FRACTION of
  the limit: ``worker.salesforce.source.QuotaReached``) pauses at once: every poll until it
  frees up would only spend more of it. The quota is a rolling 24 h window with no reset time
  to wait for, so one poll probes every CRMSYNC_SALESFORCE_QUOTA_PROBE_S (one API call each).
- A paused poll makes no Salesforce call and moves no cursor: when polls resume, the first
  reads everything changed meanwhile (the cursors are where the last good poll left them).
- A wrong password or an expired pre-issued session is not an outage: it fails the poll with
  its own message, as before, and a person must act.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import requests
from simple_salesforce.exceptions import SalesforceAuthenticationFailed, SalesforceGeneralError

from worker.outages.breaker import SALESFORCE, Admission, BreakerState, CircuitBreaker, Policy

if TYPE_CHECKING:
    import redis

    from worker.settings import Settings
    from worker.state.keys import Keys


class SalesforcePause:
    """The poll's view of Salesforce's breaker."""

    def __init__(self, breaker: CircuitBreaker, *, quota_probe_s: float) -> None:
        self.breaker = breaker
        self.quota_probe_s = quota_probe_s

    @classmethod
    def from_settings(cls, settings: Settings, client: redis.Redis, keys: Keys) -> SalesforcePause:
        # A probe more often than polls come would be no pause at all.
        policy = Policy(
            failures=settings.breaker_failures,
            probe_s=max(settings.breaker_probe_s, settings.poll_interval_s),
        )
        return cls(
            CircuitBreaker(client, keys, SALESFORCE, policy),
            quota_probe_s=settings.salesforce_quota_probe_s,
        )

    def admit(self) -> Admission:
        return self.breaker.admit()

    def outage(self, reason: str, admission: Admission) -> str:
        return self.breaker.failed(f"Salesforce: {reason}", probe=admission.probe)

    def quota(self, reason: str) -> str:
        return self.breaker.failed(
            f"Salesforce quota: {reason}", force=True, probe_after_s=self.quota_probe_s
        )

    def succeeded(self, admission: Admission) -> bool:
        return self.breaker.succeeded(probe=admission.probe)

    def release(self, admission: Admission) -> None:
        self.breaker.release(admission.token)

    def state(self) -> BreakerState:
        return self.breaker.state()


def outage_reason(exc: BaseException) -> str | None:
    """Why ``exc`` says Salesforce is down (a 5xx, no answer, a login page that is not one),
    or None when it says something a person must fix."""
    if isinstance(exc, SalesforceGeneralError) and exc.status >= 500:
        return f"answered {exc.status}"
    if isinstance(exc, SalesforceAuthenticationFailed) and not _login_refused(exc):
        return f"login failed without a reason ({str(exc)[:200]})"
    if isinstance(exc, requests.ConnectionError | requests.Timeout):
        return f"no answer ({type(exc).__name__})"
    return None


def _login_refused(exc: SalesforceAuthenticationFailed) -> bool:
    """A login Salesforce *refused* names why (INVALID_LOGIN, a locked user...): not an
    outage. A 503 page in place of the login answer names nothing."""
    code = getattr(exc, "code", None)
    if code is None or str(code) == "SERVER_UNAVAILABLE":
        return False
    return not (str(code).isdigit() and int(str(code)) >= 500)
