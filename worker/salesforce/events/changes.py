"""A decoded change event's header, as the listener needs it (pure, no I/O).

Change Data Capture puts a ``ChangeEventHeader`` record first in every change event's Avro
payload. On the Pub/Sub API its ``changedFields`` (and ``nulledFields``, ``diffFields``) are
*bitmaps*, not names: a list of hex strings whose first entry (``"0x650004E0"``) has bit *i*
set when the top-level field at position *i* of the event's Avro schema changed, and whose
other entries (``"3-0x06"``) do the same for the sub-fields of the compound field at
position 3. This module turns them back into field names, using the schema the event was
written with (positions move when the org adds a field, so never a cached list).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


class ChangeType(enum.StrEnum):
    """``ChangeEventHeader.changeType``. GAP_* events carry record ids but no field values (the
    change happened, its content was not captured); GAP_OVERFLOW carries no ids at all (a
    transaction of more than 100,000 changes)."""

    CREATE = "CREATE"
    UPDATE = "UPDATE"
    DELETE = "DELETE"
    UNDELETE = "UNDELETE"
    GAP_CREATE = "GAP_CREATE"
    GAP_UPDATE = "GAP_UPDATE"
    GAP_DELETE = "GAP_DELETE"
    GAP_UNDELETE = "GAP_UNDELETE"
    GAP_OVERFLOW = "GAP_OVERFLOW"

    @property
    def is_gap(self) -> bool:
        return self.value.startswith("GAP_")


class MalformedEvent(ValueError):
    """The payload decoded, but is not a change event (no usable ChangeEventHeader)."""


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    """What the listener reads from one event: which records, what kind, which fields.

    Field *values* are kept only for the few the triage may look at on a CREATE (``IsWon``);
    everything that reaches Metronome is read again from Salesforce by id.
    """

    entity: str
    change_type: ChangeType
    record_ids: tuple[str, ...]
    commit_timestamp_ms: int
    changed_fields: frozenset[str]
    values: Mapping[str, Any]


def field_names(schema: Mapping[str, Any]) -> list[str]:
    """The top-level field names of a (parsed or JSON) Avro record schema, in order."""
    return [str(field["name"]) for field in schema.get("fields", [])]


def _sub_fields(schema: Mapping[str, Any], position: int) -> list[str]:
    """Names of the sub-fields of the compound field at ``position`` (nullable union or not)."""
    fields = schema.get("fields", [])
    if not 0 <= position < len(fields):
        return []
    kind: Any = fields[position].get("type")
    candidates = kind if isinstance(kind, list) else [kind]
    for candidate in candidates:
        if isinstance(candidate, Mapping) and candidate.get("type") == "record":
            return field_names(candidate)
    return []


def _bits(hex_text: str) -> list[int]:
    """Positions of the set bits of a ``0x...`` bitmap, lowest bit = position 0."""
    value = int(hex_text, 16)
    positions = []
    position = 0
    while value:
        if value & 1:
            positions.append(position)
        value >>= 1
        position += 1
    return positions


def decode_bitmap(schema: Mapping[str, Any], bitmap: Sequence[str]) -> frozenset[str]:
    """Field names a ``changedFields``-style bitmap list stands for.

    Top-level entries give field names; ``"P-0xHEX"`` entries give ``Parent.Sub`` names for the
    compound field at position P *and* the compound field's own name (a change to
    ``BillingAddress.City`` is a change to ``BillingAddress``). Positions past the end of the
    schema are ignored: they cannot name a field this listener knows.
    """
    top = field_names(schema)
    names: set[str] = set()
    for entry in bitmap:
        text = str(entry).strip()
        if not text:
            continue
        parent_text, dash, hex_text = text.rpartition("-")
        try:
            if dash:
                parent = int(parent_text)
                subs = _sub_fields(schema, parent)
                for position in _bits(hex_text):
                    if position < len(subs):
                        names.add(f"{top[parent]}.{subs[position]}")
                if 0 <= parent < len(top):
                    names.add(top[parent])
            else:
                names.update(top[p] for p in _bits(text) if p < len(top))
        except ValueError as exc:
            raise MalformedEvent(f"bitmap entry {text!r} is not hex") from exc
    return frozenset(names)


def encode_bitmap(schema: Mapping[str, Any], names: Sequence[str]) -> list[str]:
    """The inverse of :func:`decode_bitmap` for top-level names (the emulator writes these)."""
    positions = {name: index for index, name in enumerate(field_names(schema))}
    value = 0
    for name in names:
        if name in positions:
            value |= 1 << positions[name]
    return [f"0x{value:X}"] if value else []


def parse_change_event(
    schema: Mapping[str, Any], record: Mapping[str, Any], *, keep: Sequence[str] = ("IsWon",)
) -> ChangeEvent:
    """The listener's view of one decoded payload (``record``) written with ``schema``."""
    header = record.get("ChangeEventHeader")
    if not isinstance(header, Mapping):
        raise MalformedEvent("the payload has no ChangeEventHeader record")
    try:
        change_type = ChangeType(str(header.get("changeType")))
    except ValueError as exc:
        raise MalformedEvent(f"unknown changeType {header.get('changeType')!r}") from exc
    ids = header.get("recordIds") or []
    changed = header.get("changedFields") or []
    return ChangeEvent(
        entity=str(header.get("entityName") or ""),
        change_type=change_type,
        record_ids=tuple(str(i) for i in ids),
        commit_timestamp_ms=int(header.get("commitTimestamp") or 0),
        changed_fields=decode_bitmap(schema, [str(c) for c in changed]),
        values={name: record.get(name) for name in keep if name in record},
    )
