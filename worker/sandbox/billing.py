"""The Account fields each billing provider needs, for accounts made in the sandbox org.

The demo's seed, the benchmark's and ``crmsync sandbox add-account`` all make accounts the
default mapping turns into a valid customer; the fields each provider's branch of that mapping
reads live here, in the sandbox, so the sandbox never needs the demo (the demo uses the
sandbox, not the other way round).
"""

from __future__ import annotations

from typing import Any

#: Every billing provider the default mapping knows, and none (the demo's and the benchmark's
#: seeded accounts cycle through them).
PROVIDERS: tuple[str | None, ...] = (
    "aws_marketplace",
    "azure_marketplace",
    "gcp_marketplace",
    "stripe",
    "netsuite",
    None,
)


def provider_fields(provider: str | None, n: int, tag: str = "demo") -> dict[str, Any]:
    """The Account fields the default mapping needs for ``provider`` (complete and valid),
    unique per ``n``; ``tag`` marks whose seed made them (the demo's, the benchmark's)."""
    fields: dict[str, Any] = {"Billing_Provider__c": provider}
    if provider == "aws_marketplace":
        fields |= {
            "AWS_Customer_Id__c": f"AWSCUST{n:07d}",
            "AWS_Product_Code__c": f"crmsync_{tag}",
            "AWS_Region__c": "us-west-1",
        }
    elif provider == "azure_marketplace":
        fields["Azure_Subscription_Id__c"] = f"00000000-0000-4000-8000-{n:012d}"
    elif provider == "gcp_marketplace":
        fields |= {"GCP_Entitlement_Id__c": f"ent-{n:07d}", "GCP_Service_Name__c": f"{tag}.svc"}
    elif provider == "stripe":
        fields |= {"Stripe_Customer_Id__c": f"cus_{tag}{n:07d}"}
    elif provider == "netsuite":
        fields["NetSuite_Customer_Id__c"] = f"NS-{n:07d}"
    return fields
