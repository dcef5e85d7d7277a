"""``GET /services/data/vXX.X/sobjects/{Object}/describe/``: the emulated org's objects as the
REST API describes them, so ``crmsync check`` and the worker's start-up check can be run
against the emulator exactly as against an org.

Only what a client reads to check a mapping is served: the object's ``name`` and ``fields``,
each with ``name``, ``type``, ``custom``, and for a lookup its ``relationshipName`` and
``referenceTo``. A field the integration user cannot read is simply absent from a real
describe (field-level security hides it); ``hidden`` plays that part here.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from worker.sandbox.salesforce.schema import FieldType, SObjectType


def describe(sobject: SObjectType, hidden: Collection[str] = ()) -> dict[str, Any]:
    """The describe answer of ``sobject``, without the fields named in ``hidden``
    (``Object.Field``, case-insensitive)."""
    concealed = {name.lower() for name in hidden}
    by_key = {rel.foreign_key: rel for rel in sobject.relationships.values()}
    fields: list[dict[str, Any]] = []
    for name, kind in sobject.fields.items():
        if f"{sobject.name}.{name}".lower() in concealed:
            continue
        relationship = by_key.get(name)
        fields.append(
            {
                "name": name,
                "type": kind.value,
                "custom": name.endswith("__c"),
                "nillable": name not in sobject.required and kind is not FieldType.ID,
                "relationshipName": relationship.name if relationship else None,
                "referenceTo": [relationship.target] if relationship else [],
            }
        )
    return {
        "name": sobject.name,
        "keyPrefix": sobject.key_prefix,
        "queryable": True,
        "custom": sobject.name.endswith("__c"),
        "fields": fields,
    }
