"""What the emulated org knows: objects, field types, relationships, stages, id minting.

Field names are the API names the mapping team reads (custom fields end in ``__c``); a field
outside this table is answered with ``INVALID_FIELD`` exactly as a real org answers a field it
does not have, so a typo in the mapping fails in tests instead of reading ``None`` forever.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from mappings.ids import checksum_suffix
from worker.sandbox.salesforce.metadata import custom_fields


class FieldType(enum.Enum):
    ID = "id"
    REFERENCE = "reference"
    STRING = "string"
    PICKLIST = "picklist"
    BOOLEAN = "boolean"
    DATETIME = "datetime"
    DATE = "date"
    CURRENCY = "currency"
    #: A number field (Salesforce's ``double``): stored and compared like currency.
    NUMBER = "double"


@dataclass(frozen=True, slots=True)
class Relationship:
    """``Account.Parent`` style navigation: the foreign key field and the target object."""

    name: str
    foreign_key: str
    target: str


@dataclass(frozen=True, slots=True)
class SObjectType:
    name: str
    key_prefix: str
    fields: Mapping[str, FieldType]
    relationships: Mapping[str, Relationship]
    required: tuple[str, ...]
    #: Fields the platform maintains; a client writing them gets INVALID_FIELD_FOR_INSERT_UPDATE.
    system_fields: frozenset[str]
    #: Parent-to-child relationships (``Opportunity.OpportunityLineItems``): the name a
    #: subquery's FROM uses, the child's foreign key to this object, and the child object.
    child_relationships: Mapping[str, Relationship] = field(default_factory=dict)

    def field_name(self, name: str) -> str | None:
        """The canonical spelling of ``name`` (SOQL and REST are case-insensitive)."""
        index = _FIELD_INDEX.get(self.name)
        if index is None:
            index = _FIELD_INDEX[self.name] = {field.lower(): field for field in self.fields}
        return index.get(name.lower())

    def child_relationship(self, name: str) -> Relationship | None:
        for canonical, relationship in self.child_relationships.items():
            if canonical.lower() == name.lower():
                return relationship
        return None

    def relationship(self, name: str) -> Relationship | None:
        for canonical, relationship in self.relationships.items():
            if canonical.lower() == name.lower():
                return relationship
        return None


_FIELD_INDEX: dict[str, dict[str, str]] = {}


_SYSTEM = frozenset(
    {"Id", "SystemModstamp", "LastModifiedDate", "CreatedDate", "IsDeleted", "MasterRecordId"}
)

BILLING_PROVIDERS = (
    "aws_marketplace",
    "azure_marketplace",
    "gcp_marketplace",
    "stripe",
    "netsuite",
)

ACCOUNT = SObjectType(
    name="Account",
    key_prefix="001",
    fields={
        "Id": FieldType.ID,
        "Name": FieldType.STRING,
        "ParentId": FieldType.REFERENCE,
        "Website": FieldType.STRING,
        "SystemModstamp": FieldType.DATETIME,
        "LastModifiedDate": FieldType.DATETIME,
        "CreatedDate": FieldType.DATETIME,
        "IsDeleted": FieldType.BOOLEAN,
        "MasterRecordId": FieldType.REFERENCE,
        "Billing_Email__c": FieldType.STRING,
        "Billing_Provider__c": FieldType.PICKLIST,
        "AWS_Customer_Id__c": FieldType.STRING,
        "AWS_Product_Code__c": FieldType.STRING,
        "AWS_Region__c": FieldType.STRING,
        "Azure_Subscription_Id__c": FieldType.STRING,
        "GCP_Entitlement_Id__c": FieldType.STRING,
        "GCP_Service_Name__c": FieldType.STRING,
        "Stripe_Customer_Id__c": FieldType.STRING,
        "Stripe_Collection_Method__c": FieldType.PICKLIST,
        "NetSuite_Customer_Id__c": FieldType.STRING,
    },
    relationships={
        "Parent": Relationship("Parent", "ParentId", "Account"),
        "MasterRecord": Relationship("MasterRecord", "MasterRecordId", "Account"),
    },
    required=("Name",),
    system_fields=_SYSTEM,
)

OPPORTUNITY = SObjectType(
    name="Opportunity",
    key_prefix="006",
    fields={
        "Id": FieldType.ID,
        "AccountId": FieldType.REFERENCE,
        "Name": FieldType.STRING,
        "StageName": FieldType.PICKLIST,
        "IsWon": FieldType.BOOLEAN,
        "IsClosed": FieldType.BOOLEAN,
        "CloseDate": FieldType.DATE,
        "Amount": FieldType.CURRENCY,
        "SystemModstamp": FieldType.DATETIME,
        "LastModifiedDate": FieldType.DATETIME,
        "CreatedDate": FieldType.DATETIME,
        "IsDeleted": FieldType.BOOLEAN,
        # The contract terms a closed-won deal carries to Metronome (issue #13): which rate
        # card, when the contract starts, how many months it runs, and the prepaid commit.
        "Metronome_Rate_Card__c": FieldType.STRING,
        "Contract_Start_Date__c": FieldType.DATE,
        "Contract_Term_Months__c": FieldType.NUMBER,
        "Prepaid_Commit_Amount__c": FieldType.CURRENCY,
        # Present in orgs with multi-currency enabled (an ISO 4217 code picklist); the
        # emulated org is one, so a deal's currency can be read next to its amounts.
        "CurrencyIsoCode": FieldType.PICKLIST,
        # What kind of deal it is (a standard picklist; orgs add values such as Renewal or
        # Expansion). The earlier deal an expansion or renewal changes is the custom lookup
        # Metronome_Parent_Opportunity__c, loaded from the DX source like every custom field.
        "Type": FieldType.PICKLIST,
    },
    relationships={
        "Account": Relationship("Account", "AccountId", "Account"),
        "Metronome_Parent_Opportunity__r": Relationship(
            "Metronome_Parent_Opportunity__r", "Metronome_Parent_Opportunity__c", "Opportunity"
        ),
    },
    required=("Name", "StageName", "CloseDate"),
    system_fields=_SYSTEM | {"IsWon", "IsClosed"},
    child_relationships={
        "OpportunityLineItems": Relationship(
            "OpportunityLineItems", "OpportunityId", "OpportunityLineItem"
        )
    },
)

PRODUCT2 = SObjectType(
    name="Product2",
    key_prefix="01t",
    fields={
        "Id": FieldType.ID,
        "Name": FieldType.STRING,
        "ProductCode": FieldType.STRING,
        "Family": FieldType.PICKLIST,
        "IsActive": FieldType.BOOLEAN,
        "Description": FieldType.STRING,
        "SystemModstamp": FieldType.DATETIME,
        "LastModifiedDate": FieldType.DATETIME,
        "CreatedDate": FieldType.DATETIME,
        "IsDeleted": FieldType.BOOLEAN,
        # Which Metronome product this Salesforce product is billed as, and how
        # (Metronome_Product_Id__c, Metronome_Kind__c): custom fields loaded from the DX source.
    },
    relationships={},
    required=("Name",),
    system_fields=_SYSTEM,
)

OPPORTUNITY_LINE_ITEM = SObjectType(
    name="OpportunityLineItem",
    key_prefix="00k",
    fields={
        "Id": FieldType.ID,
        "OpportunityId": FieldType.REFERENCE,
        "Product2Id": FieldType.REFERENCE,
        "Quantity": FieldType.NUMBER,
        "UnitPrice": FieldType.CURRENCY,
        # The product's price-book price; Salesforce copies it from the PricebookEntry
        # (not modelled): here it is the unit price the line was created with.
        "ListPrice": FieldType.CURRENCY,
        # Quantity x UnitPrice less Discount %: read-only, computed on every write.
        "TotalPrice": FieldType.CURRENCY,
        "Discount": FieldType.NUMBER,
        "ServiceDate": FieldType.DATE,
        "Description": FieldType.STRING,
        "SortOrder": FieldType.NUMBER,
        "SystemModstamp": FieldType.DATETIME,
        "LastModifiedDate": FieldType.DATETIME,
        "CreatedDate": FieldType.DATETIME,
        "IsDeleted": FieldType.BOOLEAN,
    },
    relationships={
        "Opportunity": Relationship("Opportunity", "OpportunityId", "Opportunity"),
        "Product2": Relationship("Product2", "Product2Id", "Product2"),
    },
    required=("OpportunityId", "Product2Id", "Quantity", "UnitPrice"),
    system_fields=_SYSTEM | {"TotalPrice", "ListPrice"},
)


def _deployed(sobject: SObjectType) -> SObjectType:
    """``sobject`` with the custom fields of the DX source that deploys them to an org
    (metadata.py): the emulator and a real org read the same files, so they cannot drift."""
    declared = {name: FieldType(kind) for name, kind in custom_fields(sobject.name).items()}
    return replace(sobject, fields={**sobject.fields, **declared})


ACCOUNT, OPPORTUNITY = _deployed(ACCOUNT), _deployed(OPPORTUNITY)
PRODUCT2, OPPORTUNITY_LINE_ITEM = _deployed(PRODUCT2), _deployed(OPPORTUNITY_LINE_ITEM)

SOBJECTS: dict[str, SObjectType] = {
    "account": ACCOUNT,
    "opportunity": OPPORTUNITY,
    "product2": PRODUCT2,
    "opportunitylineitem": OPPORTUNITY_LINE_ITEM,
}


def sobject_type(name: str) -> SObjectType | None:
    return SOBJECTS.get(name.lower())


#: StageName -> (IsClosed, IsWon). Salesforce derives both flags from the stage's
#: configuration, never from its label, which is why the worker filters on ``IsWon``.
DEFAULT_STAGES: dict[str, tuple[bool, bool]] = {
    "Prospecting": (False, False),
    "Qualification": (False, False),
    "Needs Analysis": (False, False),
    "Value Proposition": (False, False),
    "Negotiation/Review": (False, False),
    "Closed Won": (True, True),
    "Closed Lost": (True, False),
}

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def mint_id(key_prefix: str, serial: int) -> str:
    """A real-looking 18-character id: prefix, pod, base-62 serial, checksum suffix.

    The serial uses both letter cases on purpose, so the checksum suffix matters and tests
    catch code that compares ids case-insensitively.
    """
    digits = []
    value = serial
    for _ in range(10):
        value, remainder = divmod(value, 62)
        digits.append(_BASE62[remainder])
    id15 = key_prefix + "Hp" + "".join(reversed(digits))
    return id15 + checksum_suffix(id15)
