"""The Salesforce side of crmsync: client construction, id rules and the closed-won source."""

from mappings.ids import InvalidSalesforceId, normalize_salesforce_id
from worker.salesforce.client import (
    SalesforceNotConfigured,
    TimeoutSession,
    build_salesforce,
)
from worker.salesforce.cursors import Cursors, SourceEvent
from worker.salesforce.source import (
    ClosedWonSource,
    PollReader,
    QuotaReached,
    SessionExpired,
    strip_attributes,
)

__all__ = [
    "ClosedWonSource",
    "Cursors",
    "InvalidSalesforceId",
    "PollReader",
    "QuotaReached",
    "SalesforceNotConfigured",
    "SessionExpired",
    "SourceEvent",
    "TimeoutSession",
    "build_salesforce",
    "normalize_salesforce_id",
    "strip_attributes",
]
