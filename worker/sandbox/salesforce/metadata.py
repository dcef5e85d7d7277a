"""The emulated org's custom fields, read from the Salesforce DX source that deploys them to a
real org (``mappings/salesforce/force-app/main/default/objects/<Object>/fields/*.field-meta.xml``).

One source for both: ``sf project deploy start`` puts exactly these fields in an org, and the
emulator answers queries, describes and change events for exactly these fields, so the two
cannot drift. A field's ``<type>`` becomes the emulator's field type (the values of
``schema.FieldType``).
"""

from __future__ import annotations

import functools
import xml.etree.ElementTree as ET
from importlib.resources import files
from importlib.resources.abc import Traversable

_NS = "{http://soap.sforce.com/2006/04/metadata}"

#: Metadata API field types → the emulator's type names (``schema.FieldType`` values).
_TYPES = {
    "Text": "string",
    "TextArea": "string",
    "LongTextArea": "string",
    "Email": "string",
    "Phone": "string",
    "Url": "string",
    "Picklist": "picklist",
    "Checkbox": "boolean",
    "Date": "date",
    "DateTime": "datetime",
    "Currency": "currency",
    "Number": "double",
    "Percent": "double",
    "Lookup": "reference",
    "MasterDetail": "reference",
}


def source_root() -> Traversable:
    """The DX project (``sfdx-project.json`` and ``force-app/``), shipped with the mapping."""
    return files("mappings").joinpath("salesforce")


@functools.cache
def custom_fields(sobject: str) -> dict[str, str]:
    """``{field API name: emulator type}`` for the object's deployed custom fields."""
    folder = (
        source_root()
        .joinpath("force-app")
        .joinpath("main")
        .joinpath("default")
        .joinpath("objects")
        .joinpath(sobject)
        .joinpath("fields")
    )
    if not folder.is_dir():
        return {}
    fields: dict[str, str] = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".field-meta.xml"):
            continue
        root = ET.fromstring(entry.read_text(encoding="utf-8"))  # noqa: S314 - our own file
        name = root.findtext(f"{_NS}fullName") or entry.name.removesuffix(".field-meta.xml")
        kind = root.findtext(f"{_NS}type") or ""
        if kind not in _TYPES:
            raise ValueError(f"{entry.name}: field type {kind!r} is not one the emulator knows")
        fields[name] = _TYPES[kind]
    return fields
