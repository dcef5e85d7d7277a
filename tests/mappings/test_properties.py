"""Property-based tests over generated records (hypothesis).

Whatever Salesforce sends, the mapping is a function: deterministic, insensitive to key order,
raising nothing but ``MappingError``, and every customer it does produce is one the Metronome
API accepts. The API checks below are written from the spec independently of
``mappings.constraints`` so a wrong limit there cannot hide here.
"""

from __future__ import annotations

import random
import typing
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from metronome.types.v1 import customer_create_params

from mappings import DesiredCustomer, Mapping, MappingError, load_default_mapping, parse_mapping
from mappings.desired import REQUIRED_CONFIGURATION_KEYS
from mappings.ids import is_valid_id, to_18

DEFAULT = load_default_mapping()
ROLLUP = DEFAULT.model_copy(
    update={"hierarchy_rollup": DEFAULT.hierarchy_rollup.model_copy(update={"enabled": True})}
)
WIDE = parse_mapping(
    """
name: {default: [{strip: {field: Account.Name}}, {format: "Account {Account.Id}"}]}
ingest_aliases:
  - {field: Account.Billing_Email__c}
  - {lower: {field: Account.Billing_Email__c}}
  - {format: "web:{Account.Website}"}
  - {field: Account.Parent.Id}
custom_fields:
  website: {field: Account.Website}
  provider: {lower: {field: Account.Billing_Provider__c}}
billing_provider_configurations:
  - when: {any: [{equals: {field: Account.Billing_Provider__c, value: aws_marketplace}},
                 {all: [{present: Account.AWS_Customer_Id__c}, {present: Account.AWS_Region__c}]}]}
    billing_provider: aws_marketplace
    delivery_method: aws_sqs
    configuration:
      aws_customer_id: {field: Account.AWS_Customer_Id__c}
      aws_product_code: {default: [{field: Account.AWS_Product_Code__c}, {literal: p}]}
      aws_region: {field: Account.AWS_Region__c}
      aws_is_subscription_product: {field: Account.Flag__c}
  - when: {in: {field: Account.Billing_Provider__c, values: [stripe, netsuite]}}
    billing_provider: netsuite
    delivery_method: direct_to_billing_provider
    configuration:
      netsuite_customer_id: {field: Account.NetSuite_Customer_Id__c}
"""
)
MAPPINGS = [DEFAULT, ROLLUP, WIDE]
SPEC_REGIONS = set(
    typing.get_args(typing.get_type_hints(customer_create_params.BillingConfig)["aws_region"])
)
PROVIDERS = [*REQUIRED_CONFIGURATION_KEYS, "paypal", None, None]


def mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``good`` about nine times in ten, so valid customers are common, not a lucky corner."""
    return st.integers(0, 9).flatmap(lambda n: bad if n == 0 else good)


ids15 = st.text(alphabet="0123456789abcdefABCDEF", min_size=15, max_size=15)
valid_ids = st.one_of(ids15, ids15.map(to_18))
any_ids = mostly(valid_ids, st.one_of(st.none(), st.text(max_size=20), st.integers()))
short_texts = st.one_of(
    st.text(min_size=1, max_size=12),
    st.sampled_from(["us-west-1", "eu-central-1", " US-EAST-1 ", "team@x.io", "Acme"]),
)
odd_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(min_size=120, max_size=260),
    st.sampled_from(["", "   ", "mars-1"]),
)
scalars = mostly(short_texts, odd_scalars)
values = mostly(scalars, st.dictionaries(st.text(max_size=3), scalars, max_size=2))

ACCOUNT_FIELDS = [
    "Name",
    "Website",
    "Billing_Email__c",
    "AWS_Customer_Id__c",
    "AWS_Product_Code__c",
    "AWS_Region__c",
    "Azure_Subscription_Id__c",
    "GCP_Entitlement_Id__c",
    "GCP_Service_Name__c",
    "Stripe_Customer_Id__c",
    "Stripe_Collection_Method__c",
    "NetSuite_Customer_Id__c",
    "Flag__c",
]


@st.composite
def accounts(draw: st.DrawFn, depth: int = 0) -> dict[str, Any]:
    account: dict[str, Any] = {"Id": draw(any_ids)}
    for field in ACCOUNT_FIELDS:
        if draw(st.integers(0, 3)) > 0:
            account[field] = draw(values)
    account["Billing_Provider__c"] = draw(st.sampled_from(PROVIDERS))
    if depth < 5 and draw(st.integers(0, 2)) == 0:
        account["Parent"] = draw(accounts(depth + 1))
        account["ParentId"] = account["Parent"].get("Id")
    return account


@st.composite
def records(draw: st.DrawFn) -> dict[str, Any]:
    account = draw(mostly(accounts(), st.one_of(st.none(), st.text(max_size=3))))
    record: dict[str, Any] = {"Id": draw(any_ids), "AccountId": draw(any_ids), "Name": draw(values)}
    if account is not None:
        record["Account"] = account
    if isinstance(account, dict) and "Parent" in account and draw(st.integers(0, 3)) == 0:
        # A cycle: the deepest parent points back at the account.
        deepest = account
        while isinstance(deepest.get("Parent"), dict):
            deepest = deepest["Parent"]
        deepest["Parent"] = {"Id": account.get("Id"), "Name": "loop"}
    return record


def shuffled(value: Any, rng: random.Random) -> Any:
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {key: shuffled(item, rng) for key, item in items}
    return value


def outcome(mapping: Mapping, record: dict[str, Any]) -> DesiredCustomer | MappingError:
    try:
        return mapping.map_record(record)
    except MappingError as exc:
        return exc


def assert_api_accepts(desired: DesiredCustomer) -> None:
    """POST /v1/customers constraints from the spec, restated independently."""
    assert desired.name.strip()
    assert len(desired.name) <= 160
    assert len(desired.ingest_aliases) <= 2000
    assert len(set(desired.ingest_aliases)) == len(desired.ingest_aliases)
    assert all(1 <= len(alias) <= 128 for alias in desired.ingest_aliases)
    assert desired.identity_alias in desired.ingest_aliases
    assert all(isinstance(v, str) and len(v) <= 200 for v in desired.custom_fields.values())
    assert desired.custom_fields["sfdc_account_id"] == desired.salesforce_account_id
    assert len(desired.salesforce_account_id) == 18
    assert is_valid_id(desired.salesforce_account_id)
    for config in desired.billing_provider_configurations:
        assert config.delivery_method in {
            "direct_to_billing_provider",
            "aws_sqs",
            "tackle",
            "aws_sns",
        }
        for key in REQUIRED_CONFIGURATION_KEYS[config.billing_provider]:
            assert config.configuration[key] not in (None, "")
        if "aws_region" in config.configuration:
            assert config.configuration["aws_region"] in SPEC_REGIONS


PROFILE = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROFILE
@given(record=records(), which=st.sampled_from(range(len(MAPPINGS))))
def test_only_mapping_errors_and_valid_customers(record: dict[str, Any], which: int) -> None:
    result = outcome(MAPPINGS[which], record)
    if isinstance(result, MappingError):
        assert result.problems
        assert all(isinstance(p, str) and isinstance(m, str) for p, m in result.problems)
    else:
        assert_api_accepts(result)


@PROFILE
@given(record=records(), which=st.sampled_from(range(len(MAPPINGS))), seed=st.integers())
def test_deterministic_and_independent_of_key_order(
    record: dict[str, Any], which: int, seed: int
) -> None:
    mapping = MAPPINGS[which]
    first, again = outcome(mapping, record), outcome(mapping, record)
    reordered = outcome(mapping, shuffled(record, random.Random(seed)))
    if isinstance(first, DesiredCustomer):
        assert first == again == reordered
        assert first.state_hash() == again.state_hash() == reordered.state_hash()
    else:
        assert isinstance(again, MappingError)
        assert isinstance(reordered, MappingError)
        assert first.problems == again.problems
        assert sorted(first.problems) == sorted(reordered.problems)


@PROFILE
@given(record=records(), seed=st.integers())
def test_hash_is_stable_when_the_mapping_lists_aliases_in_another_order(
    record: dict[str, Any], seed: int
) -> None:
    aliases = list(WIDE.ingest_aliases)
    random.Random(seed).shuffle(aliases)
    reordered = WIDE.model_copy(update={"ingest_aliases": aliases})
    first, second = outcome(WIDE, record), outcome(reordered, record)
    if isinstance(first, DesiredCustomer):
        assert isinstance(second, DesiredCustomer)
        assert first.state_hash() == second.state_hash()
    else:
        assert isinstance(second, MappingError)
