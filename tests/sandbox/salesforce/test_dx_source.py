"""The Salesforce DX source (mappings/salesforce) is the one list of crmsync's custom fields:
it deploys them to an org, the emulator loads them, and the default mapping reads only them."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from mappings import load_default_mapping
from worker.sandbox.salesforce.describe import describe
from worker.sandbox.salesforce.metadata import custom_fields
from worker.sandbox.salesforce.schema import SOBJECTS

ROOT = Path(__file__).resolve().parents[3] / "mappings" / "salesforce"
DEFAULT = ROOT / "force-app" / "main" / "default"
NS = "{http://soap.sforce.com/2006/04/metadata}"


def deployed() -> dict[str, set[str]]:
    objects = DEFAULT / "objects"
    return {
        folder.name: {p.name.removesuffix(".field-meta.xml") for p in (folder / "fields").iterdir()}
        for folder in objects.iterdir()
    }


def test_the_project_is_a_dx_project_with_one_package_directory() -> None:
    project = json.loads((ROOT / "sfdx-project.json").read_text())
    (package,) = project["packageDirectories"]
    assert (ROOT / package["path"] / "main" / "default" / "objects").is_dir()
    assert project["sourceApiVersion"]


def test_every_custom_field_the_default_mapping_reads_is_deployed() -> None:
    mapping = load_default_mapping()
    wanted: set[tuple[str, str]] = set()
    for path in mapping.opportunity_fields():
        *hops, name = path.split(".")
        if name.endswith("__c"):
            wanted.add(("Account" if hops == ["Account"] else "Opportunity", name))
    wanted |= {("Account", name) for name in mapping.account_fields() if name.endswith("__c")}
    for path in mapping.line_item_fields():
        *hops, name = path.split(".")
        if name.endswith("__c"):
            wanted.add(("Product2" if hops == ["Product2"] else "OpportunityLineItem", name))
    assert ("Product2", "Metronome_Kind__c") in wanted  # the default mapping sells line items
    fields = deployed()
    missing = sorted(f"{o}.{n}" for o, n in wanted if n not in fields.get(o, set()))
    assert not missing, f"no field-meta.xml for {missing}"


def test_the_emulator_has_exactly_the_deployed_custom_fields_with_their_types() -> None:
    for sobject in SOBJECTS.values():
        emulated = {n: t.value for n, t in sobject.fields.items() if n.endswith("__c")}
        assert emulated == custom_fields(sobject.name), sobject.name
        described = {f["name"] for f in describe(sobject)["fields"]}
        assert set(custom_fields(sobject.name)) <= described


def test_the_permission_set_grants_read_on_every_deployed_field_and_object() -> None:
    path = DEFAULT / "permissionsets" / "Crmsync_Integration.permissionset-meta.xml"
    root = ET.parse(path).getroot()  # noqa: S314 - our own file
    readable = {
        p.findtext(f"{NS}field")
        for p in root.iter(f"{NS}fieldPermissions")
        if p.findtext(f"{NS}readable") == "true"
    }
    objects = {
        p.findtext(f"{NS}object")
        for p in root.iter(f"{NS}objectPermissions")
        if p.findtext(f"{NS}allowRead") == "true"
    }
    fields = deployed()
    assert set(fields) <= objects
    assert {f"{o}.{n}" for o, names in fields.items() for n in names} <= readable
    for p in root.iter(f"{NS}fieldPermissions"):
        assert p.findtext(f"{NS}editable") == "false"  # read only: crmsync never writes
