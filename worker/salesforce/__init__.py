"""The Salesforce side of crmsync: client construction, its error tree and the closed-won
source. (The id rule is ``mappings/ids.py``; its names are re-exported here for callers.)"""

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
