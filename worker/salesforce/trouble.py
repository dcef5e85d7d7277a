"""A Salesforce failure met while running, as one line an operator can act on.

The worker, the beat and the listener never print simple-salesforce's exceptions: their
``str()`` is a template (``Malformed request {url}. Response content: {content}``) and they do
not pickle (Celery wraps them as ``UnpickleableExceptionWrapper``). :func:`diagnose` reads the
status, the ``errorCode`` and the message out of them instead and names what to fix:

==========================  ==========  =================================================
what Salesforce said        kind        transient?
==========================  ==========  =================================================
a login refused (reason)    login       no: the SALESFORCE_* settings, or the user
logins backing off          login       yes: the next login after the shared wait
session refused, no login   session     no: a new SALESFORCE_SESSION_ID
400 INVALID_FIELD           field       no: the mapping, or the field's metadata / access
403 REQUEST_LIMIT_EXCEEDED  quota       yes: the rolling 24 h quota frees up
other 403 (no access)       permission  no: the integration user's permissions
404 NOT_FOUND               not_found   no: SALESFORCE_API_VERSION or the object
==========================  ==========  =================================================

An outage (5xx, no answer) is not here: ``worker/outages/salesforce.py`` reads those, and the
breaker waits them out.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from simple_salesforce.exceptions import (
    SalesforceError,
    SalesforceExpiredSession,
    SalesforceMalformedRequest,
    SalesforceRefusedRequest,
    SalesforceResourceNotFound,
)

from worker.salesforce.errors import QuotaReached, SalesforceFailure, SessionExpired
from worker.salesforce.logins import LoginDeferred, LoginRefused
from worker.salesforce.org_schema import FIX as FIELD_FIX

#: Salesforce's words for a field the query names but the org (or the user) does not have.
_NO_SUCH_COLUMN = re.compile(r"No such column '([^']+)' on entity '([^']+)'")
_NO_RELATION = re.compile(r"Didn't understand relationship '([^']+)'")


@dataclass(frozen=True, slots=True)
class SalesforceTrouble:
    """What went wrong, in one line that names the setting or field to fix."""

    kind: str
    line: str
    transient: bool
    wait_s: float = 0.0

    def error(self) -> SalesforceTroubleError:
        return SalesforceTroubleError(self.line, self.kind, self.transient)


class SalesforceTroubleError(SalesforceFailure):
    """A :class:`SalesforceTrouble` raised: pickles to itself (one line, its kind)."""

    def __init__(self, line: str, kind: str = "", transient: bool = False) -> None:
        super().__init__(line)
        self.kind = kind
        self.transient = transient

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.kind, self.transient))


def error_code(exc: SalesforceError) -> tuple[str, str]:
    """(errorCode, message) of a REST error body ``[{"errorCode", "message"}]``."""
    content: Any = exc.content
    if isinstance(content, bytes | str):
        try:
            content = json.loads(content)
        except ValueError:
            return "", " ".join(str(content).split())[:200]
    if isinstance(content, list) and content and isinstance(content[0], dict):
        first = content[0]
        return str(first.get("errorCode") or ""), " ".join(str(first.get("message", "")).split())
    if isinstance(content, dict):
        return str(content.get("errorCode") or content.get("error") or ""), str(
            content.get("message") or content.get("error_description") or ""
        )
    return "", ""


def missing_field(message: str) -> tuple[str, str] | None:
    """(object, field) named by an INVALID_FIELD message, when it names them."""
    found = _NO_SUCH_COLUMN.search(message)
    if found:
        return found.group(2), found.group(1)
    found = _NO_RELATION.search(message)
    if found:
        return "", found.group(1)
    return None


def diagnose(exc: BaseException) -> SalesforceTrouble | None:
    """The operator's line for ``exc`` (or anything behind it), None when it is not one of
    the failures above (an outage, or a bug: those keep their own handling)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        found = _diagnose_one(current)
        if found is not None:
            return found
        current = current.__cause__ or current.__context__
    return None


def _diagnose_one(exc: BaseException) -> SalesforceTrouble | None:
    if isinstance(exc, LoginDeferred):
        return SalesforceTrouble("login", str(exc), transient=True, wait_s=exc.wait_s)
    if isinstance(exc, LoginRefused):
        return SalesforceTrouble("login", str(exc), transient=False, wait_s=exc.wait_s)
    if isinstance(exc, SalesforceTroubleError):
        return SalesforceTrouble(exc.kind, str(exc), exc.transient)
    if isinstance(exc, SessionExpired | SalesforceExpiredSession):
        return SalesforceTrouble(
            "session",
            "Salesforce refused the session and it cannot be renewed: issue a new "
            "SALESFORCE_SESSION_ID, or configure a login mode (SALESFORCE_USERNAME ...)",
            transient=False,
        )
    if isinstance(exc, QuotaReached):
        return SalesforceTrouble("quota", str(exc), transient=True)
    if isinstance(exc, SalesforceError):
        return _rest_error(exc)
    return None


def _rest_error(exc: SalesforceError) -> SalesforceTrouble | None:
    code, message = error_code(exc)
    if isinstance(exc, SalesforceMalformedRequest):
        if code == "INVALID_FIELD":
            return SalesforceTrouble("field", field_line(message), transient=False)
        return SalesforceTrouble(
            "field",
            f"Salesforce refused crmsync's query (400 {code or 'bad request'}: {message[:200]}): "
            "run `crmsync mapping check` and `crmsync check`",
            transient=False,
        )
    if isinstance(exc, SalesforceRefusedRequest):
        if code == "REQUEST_LIMIT_EXCEEDED":
            return SalesforceTrouble(
                "quota",
                "Salesforce refused the call: the org's daily API quota is exhausted "
                "(REQUEST_LIMIT_EXCEEDED); polls wait for the rolling 24 h quota to recover",
                transient=True,
            )
        return SalesforceTrouble(
            "permission",
            f"Salesforce refused the request (403 {code or 'forbidden'}: {message[:160]}): give "
            "the integration user (SALESFORCE_USERNAME) API access and read access to the mapped "
            "objects -- assign the Crmsync_Integration permission set "
            "(docs/salesforce-setup.md)",
            transient=False,
        )
    if isinstance(exc, SalesforceResourceNotFound):
        return SalesforceTrouble(
            "not_found",
            f"Salesforce answered 404 ({code or 'NOT_FOUND'}) for {exc.resource_name or 'a call'}"
            ": check SALESFORCE_API_VERSION and that the mapped objects exist in the org",
            transient=False,
        )
    return None


def field_line(message: str) -> str:
    """The line for INVALID_FIELD: the object and field when Salesforce named them."""
    named = missing_field(message)
    if named is None:
        return (
            f"Salesforce refused a field crmsync's query reads (INVALID_FIELD: {message[:200]}): "
            + FIELD_FIX
        )
    sobject, name = named
    where = f"{sobject}.{name}" if sobject else name
    return (
        f"Salesforce has no readable field {where} (INVALID_FIELD): the mapping reads it but it "
        f"does not exist or the integration user cannot read it; {FIELD_FIX}"
    )
