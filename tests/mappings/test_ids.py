from __future__ import annotations

import pytest

from mappings.ids import is_valid_id, to_18


@pytest.mark.parametrize(
    ("id15", "id18"),
    [
        # Worked examples of Salesforce's case-safe suffix: one letter per 5-char chunk.
        ("0017000000Q9SFk", "0017000000Q9SFkAAN"),
        ("001000000000001", "001000000000001AAA"),
        ("AAAAAAAAAAAAAAA", "AAAAAAAAAAAAAAA555"),
        ("aaaaaaaaaaaaaaa", "aaaaaaaaaaaaaaaAAA"),
    ],
)
def test_15_character_ids_gain_the_case_checksum(id15: str, id18: str) -> None:
    assert to_18(id15) == id18


def test_18_character_ids_pass_through_unchanged() -> None:
    assert to_18("0017000000Q9SFkAAN") == "0017000000Q9SFkAAN"


def test_ids_differing_only_in_case_get_different_18_character_forms() -> None:
    assert to_18("0017000000Q9SFk") != to_18("0017000000q9sfk")


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "sfdc1001",  # the product docs' placeholder: not a Salesforce id
        "0017000000Q9SF",  # 14
        "0017000000Q9SFkA",  # 16
        "0017000000Q9SFk-AN",
        "0017000000Q9SFkAAB",  # wrong checksum
        "0017000000Q9SFkaan",  # checksum in lower case
    ],
)
def test_anything_else_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        to_18(bad)
    assert not is_valid_id(bad)


def test_non_strings_are_refused() -> None:
    assert not is_valid_id(1234)
    with pytest.raises(ValueError):
        to_18(None)  # type: ignore[arg-type]
