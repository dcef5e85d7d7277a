"""A local Salesforce org over plain HTTP on 127.0.0.1, for tests, ``crmsync demo`` and
``crmsync sandbox``: SOAP and OAuth login, a SOQL subset with paging, sObject writes, API
limits, expiring sessions and injected faults."""

from worker.sandbox.salesforce.app import SalesforceFaults
from worker.sandbox.salesforce.auth import SandboxCredentials
from worker.sandbox.salesforce.emulator import SalesforceEmulator

__all__ = ["SalesforceEmulator", "SalesforceFaults", "SandboxCredentials"]
