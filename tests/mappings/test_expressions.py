"""Each expression and condition on its own, plus what the language refuses to parse."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from mappings.expressions import Cond, Expr
from mappings.records import NotAScalarError

EXPR: TypeAdapter[Any] = TypeAdapter(Expr)
COND: TypeAdapter[Any] = TypeAdapter(Cond)

RECORD: dict[str, Any] = {
    "Id": "006000000000001AAA",
    "Name": "Big deal",
    "Amount": 1200.0,
    "Account": {
        "Id": "001000000000001AAA",
        "Name": "  WidgetsExpress  ",
        "Billing_Email__c": "Team@WidgetsExpress.com",
        "Billing_Provider__c": "aws_marketplace",
        "Blank__c": "",
        "Spaces__c": "   ",
        "Null__c": None,
        "Employees__c": 42,
        "Active__c": True,
        "Parent": {"Id": "001000000000002AAA", "Name": "Widgets Holdings", "Parent": None},
    },
}


def value(spec: Any) -> Any:
    return EXPR.validate_python(spec).evaluate(RECORD)


def holds(spec: Any) -> bool:
    result: bool = COND.validate_python(spec).holds(RECORD)
    return result


class TestField:
    def test_reads_opportunity_and_account_fields(self) -> None:
        assert value({"field": "Name"}) == "Big deal"
        assert value({"field": "Account.Billing_Provider__c"}) == "aws_marketplace"

    def test_reads_parent_paths(self) -> None:
        assert value({"field": "Account.Parent.Id"}) == "001000000000002AAA"
        assert value({"field": "Account.Parent.Parent.Id"}) is None

    def test_missing_null_and_empty_are_absent(self) -> None:
        assert value({"field": "Account.Nope__c"}) is None
        assert value({"field": "Account.Null__c"}) is None
        assert value({"field": "Account.Blank__c"}) is None

    def test_field_names_match_case_insensitively(self) -> None:
        # Salesforce answers with canonical case whatever case the query used.
        assert value({"field": "account.billing_provider__C"}) == "aws_marketplace"

    def test_keeps_value_types(self) -> None:
        assert value({"field": "Account.Employees__c"}) == 42
        assert value({"field": "Account.Active__c"}) is True

    def test_a_path_landing_on_an_object_is_an_error_not_a_value(self) -> None:
        # Compound fields such as BillingAddress come back as objects.
        record = {"Account": {"BillingAddress": {"city": "Oslo"}}}
        with pytest.raises(NotAScalarError, match=r"Account\.BillingAddress"):
            EXPR.validate_python({"field": "Account.BillingAddress"}).evaluate(record)


class TestFunctions:
    def test_literal(self) -> None:
        assert value({"literal": "direct_to_billing_provider"}) == "direct_to_billing_provider"
        assert value({"literal": 7}) == 7
        assert value({"literal": None}) is None

    def test_lower(self) -> None:
        assert value({"lower": {"field": "Account.Billing_Email__c"}}) == "team@widgetsexpress.com"
        assert value({"lower": {"field": "Account.Nope__c"}}) is None

    def test_strip(self) -> None:
        assert value({"strip": {"field": "Account.Name"}}) == "WidgetsExpress"
        assert value({"strip": {"field": "Account.Spaces__c"}}) is None

    def test_default_takes_first_present_non_empty(self) -> None:
        spec = {
            "default": [
                {"field": "Account.Null__c"},
                {"field": "Account.Blank__c"},
                {"field": "Account.Billing_Provider__c"},
                {"literal": "never"},
            ]
        }
        assert value(spec) == "aws_marketplace"
        assert value({"default": [{"field": "Account.Nope__c"}, {"literal": "x"}]}) == "x"

    def test_format_fills_fields(self) -> None:
        spec = {"format": "sf-{Account.Id}/{Account.Employees__c}{{literal}}"}
        assert value(spec) == "sf-001000000000001AAA/42{literal}"

    def test_format_is_absent_when_a_field_is_absent(self) -> None:
        assert value({"format": "sf-{Account.Nope__c}"}) is None

    def test_functions_nest(self) -> None:
        spec = {"lower": {"strip": {"format": "{Account.Name}"}}}
        assert value(spec) == "widgetsexpress"

    def test_numbers_become_stable_text(self) -> None:
        assert value({"format": "{Amount}"}) == "1200"


class TestConditions:
    def test_equals(self) -> None:
        assert holds(
            {"equals": {"field": "Account.Billing_Provider__c", "value": "aws_marketplace"}}
        )
        assert not holds({"equals": {"field": "Account.Billing_Provider__c", "value": "stripe"}})

    def test_equals_does_not_confuse_true_with_one(self) -> None:
        assert holds({"equals": {"field": "Account.Active__c", "value": True}})
        assert not holds({"equals": {"field": "Account.Active__c", "value": 1}})

    def test_equals_null_matches_missing(self) -> None:
        assert holds({"equals": {"field": "Account.Nope__c", "value": None}})

    def test_in(self) -> None:
        assert holds(
            {"in": {"field": "Account.Billing_Provider__c", "values": ["x", "aws_marketplace"]}}
        )
        assert not holds({"in": {"field": "Account.Billing_Provider__c", "values": ["stripe"]}})

    def test_present(self) -> None:
        assert holds({"present": "Account.Name"})
        assert not holds({"present": "Account.Spaces__c"})
        assert not holds({"present": "Account.Blank__c"})
        assert not holds({"present": "Account.Nope__c"})
        assert holds({"present": "Account.Active__c"})

    def test_all_and_any(self) -> None:
        yes = {"present": "Account.Name"}
        no = {"present": "Account.Nope__c"}
        assert holds({"all": [yes, yes]})
        assert not holds({"all": [yes, no]})
        assert holds({"any": [no, yes]})
        assert not holds({"any": [no, no]})
        assert holds({"any": [no, {"all": [yes, {"any": [yes]}]}]})


@pytest.mark.parametrize(
    "spec",
    [
        {"eval": "1+1"},
        {"field": "Account.Name", "literal": "x"},  # two keys in one node
        {"field": "__import__('os').system('x')"},
        {"field": "Account.__class__"},
        {"field": "Account"},  # a relationship, not a field
        {"field": "Account.Parent"},
        {"field": "Account.Owner__r"},
        {"field": "Account.Custom__c.Name"},  # __c is a field, not a relationship
        {"field": "A.B.C.D.E.F.Id"},  # six hops: SOQL allows five
        {"field": ""},
        {"format": "{0.__class__.__mro__}"},
        {"format": "{Account.Name!r}"},
        {"format": "{Account.Name:>99}"},
        {"format": "{}"},
        {"format": "{Account.Name"},
        {"lower": "Account.Name"},  # bare strings are not expressions
        {"default": [{"literal": "only one"}]},
        {"literal": {"nested": "object"}},
        {"literal": ["list"]},
        "Account.Name",
        None,
    ],
)
def test_anything_else_is_refused_at_load(spec: Any) -> None:
    with pytest.raises(ValidationError):
        EXPR.validate_python(spec)


@pytest.mark.parametrize(
    "spec",
    [
        {"equals": {"field": "Account.Name"}},
        {"equals": {"field": "Account.Name", "value": "x", "case": "ignore"}},
        {"in": {"field": "Account.Name", "values": []}},
        {"all": []},
        {"not": {"present": "Account.Name"}},
        {"present": {"field": "Account.Name"}},
        {"matches": {"field": "Account.Name", "regex": ".*"}},
    ],
)
def test_unknown_or_malformed_conditions_are_refused(spec: Any) -> None:
    with pytest.raises(ValidationError):
        COND.validate_python(spec)


def test_field_paths_are_collected_for_the_query() -> None:
    expression = EXPR.validate_python(
        {"default": [{"field": "Account.A__c"}, {"format": "{Account.B__c}-{Name}"}]}
    )
    assert list(expression.paths()) == ["Account.A__c", "Account.B__c", "Name"]
    condition = COND.validate_python(
        {"all": [{"present": "Account.C__c"}, {"in": {"field": "Account.D__c", "values": [1]}}]}
    )
    assert list(condition.paths()) == ["Account.C__c", "Account.D__c"]
