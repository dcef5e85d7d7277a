"""What can go wrong with Salesforce, as crmsync names it: one tree, caught at the right level.

::

    SalesforceFailure                  anything below (never raised itself)
    ├── SalesforceNotConfigured        no SALESFORCE_* login is configured (a NotConfigured)
    ├── SessionExpired                 the pre-issued session was refused; it cannot be renewed
    └── SalesforceUnavailable          retryable: the same call later can succeed
        ├── SalesforceUnreadable       the poll's answer was unreadable, or none came
        └── QuotaReached               the org's daily API quota (or our share of it) is used

The drawing is this module's classes. Four more subclasses live beside the code that raises
them (they need it; this module needs nothing), each under the same root::

    SalesforceFailure
    ├── LoginRefused                   logins.py: Salesforce refused a login with a reason
    │                                  (INVALID_LOGIN, a frozen user, invalid_grant)
    ├── SchemaMismatch                 org_schema.py: the mapping reads fields the org refuses
    ├── SalesforceTroubleError         trouble.py: a failure diagnosed as one line (a poll run
    │                                  by hand raises it); its ``transient`` says which kind
    └── SalesforceUnavailable
        └── LoginDeferred              logins.py: raised in place of a login while refusals
                                       back off; retryable once the shared wait is over

Everything retryable sits under :class:`SalesforceUnavailable`: a poll that ends on one keeps
its cursors and the next poll reads the same rows again. The others need a person (a login
or a mapping to fix, a session to issue); the CLI turns them into one line saying what to do.

Where simple-salesforce's own exceptions go (``simple_salesforce.exceptions``):

=========================================  ===================================================
simple-salesforce raises                   crmsync
=========================================  ===================================================
``SalesforceRefusedRequest`` (403) with    :class:`QuotaReached` (``source.py``)
``REQUEST_LIMIT_EXCEEDED``
``SalesforceExpiredSession`` (401), on a   :class:`SessionExpired` (``source.py``); a client
client that cannot log in again            that can log in again renews its session itself
``SalesforceGeneralError`` 5xx,            raised as they are; ``worker/outages/salesforce.py``
``SalesforceAuthenticationFailed``         reads them as an outage (the breaker counts them)
without a reason, ``requests``
connection errors and timeouts
a ``requests`` error, or an answer that    :class:`SalesforceUnreadable` (``tasks/poll.py``,
is not the query's JSON, while a poll      while it reads the pages)
reads its pages
``SalesforceMalformedRequest`` (400),      raised as they are: a field, a query or a
``SalesforceResourceNotFound`` (404),      permission a person must fix
any other 403, a login refused with a
reason (``INVALID_LOGIN``)
=========================================  ===================================================

Two neighbours keep their own errors: a malformed record id is
:class:`mappings.ids.InvalidSalesforceId` (a ``ValueError``: the rule is pure), and the change
event stream's gRPC errors live with it in ``worker/salesforce/events``.
"""

from __future__ import annotations

from worker.settings.errors import NotConfigured


class SalesforceFailure(RuntimeError):
    """The root of crmsync's Salesforce errors; catch it to handle any of them alike."""


class SalesforceNotConfigured(SalesforceFailure, NotConfigured):
    """Raised by ``build_salesforce`` when no SALESFORCE_* login is configured (the CLI
    points the operator to ``crmsync demo``). A kind of crmsync's one ``NotConfigured``."""


class SessionExpired(SalesforceFailure):
    """Raised by a query when the pre-issued session (SALESFORCE_SESSION_ID) is no longer
    valid: that mode has no login to renew it with, so a person must issue a new one."""


class SalesforceUnavailable(SalesforceFailure):
    """The base of what passes: the same call later can succeed."""


class SalesforceUnreadable(SalesforceUnavailable):
    """Raised by a poll when Salesforce answered its query with something that is not its
    JSON (cut short, an HTML error page, the wrong shape) or not at all (timeout)."""


class QuotaReached(SalesforceUnavailable):
    """Raised by a query when the org's API usage reached the configured share of its daily
    quota (or Salesforce refused with 403 ``REQUEST_LIMIT_EXCEEDED``). A poll catches it and
    ends with its cursors unchanged; the re-sync helpers let it through, so the operator sees
    why they stopped."""
