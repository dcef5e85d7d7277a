"""The one Salesforce id rule (mappings/ids.py): 15 -> 18 characters, the case-safe suffix."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mappings.ids import (
    InvalidSalesforceId,
    checksum_suffix,
    is_valid_id,
    normalize_salesforce_id,
    normalize_salesforce_ids,
    to_18,
)

ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


@pytest.mark.parametrize(
    ("id15", "id18"),
    [
        # Worked examples of Salesforce's case-safe suffix: one letter per 5-char chunk.
        ("0017000000Q9SFk", "0017000000Q9SFkAAN"),
        ("001000000000001", "001000000000001AAA"),
        ("AAAAAAAAAAAAAAA", "AAAAAAAAAAAAAAA555"),
        ("aaaaaaaaaaaaaaa", "aaaaaaaaaaaaaaaAAA"),
        # Worked by hand: chunks 001A0 / 00000 / 6Vm9r -> upper-case bits 8, 0, 2 -> I, A, C.
        ("001A0000006Vm9r", "001A0000006Vm9rIAC"),
    ],
)
def test_15_character_ids_gain_the_case_checksum(id15: str, id18: str) -> None:
    assert to_18(id15) == id18
    assert normalize_salesforce_id(id15) == id18


def test_18_character_ids_pass_through_unchanged() -> None:
    assert to_18("0017000000Q9SFkAAN") == "0017000000Q9SFkAAN"


def test_a_suffix_in_lower_case_is_the_same_id_and_comes_back_upper_case() -> None:
    """The suffix exists so case-insensitive systems can carry the id: one that folded the
    suffix's case hands back the same record."""
    assert to_18("0017000000Q9SFkaan") == "0017000000Q9SFkAAN"
    assert normalize_salesforce_id("001A0000006Vm9riac") == "001A0000006Vm9rIAC"
    assert is_valid_id("0017000000Q9SFkaan")


def test_a_list_of_ids_comes_back_18_characters_each_once_in_order() -> None:
    """What `crmsync parked` acts on; `plan` and `resync` check their ids with it."""
    given_ids = ["001A0000006Vm9r", "0017000000Q9SFkAAN", "001A0000006Vm9rIAC"]
    assert normalize_salesforce_ids(given_ids) == ["001A0000006Vm9rIAC", "0017000000Q9SFkAAN"]
    with pytest.raises(InvalidSalesforceId, match="'sfdc1001'"):
        normalize_salesforce_ids(["001A0000006Vm9r", "sfdc1001"])


def test_ids_differing_only_in_case_get_different_18_character_forms() -> None:
    assert to_18("0017000000Q9SFk") != to_18("0017000000q9sfk")


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "001",
        "sfdc1001",  # the product docs' placeholder: not a Salesforce id
        "0017000000Q9SF",  # 14
        "0017000000Q9SFkA",  # 16
        "001A0000006Vm9rIA",  # 17
        "0017000000Q9SFk-AN",
        "001A0000006Vm9r'",
        "001A0000006Vm9r OR",
        "0017000000Q9SFkAAB",  # wrong checksum
        "0017000000q9sfkAAN",  # the fifteen re-cased: Salesforce would not find the record
        "x" * 19,
    ],
)
def test_anything_else_is_refused(bad: str) -> None:
    with pytest.raises(InvalidSalesforceId):
        to_18(bad)
    with pytest.raises(InvalidSalesforceId, match="Salesforce id"):
        normalize_salesforce_id(bad)
    assert not is_valid_id(bad)


def test_non_strings_are_refused() -> None:
    assert not is_valid_id(1234)
    with pytest.raises(ValueError):
        to_18(None)  # type: ignore[arg-type]


def test_an_operators_id_is_named_in_the_message() -> None:
    with pytest.raises(InvalidSalesforceId, match="'not-an-id'"):
        normalize_salesforce_id("not-an-id")


@given(st.text(alphabet=ALNUM, min_size=15, max_size=15))
def test_normalising_is_idempotent_and_keeps_case_distinct_ids_apart(id15: str) -> None:
    full = to_18(id15)
    assert full[:15] == id15
    assert to_18(full) == full
    assert to_18(full[:15] + full[15:].lower()) == full
    flipped = id15.swapcase()
    if flipped != id15:
        # Same letters, other case: a different record, and the suffix tells them apart.
        assert to_18(flipped).upper() != full.upper()
    assert checksum_suffix(id15) == full[15:]
