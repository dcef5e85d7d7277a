"""Avro payloads decoded with the schema named in each event, fetched once per schema id.

An event carries only its ``schema_id``; the schema itself comes from ``GetSchema``. Ids change
when the org adds or removes a field on the object, so one stream can carry events of two
schemas (before and after the change): the cache is keyed by id, never by topic, and an unknown
id is simply fetched. Schemas are immutable for a given id, so entries never expire.
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import fastavro

from worker.salesforce.events.changes import ChangeEvent, MalformedEvent, parse_change_event

#: ``GetSchema``: schema id -> schema JSON text.
FetchSchema = Callable[[str], str]


@dataclass(frozen=True, slots=True)
class KnownSchema:
    schema_id: str
    #: The schema as JSON (field order intact: bitmap positions refer to it).
    raw: Mapping[str, Any]
    parsed: Any


class SchemaCache:
    """Thread-safe: each topic's stream thread decodes with the same cache."""

    def __init__(self, fetch: FetchSchema) -> None:
        self._fetch = fetch
        self._schemas: dict[str, KnownSchema] = {}
        self._lock = threading.Lock()
        self.fetches = 0

    def get(self, schema_id: str) -> KnownSchema:
        with self._lock:
            known = self._schemas.get(schema_id)
        if known is not None:
            return known
        text = self._fetch(schema_id)
        raw = json.loads(text)
        known = KnownSchema(schema_id, raw, fastavro.parse_schema(raw))
        with self._lock:
            self.fetches += 1
            self._schemas.setdefault(schema_id, known)
            return self._schemas[schema_id]

    def decode(self, schema_id: str, payload: bytes) -> ChangeEvent:
        """The change event in ``payload`` (Avro binary, no container header)."""
        schema = self.get(schema_id)
        try:
            record = fastavro.schemaless_reader(io.BytesIO(payload), schema.parsed, None)
        except (EOFError, ValueError, TypeError, IndexError, UnicodeDecodeError) as exc:
            raise MalformedEvent(f"payload does not decode with schema {schema_id}") from exc
        if not isinstance(record, dict):
            raise MalformedEvent("the payload is not an Avro record")
        return parse_change_event(schema.raw, record)
