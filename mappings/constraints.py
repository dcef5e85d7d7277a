"""What Metronome accepts for a customer, checked before anything leaves the mapping.

Each limit comes from the official spec (``POST /v1/customers`` in metronome-openapi.json) and
is checked here rather than left to a 400 from the API: a record that cannot become a valid
customer must fail as one ``MappingError`` listing every problem, before the upsert engine has
made any call, so there is never a half-built customer in Metronome.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from mappings.desired import REQUIRED_CONFIGURATION_KEYS

#: ``name`` "will be truncated to 160 characters if the provided name is longer"; we truncate
#: ourselves so the desired name equals what Metronome stores and compares equal next poll.
NAME_MAX_CHARS = 160
#: ``ingest_aliases`` items: minLength 1, maxLength 128; the array: maxItems 2000.
ALIAS_MAX_CHARS = 128
ALIASES_MAX_COUNT = 2000
#: ``POST /v1/customFields/setValues``: values longer than 200 characters are refused.
CUSTOM_FIELD_VALUE_MAX_CHARS = 200
#: ``delivery_method`` enum of CustomerBillingProviderConfiguration.
DELIVERY_METHODS = frozenset({"direct_to_billing_provider", "aws_sqs", "tackle", "aws_sns"})
#: The spec's ``AwsRegion`` enum, verbatim (metronome-sdk 4.12 carries the same Literal).
AWS_REGIONS = frozenset(
    {
        "af-south-1",
        "ap-east-1",
        "ap-northeast-1",
        "ap-northeast-2",
        "ap-northeast-3",
        "ap-south-1",
        "ap-southeast-1",
        "ap-southeast-2",
        "ca-central-1",
        "cn-north-1",
        "cn-northwest-1",
        "eu-central-1",
        "eu-north-1",
        "eu-south-1",
        "eu-west-1",
        "eu-west-2",
        "eu-west-3",
        "me-south-1",
        "sa-east-1",
        "us-east-1",
        "us-east-2",
        "us-gov-east-1",
        "us-gov-west-1",
        "us-west-1",
        "us-west-2",
    }
)
#: The spec's ``StripeCollectionMethod`` enum.
STRIPE_COLLECTION_METHODS = frozenset(
    {
        "charge_automatically",
        "send_invoice",
        "auto_charge_payment_intent",
        "manually_charge_payment_intent",
    }
)
#: Configuration keys whose values must come from a closed list.
_ENUM_KEYS: dict[str, frozenset[str]] = {
    "aws_region": AWS_REGIONS,
    "stripe_collection_method": STRIPE_COLLECTION_METHODS,
}

Problem = tuple[str, str]


#: C0 and C1 control characters (tab and newline included): never part of a display name.
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def clean_name(name: str) -> str:
    """A display name without control characters, each replaced by a space.

    A NUL, an escape sequence or a newline pasted into a Salesforce account name would reach
    invoices and dashboards as-is (or be refused); nothing else about the name changes, so
    names without control characters keep their exact text and state hash.
    """
    return _CONTROL_CHARACTERS.sub(" ", name)


def truncate_name(name: str) -> str:
    """The name as Metronome will store it (160 code points)."""
    return name[:NAME_MAX_CHARS]


def alias_problems(aliases: Sequence[str], path: str = "ingest_aliases") -> list[Problem]:
    problems: list[Problem] = [
        (
            f"{path}[{index}]",
            f"alias is {len(alias)} characters; the API allows {ALIAS_MAX_CHARS}",
        )
        for index, alias in enumerate(aliases)
        if len(alias) > ALIAS_MAX_CHARS
    ]
    if len(aliases) > ALIASES_MAX_COUNT:
        problems.append(
            (path, f"{len(aliases)} aliases; Metronome allows at most {ALIASES_MAX_COUNT}")
        )
    return problems


def custom_field_problems(fields: Mapping[str, str]) -> list[Problem]:
    return [
        (
            f"custom_fields.{key}",
            f"value is {len(value)} characters; Metronome allows {CUSTOM_FIELD_VALUE_MAX_CHARS}",
        )
        for key, value in fields.items()
        if len(value) > CUSTOM_FIELD_VALUE_MAX_CHARS
    ]


def configuration_problems(
    path: str, provider: str, configuration: Mapping[str, object]
) -> list[Problem]:
    """Required keys present and enum-valued keys inside their enum.

    A missing key or an unknown region is refused by ``setCustomerBillingProviderConfigurations``
    only after the customer exists, which would leave a customer without its billing
    destination: better to refuse the whole record up front.
    """
    problems: list[Problem] = []
    for key in REQUIRED_CONFIGURATION_KEYS.get(provider, ()):
        if configuration.get(key) in (None, ""):
            problems.append((f"{path}.configuration.{key}", f"required for {provider}; missing"))
    for key, allowed in _ENUM_KEYS.items():
        value = configuration.get(key)
        if value is not None and value not in allowed:
            problems.append(
                (
                    f"{path}.configuration.{key}",
                    f"{str(value)[:64]!r} is not one of the API's values",
                )
            )
    return problems
