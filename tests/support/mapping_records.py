"""Records shaped like the Salesforce source's output, for the mapping tests."""

from __future__ import annotations

from typing import Any

from mappings.ids import to_18

# The product docs use "sfdc1001" as the account id, which is not a Salesforce id (ids are 15
# or 18 letters and digits with a case checksum), so the tests use a real-looking 18-char id.
WIDGETS_ACCOUNT_ID = to_18("001Dn00000WdgEx")
WIDGETS_OPPORTUNITY_ID = to_18("006Dn00000WdgEx")


def account_id(n: int) -> str:
    """A valid 18-character Account id, distinct for each ``n``."""
    return to_18(f"001Dn{n:010d}")


def widgets_record(**account_overrides: Any) -> dict[str, Any]:
    """The documentation's WidgetsExpress example, as an Opportunity row with its Account."""
    account: dict[str, Any] = {
        "Id": WIDGETS_ACCOUNT_ID,
        "Name": "WidgetsExpress",
        "ParentId": None,
        "Parent": None,
        "Website": "https://widgetsexpress.com",
        "Billing_Email__c": "team@widgetsexpress.com",
        "Billing_Provider__c": "aws_marketplace",
        "AWS_Customer_Id__c": "ABC123ABC12",
        "AWS_Product_Code__c": "my_product",
        "AWS_Region__c": "us-west-1",
    }
    account.update(account_overrides)
    return {
        "Id": WIDGETS_OPPORTUNITY_ID,
        "AccountId": WIDGETS_ACCOUNT_ID,
        "Name": "WidgetsExpress - AWS Marketplace",
        "StageName": "Closed Won",
        "SystemModstamp": "2026-11-20T10:00:00.000+0000",
        "Account": account,
    }
