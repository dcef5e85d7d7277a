"""What the emulated org knows: objects, field types, relationships, stages, id minting.

Field names are the API names the mapping team reads (custom fields end in ``__c``); a field
outside this table is answered with ``INVALID_FIELD`` exactly as a real org answers a field it
does not have, so a typo in the mapping fails in tests instead of reading ``None`` forever.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, replace

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

    def field_name(self, name: str) -> str | None:
        """The canonical spelling of ``name`` (SOQL and REST are case-insensitive)."""
        index = _FIELD_INDEX.get(self.name)
        if index is None:
            index = _FIELD_INDEX[self.name] = {field.lower(): field for field in self.fields}
        return index.get(name.lower())

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
    },
    relationships={"Account": Relationship("Account", "AccountId", "Account")},
    required=("Name", "StageName", "CloseDate"),
    system_fields=_SYSTEM | {"IsWon", "IsClosed"},
)


def _deployed(sobject: SObjectType) -> SObjectType:
    """``sobject`` with the custom fields of the DX source that deploys them to an org
    (metadata.py): the emulator and a real org read the same files, so they cannot drift."""
    declared = {name: FieldType(kind) for name, kind in custom_fields(sobject.name).items()}
    return replace(sobject, fields={**sobject.fields, **declared})


ACCOUNT, OPPORTUNITY = _deployed(ACCOUNT), _deployed(OPPORTUNITY)

SOBJECTS: dict[str, SObjectType] = {"account": ACCOUNT, "opportunity": OPPORTUNITY}


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
