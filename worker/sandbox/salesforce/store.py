"""The emulated org's records and the write rules Salesforce applies to them.

The rules the worker's correctness leans on are the ones reproduced here:

* every write bumps ``SystemModstamp`` and ``LastModifiedDate``, strictly increasing even
  within one millisecond, because the worker's cursor is ``SystemModstamp > cursor``;
* ``StageName`` decides ``IsWon`` / ``IsClosed`` through the stage table (never the label);
* a delete is soft (``IsDeleted``; only ``queryAll`` sees it) and cascades to opportunities;
* a merge deletes the loser with ``MasterRecordId`` and re-parents its opportunities and
  child accounts, which bumps their stamps, as in a real org.

``late_commit_at`` lets a test write a record whose stamp lies in the past: the shape of a
long Salesforce transaction that stamped its rows when it began and became visible only after
a poll had already moved the cursor past that stamp -- the reason the poll has an overlap.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from mappings.ids import InvalidSalesforceId, normalize_salesforce_id
from worker.sandbox.salesforce.schema import (
    ACCOUNT,
    DEFAULT_STAGES,
    OPPORTUNITY,
    FieldType,
    SObjectType,
    mint_id,
    sobject_type,
)
from worker.sandbox.salesforce.soql_parser import SoqlError, parse_datetime_literal

Record = dict[str, Any]
_MS = timedelta(milliseconds=1)
#: Told of every committed change (Change Data Capture, change_events.py): object name, change
#: type, record ids, the record as it now is, and the names of the fields that changed.
ChangeHook = Callable[[str, str, Sequence[str], Record, Sequence[str]], None]
#: Fields whose change is not reported as a change (bookkeeping every write touches).
_UNREPORTED = frozenset({"SystemModstamp", "IsDeleted"})


class StoreError(Exception):
    """A write the org refuses; ``code`` is the errorCode, ``status`` the HTTP status."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


class RecordStore:
    def __init__(self, stages: Mapping[str, tuple[bool, bool]] | None = None) -> None:
        self.stages = dict(stages or DEFAULT_STAGES)
        self.tables: dict[str, dict[str, Record]] = {ACCOUNT.name: {}, OPPORTUNITY.name: {}}
        self._serial = 0
        self._last_stamp = datetime(2000, 1, 1, tzinfo=UTC)
        self.on_change: ChangeHook | None = None

    # -- clock and ids --------------------------------------------------------------------
    def next_stamp(self) -> datetime:
        """Now at millisecond precision, but always after the previous stamp."""
        now = datetime.now(UTC)
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)
        self._last_stamp = max(now, self._last_stamp + _MS)
        return self._last_stamp

    def last_stamp(self) -> datetime:
        return self._last_stamp

    def _mint(self, sobject: SObjectType) -> str:
        self._serial += 1
        # Scramble the serial (an odd multiplier is a bijection mod 62**10) so ids mix case.
        return mint_id(sobject.key_prefix, (self._serial * 2_654_435_761 + 917_503) % 62**10)

    # -- reads ----------------------------------------------------------------------------
    def table(self, sobject: SObjectType) -> dict[str, Record]:
        return self.tables[sobject.name]

    def find(self, record_id: str) -> Record | None:
        """Look an id up in whichever table its key prefix names (15 or 18 characters)."""
        try:
            full = normalize_salesforce_id(record_id)
        except InvalidSalesforceId:
            return None
        for sobject in (ACCOUNT, OPPORTUNITY):
            if full.startswith(sobject.key_prefix):
                return self.tables[sobject.name].get(full)
        return None

    def get(self, sobject_name: str, record_id: str) -> Record:
        sobject = _sobject(sobject_name)
        record = self.find(record_id)
        if record is None or record["attributes_type"] != sobject.name:
            raise StoreError("NOT_FOUND", "The requested resource does not exist", status=404)
        return record

    # -- writes ---------------------------------------------------------------------------
    def insert(
        self,
        sobject_name: str,
        fields: Mapping[str, Any],
        *,
        late_commit_at: datetime | None = None,
    ) -> str:
        sobject = _sobject(sobject_name)
        values = self._coerce(sobject, fields)
        missing = [name for name in sobject.required if values.get(name) in (None, "")]
        if missing:
            raise StoreError(
                "REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(missing)}]"
            )
        record: Record = dict.fromkeys(sobject.fields)
        record.update(values)
        record["attributes_type"] = sobject.name
        record["Id"] = self._mint(sobject)
        record["IsDeleted"] = False
        stamp = self._stamp(late_commit_at)
        record["CreatedDate"] = stamp
        self._apply_derived(sobject, record, stamp)
        self.tables[sobject.name][record["Id"]] = record
        self._emit(sobject.name, "CREATE", record, [])
        return str(record["Id"])

    def update(
        self,
        sobject_name: str,
        record_id: str,
        fields: Mapping[str, Any],
        *,
        late_commit_at: datetime | None = None,
    ) -> None:
        record = self.get(sobject_name, record_id)
        if record["IsDeleted"]:
            raise StoreError("ENTITY_IS_DELETED", "entity is deleted")
        sobject = _sobject(sobject_name)
        values = self._coerce(sobject, fields)
        for name in sobject.required:
            if name in values and values[name] in (None, ""):
                raise StoreError("REQUIRED_FIELD_MISSING", f"Required fields are missing: [{name}]")
        before = dict(record)
        record.update(values)
        self._apply_derived(sobject, record, self._stamp(late_commit_at))
        changed = [k for k, v in record.items() if before.get(k) != v and k not in _UNREPORTED]
        self._emit(sobject.name, "UPDATE", record, changed)

    def delete(self, sobject_name: str, record_id: str, master_id: str | None = None) -> None:
        record = self.get(sobject_name, record_id)
        if record["IsDeleted"]:
            raise StoreError("ENTITY_IS_DELETED", "entity is deleted")
        stamp = self.next_stamp()
        record["IsDeleted"] = True
        record["SystemModstamp"] = record["LastModifiedDate"] = stamp
        if record["attributes_type"] == ACCOUNT.name:
            if master_id is not None:
                record["MasterRecordId"] = master_id
            for opportunity in self.tables[OPPORTUNITY.name].values():
                if opportunity["AccountId"] == record["Id"] and not opportunity["IsDeleted"]:
                    opportunity["IsDeleted"] = True
                    opportunity["SystemModstamp"] = opportunity["LastModifiedDate"] = stamp
                    self._emit(OPPORTUNITY.name, "DELETE", opportunity, [])
        self._emit(str(record["attributes_type"]), "DELETE", record, [])

    def undelete(self, sobject_name: str, record_id: str) -> None:
        """Restore a deleted record from the recycle bin (its stamp moves, as on a write)."""
        record = self.get(sobject_name, record_id)
        if not record["IsDeleted"]:
            raise StoreError("INVALID_OPERATION", "entity is not deleted")
        record["IsDeleted"] = False
        record["SystemModstamp"] = record["LastModifiedDate"] = self.next_stamp()
        self._emit(str(record["attributes_type"]), "UNDELETE", record, [])

    def merge_accounts(self, master_id: str, loser_id: str) -> None:
        """Move the loser's opportunities and child accounts to the master, then delete it."""
        master = self.get(ACCOUNT.name, master_id)
        loser = self.get(ACCOUNT.name, loser_id)
        if master["Id"] == loser["Id"] or master["IsDeleted"] or loser["IsDeleted"]:
            raise StoreError("INVALID_OPERATION", "cannot merge these accounts")
        for opportunity in self.tables[OPPORTUNITY.name].values():
            if opportunity["AccountId"] == loser["Id"] and not opportunity["IsDeleted"]:
                self.update(OPPORTUNITY.name, opportunity["Id"], {"AccountId": master["Id"]})
        for child in self.tables[ACCOUNT.name].values():
            if child["ParentId"] == loser["Id"] and not child["IsDeleted"]:
                self.update(ACCOUNT.name, child["Id"], {"ParentId": master["Id"]})
        self.delete(ACCOUNT.name, loser["Id"], master_id=master["Id"])

    # -- helpers --------------------------------------------------------------------------
    def _emit(
        self, sobject_name: str, change_type: str, record: Record, changed: Sequence[str]
    ) -> None:
        if self.on_change is not None:
            self.on_change(sobject_name, change_type, [str(record["Id"])], record, changed)

    def _stamp(self, late_commit_at: datetime | None) -> datetime:
        if late_commit_at is None:
            return self.next_stamp()
        return late_commit_at.astimezone(UTC).replace(
            microsecond=late_commit_at.microsecond // 1000 * 1000
        )

    def _apply_derived(self, sobject: SObjectType, record: Record, stamp: datetime) -> None:
        record["SystemModstamp"] = record["LastModifiedDate"] = stamp
        if sobject is OPPORTUNITY:
            stage = record["StageName"]
            if stage not in self.stages:
                raise StoreError(
                    "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", f"Stage: bad value: {stage!r}"
                )
            record["IsClosed"], record["IsWon"] = self.stages[stage]

    def _coerce(self, sobject: SObjectType, fields: Mapping[str, Any]) -> Record:
        values: Record = {}
        for raw_name, raw_value in fields.items():
            name = sobject.field_name(raw_name)
            if name is None:
                raise StoreError(
                    "INVALID_FIELD",
                    f"No such column '{raw_name}' on sobject of type {sobject.name}",
                )
            if name in sobject.system_fields:
                raise StoreError(
                    "INVALID_FIELD_FOR_INSERT_UPDATE",
                    f"Unable to create/update fields: {name}. Please check the security "
                    "settings of this field and verify that it is read/write for your profile "
                    "or permission set.",
                )
            values[name] = _coerce_value(sobject, name, raw_value, self)
        return values


def _sobject(name: str) -> SObjectType:
    sobject = sobject_type(name)
    if sobject is None:
        raise StoreError("NOT_FOUND", f"The requested resource does not exist: {name}", 404)
    return sobject


def _bad_type(name: str) -> StoreError:
    return StoreError("INVALID_TYPE_ON_FIELD_IN_RECORD", f"{name}: value not of required type")


def _coerce_value(sobject: SObjectType, name: str, value: Any, store: RecordStore) -> Any:
    kind = sobject.fields[name]
    if value is None:
        return None
    if kind in (FieldType.STRING, FieldType.PICKLIST):
        if not isinstance(value, str):
            raise _bad_type(name)
        if len(value) > 255:
            raise StoreError("STRING_TOO_LONG", f"{name}: data value too large (max 255)")
        return value
    if kind is FieldType.REFERENCE:
        target = store.find(value) if isinstance(value, str) else None
        if target is None:
            raise StoreError("INVALID_CROSS_REFERENCE_KEY", f"invalid cross reference id: {name}")
        return target["Id"]
    if kind is FieldType.BOOLEAN:
        if not isinstance(value, bool):
            raise _bad_type(name)
        return value
    if kind in (FieldType.CURRENCY, FieldType.NUMBER):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _bad_type(name)
        return float(value)
    if kind is FieldType.DATE:
        if isinstance(value, date) and not isinstance(value, datetime):
            return value
        try:
            return date.fromisoformat(str(value))
        except ValueError:
            raise _bad_type(name) from None
    if kind is FieldType.DATETIME:
        if isinstance(value, datetime):
            return value.astimezone(UTC)
        try:
            return parse_datetime_literal(str(value).replace("+0000", "Z"))
        except SoqlError:
            raise _bad_type(name) from None
    raise _bad_type(name)
