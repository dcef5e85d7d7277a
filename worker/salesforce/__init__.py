"""The Salesforce side of crmsync: client construction, its error tree and the closed-won
source. (The id rule is ``mappings/ids.py``; its names are re-exported here for callers.)

Importing the package imports none of its modules (PEP 562, names resolved on first use):
every command imports ``worker.salesforce.errors``, and that must not load simple-salesforce
(and zeep, requests) into a process that never talks to Salesforce.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mappings.ids import InvalidSalesforceId, normalize_salesforce_id
    from worker.salesforce.client import TimeoutSession, build_salesforce
    from worker.salesforce.cursors import Cursors, SourceEvent
    from worker.salesforce.errors import (
        QuotaReached,
        SalesforceFailure,
        SalesforceNotConfigured,
        SalesforceUnavailable,
        SalesforceUnreadable,
        SessionExpired,
    )
    from worker.salesforce.source import ClosedWonSource, PollReader, strip_attributes

__all__ = [
    "ClosedWonSource",
    "Cursors",
    "InvalidSalesforceId",
    "PollReader",
    "QuotaReached",
    "SalesforceFailure",
    "SalesforceNotConfigured",
    "SalesforceUnavailable",
    "SalesforceUnreadable",
    "SessionExpired",
    "SourceEvent",
    "TimeoutSession",
    "build_salesforce",
    "normalize_salesforce_id",
    "strip_attributes",
]

#: Each public name and the module that defines it.
_DEFINED_IN = {
    "InvalidSalesforceId": "mappings.ids",
    "normalize_salesforce_id": "mappings.ids",
    "TimeoutSession": "worker.salesforce.client",
    "build_salesforce": "worker.salesforce.client",
    "Cursors": "worker.salesforce.cursors",
    "SourceEvent": "worker.salesforce.cursors",
    "QuotaReached": "worker.salesforce.errors",
    "SalesforceFailure": "worker.salesforce.errors",
    "SalesforceNotConfigured": "worker.salesforce.errors",
    "SalesforceUnavailable": "worker.salesforce.errors",
    "SalesforceUnreadable": "worker.salesforce.errors",
    "SessionExpired": "worker.salesforce.errors",
    "ClosedWonSource": "worker.salesforce.source",
    "PollReader": "worker.salesforce.source",
    "strip_attributes": "worker.salesforce.source",
}


def __getattr__(name: str) -> Any:
    try:
        module = _DEFINED_IN[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    return getattr(import_module(module), name)
