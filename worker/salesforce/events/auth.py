"""Pub/Sub credentials from the same Salesforce login the poll uses, renewed on auth errors.

The Pub/Sub API accepts any OAuth access token or session id, so the listener logs in with
``build_salesforce`` (whichever mode the SALESFORCE_* settings describe: SOAP, OAuth password,
JWT bearer, client credentials, or a pre-issued session) and sends that session as
``accesstoken``. The org id (``tenantid``) is the prefix every Salesforce session id carries
(``00D...!...``), widened to its 18-character form; ``SALESFORCE_ORG_ID`` overrides it.

When a stream ends with ``…service.auth.error`` the session has expired or been revoked:
:meth:`Authenticator.renew` logs in again, once for all streams that saw the same expiry. A
pre-issued session cannot be renewed, which is reported instead of looping on it. The login
passes the process's :class:`~worker.salesforce.logins.LoginGate`: a session refused again and
again makes the logins wait, doubling (``CRMSYNC_LOGIN_BACKOFF_MAX_S`` at most), and the
stream waits with them (``LoginDeferred``) instead of logging in and resubscribing at once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from simple_salesforce.api import Salesforce

from mappings.ids import InvalidSalesforceId, normalize_salesforce_id
from worker.salesforce.events.client import Credentials

if TYPE_CHECKING:
    from worker.salesforce.logins import LoginGate

Login = Callable[[], Salesforce]


class CannotRenew(RuntimeError):
    """The configured login gave back the same, refused, session (a pre-issued one)."""


def org_id_of(session_id: str) -> str:
    """The 18-character org id a session id starts with (``00D`` + 12 characters + ``!``)."""
    prefix = session_id.split("!", 1)[0]
    if not prefix.startswith("00D"):
        raise ValueError(
            "cannot tell the org id from this session: set SALESFORCE_ORG_ID (Setup → Company "
            "Information → Salesforce.com Organization ID)"
        )
    try:
        return normalize_salesforce_id(prefix)
    except InvalidSalesforceId as exc:
        raise ValueError(f"session id prefix is not an org id: {exc}") from None


def credentials_of(sf: Salesforce, org_id: str | None = None) -> Credentials:
    session_id = str(sf.session_id)
    return Credentials(
        access_token=session_id,
        instance_url=f"https://{sf.sf_instance}",
        tenant_id=org_id or org_id_of(session_id),
    )


class Authenticator:
    """The current credentials, shared by every topic's stream; renewed at most once per expiry."""

    def __init__(
        self, login: Login, org_id: str | None = None, *, gate: LoginGate | None = None
    ) -> None:
        self._login = login
        self._org_id = org_id
        self._gate = gate
        self._lock = threading.Lock()
        self._current: Credentials | None = None
        self.renewals = 0

    def current(self) -> Credentials:
        with self._lock:
            if self._current is None:
                self._current = credentials_of(self._login(), self._org_id)
            return self._current

    def renew(self, refused: Credentials) -> Credentials:
        """New credentials after ``refused`` was rejected; another stream may have renewed
        them already, in which case those are returned without a second login."""
        with self._lock:
            if self._current is not None and self._current != refused:
                return self._current
            # The refused session is never offered again: if this login waits or fails, the
            # next current() logs in (through the gate) instead of subscribing with it.
            self._current = None
            if self._gate is not None:
                self._gate.session_refused("the Pub/Sub API refused the session (auth.error)")
            fresh = credentials_of(self._login(), self._org_id)
            if fresh.access_token == refused.access_token:
                raise CannotRenew(
                    "Salesforce refused the session for Pub/Sub and the configured login cannot "
                    "issue a new one (SALESFORCE_SESSION_ID is pre-issued): issue a new session "
                    "or configure a login mode"
                )
            self._current = fresh
            self.renewals += 1
            return fresh

    def accepted(self) -> None:
        """The server took the current session (a stream delivered): refusals are over."""
        if self._gate is not None:
            self._gate.accepted()
