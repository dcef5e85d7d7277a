"""The emulated org's Change Data Capture: Avro change events on an event bus with replay.

Every write the record store accepts (REST create/update/delete, merges, undeletes) becomes a
change event shaped as Salesforce's: an Avro record named ``<Object>ChangeEvent`` whose first
field is the ``ChangeEventHeader`` record, then every field of the object as a nullable union
(``["null", type]``, default null). ``Id``, ``IsDeleted`` and ``SystemModstamp`` are not in
change events (the record id is in ``recordIds``). On UPDATE only the changed fields carry values
and ``changedFields`` is a hex bitmap over the schema's field positions; datetimes are epoch
milliseconds, dates epoch days.

The schema is derived from the object's field table (``schema.py``), and its id is a hash of
the schema, so when a field is added the id changes, as in a real org. ``evolve`` appends a
field to one object's event schema, to show a subscriber a schema change mid-stream.

The bus is one log for every object, with a retention window: a replay id outside it (expired,
or minted by another emulator instance) is refused. It is written on the HTTP server's loop
thread and read by the gRPC threads, so it has its own lock.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import fastavro

from worker.salesforce.events.changes import encode_bitmap
from worker.sandbox.salesforce.schema import FieldType, SObjectType

#: Salesforce keeps change events for 72 hours.
RETENTION_S = 72 * 3600.0
NAMESPACE = "com.sforce.eventbus"
#: Fields a change event leaves out: the id travels in the header, the rest are bookkeeping.
_NOT_IN_EVENTS = frozenset({"Id", "IsDeleted", "SystemModstamp"})
_AVRO_TYPES = {
    FieldType.ID: "string",
    FieldType.REFERENCE: "string",
    FieldType.STRING: "string",
    FieldType.PICKLIST: "string",
    FieldType.BOOLEAN: "boolean",
    FieldType.DATETIME: "long",
    FieldType.DATE: "int",
    FieldType.CURRENCY: "double",
    FieldType.NUMBER: "double",
}
_STRINGS = {"type": "array", "items": "string"}
HEADER_SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "ChangeEventHeader",
    "namespace": NAMESPACE,
    "fields": [
        {"name": "entityName", "type": "string"},
        {"name": "recordIds", "type": _STRINGS},
        {
            "name": "changeType",
            "type": {
                "type": "enum",
                "name": "ChangeType",
                "namespace": NAMESPACE,
                "symbols": [
                    "CREATE",
                    "DELETE",
                    "UNDELETE",
                    "UPDATE",
                    "GAP_CREATE",
                    "GAP_DELETE",
                    "GAP_UNDELETE",
                    "GAP_UPDATE",
                    "GAP_OVERFLOW",
                ],
            },
        },
        {"name": "changeOrigin", "type": "string"},
        {"name": "transactionKey", "type": "string"},
        {"name": "sequenceNumber", "type": "int"},
        {"name": "commitTimestamp", "type": "long"},
        {"name": "commitNumber", "type": "long"},
        {"name": "commitUser", "type": "string"},
        {"name": "nulledFields", "type": _STRINGS},
        {"name": "diffFields", "type": _STRINGS},
        {"name": "changedFields", "type": _STRINGS},
    ],
}
COMMIT_USER = "005Hp00000DemoUsrIAA"


def event_fields(sobject: SObjectType, extra: Sequence[str] = ()) -> list[tuple[str, str]]:
    """(field name, Avro type) in schema order, after the header."""
    fields = [
        (name, _AVRO_TYPES[kind])
        for name, kind in sobject.fields.items()
        if name not in _NOT_IN_EVENTS
    ]
    return fields + [(name, "string") for name in extra]


def change_event_schema(sobject: SObjectType, extra: Sequence[str] = ()) -> dict[str, Any]:
    return {
        "type": "record",
        "name": f"{sobject.name}ChangeEvent",
        "namespace": NAMESPACE,
        "doc": f"Change Data Capture event for {sobject.name}",
        "fields": [
            {"name": "ChangeEventHeader", "type": HEADER_SCHEMA, "doc": "Data:ChangeEventHeader"},
            *(
                {"name": name, "type": ["null", avro], "default": None}
                for name, avro in event_fields(sobject, extra)
            ),
        ],
    }


def schema_id_of(schema: Mapping[str, Any]) -> str:
    """A short stable id for a schema: the same fields give the same id, a new field a new one."""
    digest = hashlib.sha256(json.dumps(schema, sort_keys=True).encode()).digest()
    return base64.urlsafe_b64encode(digest[:16]).decode().rstrip("=")


def _avro_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return int(value.astimezone(UTC).timestamp() * 1000)
    if isinstance(value, date):
        return (value - date(1970, 1, 1)).days
    return value


@dataclass(frozen=True, slots=True)
class EventSchema:
    schema_id: str
    raw: dict[str, Any]
    parsed: Any


@dataclass(frozen=True, slots=True)
class BusEvent:
    seq: int
    entity: str
    schema_id: str
    payload: bytes
    event_id: str
    committed_at: float
    visible_at: float
    #: The record's values after the change, for filtered custom channels (``IsWon = true``).
    record: Mapping[str, Any]


class ChangeEventEncoder:
    """Avro-encodes changes of the objects it knows; one schema (and id) per object version."""

    def __init__(self, sobjects: Iterable[SObjectType]) -> None:
        self._sobjects = {s.name: s for s in sobjects}
        self._extra: dict[str, list[str]] = {name: [] for name in self._sobjects}
        self._schemas: dict[str, EventSchema] = {}
        self._current: dict[str, str] = {}
        self._transactions = 0
        for name in self._sobjects:
            self._rebuild(name)

    def _rebuild(self, entity: str) -> EventSchema:
        raw = change_event_schema(self._sobjects[entity], self._extra[entity])
        schema = EventSchema(schema_id_of(raw), raw, fastavro.parse_schema(raw))
        self._schemas[schema.schema_id] = schema
        self._current[entity] = schema.schema_id
        return schema

    def evolve(self, entity: str, field_name: str) -> str:
        """Add a (string) field to ``entity``'s events; returns the new schema id."""
        self._extra[entity].append(field_name)
        return self._rebuild(entity).schema_id

    def schema(self, schema_id: str) -> EventSchema | None:
        return self._schemas.get(schema_id)

    def current(self, entity: str) -> EventSchema:
        return self._schemas[self._current[entity]]

    def encode(
        self,
        entity: str,
        change_type: str,
        record_ids: Sequence[str],
        values: Mapping[str, Any],
        *,
        changed: Sequence[str],
        committed_at: float,
    ) -> tuple[str, bytes]:
        """(schema id, payload) of one change. ``values`` are the fields the event carries."""
        schema = self.current(entity)
        self._transactions += 1
        names = [field["name"] for field in schema.raw["fields"][1:]]
        nulled = [n for n in changed if values.get(n) is None and change_type == "UPDATE"]
        header = {
            "entityName": entity,
            "recordIds": list(record_ids),
            "changeType": change_type,
            "changeOrigin": "com/salesforce/api/rest/59.0",
            "transactionKey": uuid.uuid4().hex,
            "sequenceNumber": 1,
            "commitTimestamp": int(committed_at * 1000),
            "commitNumber": 10_000_000 + self._transactions,
            "commitUser": COMMIT_USER,
            "nulledFields": encode_bitmap(schema.raw, nulled),
            "diffFields": [],
            "changedFields": encode_bitmap(schema.raw, list(changed)),
        }
        record: dict[str, Any] = {"ChangeEventHeader": header}
        for name in names:
            record[name] = _avro_value(values.get(name))
        buffer = io.BytesIO()
        fastavro.schemaless_writer(buffer, schema.parsed, record)
        return schema.schema_id, buffer.getvalue()


class EventBus:
    """The retained events of every object, in commit order; thread-safe."""

    def __init__(self, retention_s: float = RETENTION_S) -> None:
        self.retention_s = retention_s
        self.changed = threading.Condition()
        self._events: list[BusEvent] = []
        self._next_seq = 1
        #: Seqs up to this one are gone (expired): a replay id at or before it is refused.
        self._expired_through = 0
        #: Part of every replay id: ids minted by another emulator instance are refused.
        self._epoch = secrets.token_bytes(2)

    # --- replay ids ----------------------------------------------------------------------
    def replay_id(self, seq: int) -> bytes:
        return self._epoch + seq.to_bytes(8, "big")

    def seq_of(self, replay_id: bytes) -> int | None:
        """The position a replay id names, or None if it is not one we could still serve."""
        if len(replay_id) != 10 or replay_id[:2] != self._epoch:
            return None
        seq = int.from_bytes(replay_id[2:], "big")
        with self.changed:
            self._prune()
            if seq < self._expired_through or seq >= self._next_seq:
                return None
        return seq

    # --- writing -------------------------------------------------------------------------
    def publish(
        self,
        entity: str,
        schema_id: str,
        payload: bytes,
        record: Mapping[str, Any],
        *,
        committed_at: float,
        delay_s: float = 0.0,
    ) -> BusEvent:
        with self.changed:
            event = BusEvent(
                seq=self._next_seq,
                entity=entity,
                schema_id=schema_id,
                payload=payload,
                event_id=str(uuid.uuid4()),
                committed_at=committed_at,
                visible_at=time.monotonic() + delay_s,
                record=dict(record),
            )
            self._next_seq += 1
            self._events.append(event)
            self._prune()
            self.changed.notify_all()
            return event

    def expire_all(self) -> None:
        """Let the retention window pass: every replay id issued so far becomes invalid.

        The position moves on by one seq that holds no event, so the replay id a stream
        subscribed from LATEST hands out from now on (in its keepalives) is one the bus still
        serves, as Salesforce's current position always is: otherwise a listener that stored
        it would be refused again on its next resubscribe and poll for nothing."""
        with self.changed:
            self._expired_through = self._next_seq
            self._next_seq += 1
            self._events.clear()
            self.changed.notify_all()

    def _prune(self) -> None:
        horizon = time.time() - self.retention_s
        keep = 0
        while keep < len(self._events) and self._events[keep].committed_at < horizon:
            self._expired_through = max(self._expired_through, self._events[keep].seq + 1)
            keep += 1
        if keep:
            del self._events[:keep]

    # --- reading (gRPC threads) ------------------------------------------------------------
    @property
    def latest_seq(self) -> int:
        with self.changed:
            return self._next_seq - 1

    @property
    def earliest_seq(self) -> int:
        """The position just before the oldest retained event."""
        with self.changed:
            self._prune()
            return self._events[0].seq - 1 if self._events else self._next_seq - 1

    def after(
        self, seq: int, accept: Callable[[BusEvent], bool], limit: int
    ) -> tuple[list[BusEvent], int]:
        """Visible events after ``seq`` that ``accept`` takes (at most ``limit``), and the
        position up to which every event was looked at (taken or passed over). A held-back
        event (delivery delay) stops the scan: nothing after it is delivered before it."""
        now = time.monotonic()
        through = seq
        with self.changed:
            out: list[BusEvent] = []
            for event in self._events:
                if event.seq <= seq:
                    continue
                if event.visible_at > now or len(out) >= limit:
                    break
                if accept(event):
                    out.append(event)
                through = event.seq
            else:
                through = max(through, self._next_seq - 1)
            return out, through

    def count(self) -> int:
        with self.changed:
            return len(self._events)
