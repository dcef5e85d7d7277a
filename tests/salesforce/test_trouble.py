"""Every Salesforce failure the services meet becomes one line naming what to fix, and the
exceptions that cross Celery pickle to themselves (worker/salesforce/trouble.py)."""

from __future__ import annotations

import json
import pickle

import pytest
from simple_salesforce.exceptions import (
    SalesforceExpiredSession,
    SalesforceMalformedRequest,
    SalesforceRefusedRequest,
    SalesforceResourceNotFound,
)

from worker.salesforce.errors import SessionExpired
from worker.salesforce.logins import LoginDeferred, LoginRefused
from worker.salesforce.org_schema import SchemaMismatch
from worker.salesforce.trouble import SalesforceTroubleError, diagnose

URL = "https://acme.my.salesforce.com/services/data/v59.0/query"


def body(code: str, message: str) -> bytes:
    return json.dumps([{"errorCode": code, "message": message}]).encode()


@pytest.mark.parametrize(
    ("exc", "kind", "transient", "expected"),
    [
        (
            SalesforceMalformedRequest(
                URL,
                400,
                "query",
                body(
                    "INVALID_FIELD",
                    "SELECT Account.Nmae FROM Opportunity ^ ERROR at Row:1:Column:8 No such column "
                    "'Nmae' on entity 'Account'. If you are attempting to use a custom field...",
                ),
            ),
            "field",
            False,
            "Salesforce has no readable field Account.Nmae (INVALID_FIELD)",
        ),
        (
            SalesforceRefusedRequest(URL, 403, "query", body("INSUFFICIENT_ACCESS", "no")),
            "permission",
            False,
            "Crmsync_Integration permission set",
        ),
        (
            SalesforceRefusedRequest(URL, 403, "query", body("REQUEST_LIMIT_EXCEEDED", "x")),
            "quota",
            True,
            "daily API quota is exhausted",
        ),
        (
            SalesforceResourceNotFound(URL, 404, "Account", body("NOT_FOUND", "x")),
            "not_found",
            False,
            "SALESFORCE_API_VERSION",
        ),
        (
            SalesforceExpiredSession(URL, 401, "query", body("INVALID_SESSION_ID", "x")),
            "session",
            False,
            "SALESFORCE_SESSION_ID",
        ),
        (SessionExpired("expired"), "session", False, "cannot be renewed"),
        (LoginDeferred("Salesforce refuses the login since …", 4.0), "login", True, "since"),
        (LoginRefused("Salesforce refused the login (INVALID_LOGIN)"), "login", False, "refused"),
    ],
)
def test_each_failure_is_one_line_naming_the_fix(
    exc: Exception, kind: str, transient: bool, expected: str
) -> None:
    trouble = diagnose(exc)
    assert trouble is not None
    assert (trouble.kind, trouble.transient) == (kind, transient)
    assert expected in trouble.line
    assert "\n" not in trouble.line
    assert "{url}" not in trouble.line and "{content}" not in trouble.line
    raised = trouble.error()
    copy = pickle.loads(pickle.dumps(raised))  # noqa: S301 - our own bytes
    assert (str(copy), copy.kind, copy.transient) == (trouble.line, kind, transient)


def test_a_failure_behind_another_is_found_and_a_bug_is_not_one() -> None:
    try:
        try:
            raise SalesforceRefusedRequest(URL, 403, "query", body("API_DISABLED_FOR_ORG", "x"))
        except SalesforceRefusedRequest as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as outer:
        found = diagnose(outer)
    assert found is not None and found.kind == "permission"
    assert diagnose(KeyError("records")) is None


@pytest.mark.parametrize(
    "exc",
    [
        SchemaMismatch("crmsync: Salesforce field Account.Nmae ..."),
        SalesforceTroubleError("a line", "field", False),
        LoginDeferred("wait", 2.5),
        LoginRefused("refused", 1.0),
    ],
)
def test_our_exceptions_pickle_to_themselves(exc: Exception) -> None:
    copy = pickle.loads(pickle.dumps(exc))  # noqa: S301 - our own bytes
    assert type(copy) is type(exc) and str(copy) == str(exc)
