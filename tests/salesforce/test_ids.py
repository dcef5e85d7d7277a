from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.salesforce import InvalidSalesforceId, normalize_salesforce_id
from worker.salesforce.ids import checksum_suffix

ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def test_fifteen_character_id_gets_the_checksum_suffix() -> None:
    # Worked by hand: chunks 001A0 / 00000 / 6Vm9r -> upper-case bits 8, 0, 2 -> I, A, C.
    assert normalize_salesforce_id("001A0000006Vm9r") == "001A0000006Vm9rIAC"


def test_eighteen_character_id_is_checked_and_suffix_case_normalised() -> None:
    assert normalize_salesforce_id("001A0000006Vm9rIAC") == "001A0000006Vm9rIAC"
    assert normalize_salesforce_id("001A0000006Vm9riac") == "001A0000006Vm9rIAC"


@pytest.mark.parametrize(
    "value",
    [
        "",
        "001",
        "001A0000006Vm9rIA",
        "001A0000006Vm9rIAD",
        "001A0000006Vm9r'",
        "001A0000006Vm9r OR",
        "x" * 19,
    ],
)
def test_malformed_ids_are_refused(value: str) -> None:
    with pytest.raises(InvalidSalesforceId):
        normalize_salesforce_id(value)


@given(st.text(alphabet=ALNUM, min_size=15, max_size=15))
def test_normalising_is_idempotent_and_keeps_case_distinct_ids_apart(id15: str) -> None:
    full = normalize_salesforce_id(id15)
    assert full[:15] == id15
    assert normalize_salesforce_id(full) == full
    flipped = id15.swapcase()
    if flipped != id15:
        # Same letters, other case: a different record, and the suffix tells them apart.
        assert normalize_salesforce_id(flipped).upper() != full.upper()
    assert checksum_suffix(id15) == full[15:]
