"""Change event headers: bitmaps back to field names, with the schema's own positions."""

from __future__ import annotations

from typing import Any

import pytest

from worker.salesforce.events.changes import (
    ChangeType,
    MalformedEvent,
    decode_bitmap,
    encode_bitmap,
    parse_change_event,
)

SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "OpportunityChangeEvent",
    "fields": [
        {"name": "ChangeEventHeader", "type": {"type": "record", "name": "H", "fields": []}},
        {"name": "Name", "type": ["null", "string"]},
        {"name": "StageName", "type": ["null", "string"]},
        {
            "name": "BillingAddress",
            "type": [
                "null",
                {
                    "type": "record",
                    "name": "Address",
                    "fields": [
                        {"name": "Street", "type": "string"},
                        {"name": "City", "type": "string"},
                    ],
                },
            ],
        },
        {"name": "IsWon", "type": ["null", "boolean"]},
    ],
}


def test_the_lowest_bit_is_the_first_field() -> None:
    # 0b10110: positions 1 (Name), 2 (StageName), 4 (IsWon).
    assert decode_bitmap(SCHEMA, ["0x16"]) == {"Name", "StageName", "IsWon"}


def test_a_compound_entry_names_the_sub_field_and_its_parent() -> None:
    assert decode_bitmap(SCHEMA, ["0x2", "3-0x2"]) == {
        "Name",
        "BillingAddress",
        "BillingAddress.City",
    }


def test_positions_past_the_schema_are_ignored_and_garbage_is_refused() -> None:
    assert decode_bitmap(SCHEMA, ["0x100000"]) == frozenset()
    with pytest.raises(MalformedEvent):
        decode_bitmap(SCHEMA, ["0xZZ"])


def test_encode_is_the_inverse_for_top_level_fields() -> None:
    assert decode_bitmap(SCHEMA, encode_bitmap(SCHEMA, ["IsWon", "Name"])) == {"IsWon", "Name"}
    assert encode_bitmap(SCHEMA, []) == []


def test_parse_reads_the_header_and_keeps_only_iswon() -> None:
    record = {
        "ChangeEventHeader": {
            "entityName": "Opportunity",
            "recordIds": ["006Hp00000AAAAAAAA"],
            "changeType": "UPDATE",
            "commitTimestamp": 1_700_000_000_123,
            "changedFields": ["0x14"],
        },
        "Name": None,
        "IsWon": True,
    }
    event = parse_change_event(SCHEMA, record)
    assert event.change_type is ChangeType.UPDATE
    assert event.record_ids == ("006Hp00000AAAAAAAA",)
    assert event.changed_fields == {"StageName", "IsWon"}
    assert event.commit_timestamp_ms == 1_700_000_000_123
    assert dict(event.values) == {"IsWon": True}


def test_a_payload_without_header_or_with_an_unknown_type_is_malformed() -> None:
    with pytest.raises(MalformedEvent):
        parse_change_event(SCHEMA, {"Name": "x"})
    with pytest.raises(MalformedEvent):
        parse_change_event(SCHEMA, {"ChangeEventHeader": {"changeType": "SNAPSHOT"}})
