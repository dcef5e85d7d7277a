"""Malformed mapping files: the message points at the file, the line and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from mappings import MappingFileError, load_default_mapping, load_mapping, parse_mapping

VALID_PROVIDER = """\
name: {field: Account.Name}
billing_provider_configurations:
  - billing_provider: netsuite
    delivery_method: direct_to_billing_provider
    configuration:
      netsuite_customer_id: {field: Account.NetSuite_Customer_Id__c}
"""


def file_error(text: str) -> MappingFileError:
    with pytest.raises(MappingFileError) as caught:
        parse_mapping(text, "ops.yaml")
    assert isinstance(caught.value, ValueError)
    assert "ops.yaml" in str(caught.value)
    return caught.value


def only_problem(text: str) -> tuple[str, int | None, str]:
    error = file_error(text)
    assert len(error.problems) == 1, error.problems
    return error.problems[0]


def test_unknown_top_level_key() -> None:
    key, line, message = only_problem("name: {field: Account.Name}\ningest_alias: []\n")
    assert (key, line) == ("ingest_alias", 2)
    assert "unknown key" in message


def test_a_typo_deep_inside_points_at_its_line() -> None:
    text = VALID_PROVIDER.replace("{field: Account.NetSuite", "{feild: Account.NetSuite")
    key, line, message = only_problem(text)
    assert key == "billing_provider_configurations[0].configuration.netsuite_customer_id"
    assert line == 6
    assert "feild" in message
    assert "ops.yaml:6:" in str(file_error(text))


def test_an_unknown_condition() -> None:
    text = VALID_PROVIDER.replace(
        "  - billing_provider", "  - when: {regex: {field: Account.X}}\n    billing_provider"
    )
    key, line, message = only_problem(text)
    assert (key, line) == ("billing_provider_configurations[0].when", 3)
    assert "regex" in message


def test_a_provider_config_missing_a_required_key() -> None:
    text = "\n".join(VALID_PROVIDER.splitlines()[:4]) + "\n"
    key, line, message = only_problem(text)
    assert (key, line) == ("billing_provider_configurations[0]", 3)
    assert "netsuite_customer_id" in message


def test_unknown_provider_and_delivery_method_are_both_reported() -> None:
    text = VALID_PROVIDER.replace("netsuite\n", "paypal\n").replace(
        "direct_to_billing_provider", "email"
    )
    error = file_error(text)
    assert [(key, line) for key, line, _ in error.problems] == [
        ("billing_provider_configurations[0].billing_provider", 3),
        ("billing_provider_configurations[0].delivery_method", 4),
    ]


def test_missing_name() -> None:
    key, _, message = only_problem("ingest_aliases: []\n")
    assert key == "name"
    assert "missing" in message


def test_yaml_syntax_error_has_a_line() -> None:
    _, line, message = only_problem("version: 1\nname: {field: Account.Name\n")
    assert line == 3
    assert "YAML" in message


def test_duplicate_keys_are_refused_not_silently_overwritten() -> None:
    key, line, message = only_problem("name: {field: Account.Name}\nname: {literal: x}\n")
    assert (key, line, message) == ("name", 2, "duplicate key")


def test_bad_field_path_nested_in_functions() -> None:
    key, line, _ = only_problem("name:\n  lower:\n    strip:\n      field: Account..Name\n")
    assert (key, line) == ("name.lower.strip.field", 4)


def test_strict_types_refuse_coercion() -> None:
    key, line, _ = only_problem("name: {field: Account.Name}\nidentity_alias: {enabled: 'no'}\n")
    assert (key, line) == ("identity_alias.enabled", 2)


@pytest.mark.parametrize("text", ["", "- a list\n", "just a string\n"])
def test_the_file_must_be_a_mapping(text: str) -> None:
    assert "YAML mapping" in only_problem(text)[2]


def test_identity_alias_format_must_carry_the_account_id() -> None:
    key, line, _ = only_problem("name: {field: Account.Name}\nidentity_alias: {format: static}\n")
    assert (key, line) == ("identity_alias.format", 2)


def test_identity_alias_format_may_not_reach_into_objects() -> None:
    only_problem(
        "name: {field: Account.Name}\nidentity_alias: {format: '{account_id.__class__}'}\n"
    )


def test_load_mapping_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(VALID_PROVIDER, encoding="utf-8")
    assert load_mapping(path).opportunity_fields()[-1] == "Account.NetSuite_Customer_Id__c"


def test_a_missing_file_is_a_mapping_file_error(tmp_path: Path) -> None:
    with pytest.raises(MappingFileError, match="cannot read"):
        load_mapping(tmp_path / "absent.yaml")


def test_the_packaged_default_loads_from_its_file_too() -> None:
    packaged = Path(__file__).parents[2] / "mappings" / "default.yaml"
    assert load_mapping(packaged) == load_default_mapping()
