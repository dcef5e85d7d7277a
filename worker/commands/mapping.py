"""``crmsync mapping check|preview``: try a mapping file without Salesforce or Metronome.

An operator edits the mapping, runs ``check`` to see that it loads and which Salesforce fields
it will query (so they can confirm the org has them and the integration user can read them),
then ``preview`` on a saved record to see the exact customer a sync would ask Metronome for.
Neither touches the network or any setting.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from mappings import (
    DesiredCustomer,
    Mapping,
    MappingError,
    MappingFileError,
    load_default_mapping,
    load_mapping,
    record_from_account,
)
from mappings.contracts.engine import won_opportunity_rows
from worker.commands.errors import mapping_problems

#: Exit codes: 0 fine, 1 the record cannot be mapped, 2 the mapping or the input is invalid.
EXIT_RECORD_INVALID = 1
EXIT_INPUT_INVALID = 2


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("mapping", help="validate or preview a mapping file")
    actions = parser.add_subparsers(dest="mapping_command", metavar="ACTION", required=True)

    check = actions.add_parser("check", help="validate a mapping and print the fields it reads")
    check.add_argument("file", nargs="?", help="mapping YAML (default: the packaged default)")
    check.add_argument("--json", action="store_true", help="print one JSON object")
    check.set_defaults(func=run_check)

    preview = actions.add_parser("preview", help="print the desired customer for a record")
    preview.add_argument("file", help="mapping YAML, or 'default' for the packaged default")
    preview.add_argument("record", help="record JSON file ('-' for stdin)")
    preview.add_argument(
        "--account",
        action="store_true",
        help="the record is an Account row (SELECT ... FROM Account), not an Opportunity",
    )
    preview.set_defaults(func=run_preview)


def _load(file: str | None) -> Mapping:
    if file is None or file == "default":
        return load_default_mapping()
    return load_mapping(file)


def run_check(args: argparse.Namespace) -> int:
    try:
        mapping = _load(args.file)
    except MappingFileError as exc:
        print(mapping_problems(exc), file=sys.stderr)
        return EXIT_INPUT_INVALID
    report = {
        "ok": True,
        "file": args.file or "default",
        "rollup_enabled": mapping.rollup_enabled,
        "opportunity_fields": mapping.opportunity_fields(),
        "account_fields": mapping.account_fields(),
        "notes": mapping.notes,
        "contract": mapping.contract is not None,
        "line_item_fields": mapping.line_item_fields(),
    }
    org, problems = _against_the_org(mapping)
    report["salesforce"] = org
    if problems:
        report["ok"] = False
        report["problems"] = problems
    if args.json:
        print(json.dumps(report, indent=2))
        return EXIT_INPUT_INVALID if problems else 0
    if problems:
        for problem in problems:
            print(f"crmsync: {problem}", file=sys.stderr)
        return EXIT_INPUT_INVALID
    print(f"ok: {report['file']} is a valid mapping")
    print(f"Salesforce: {org}")
    print("Opportunity fields read: " + ", ".join(mapping.opportunity_fields()))
    print("Account fields read: " + ", ".join(mapping.account_fields()))
    if mapping.contract is not None:
        pricing = mapping.contract.pricing.chosen()[0][0]
        print(f"Contracts: won deals get a contract (pricing by {pricing})")
        if mapping.line_item_fields():
            print("Line item fields read: " + ", ".join(mapping.line_item_fields()))
        kinds = mapping.contract.deal_kind
        if kinds is not None:
            print(f"Expansions (Type): {', '.join(kinds.expansion)}; edit the live contract")
            print(f"Renewals (Type): {', '.join(kinds.renewal)}; transition from the old one")
    for note in mapping.notes:
        print(f"note: {note}")
    return 0


def _against_the_org(mapping: Mapping) -> tuple[str, list[str]]:
    """With Salesforce credentials set: describe the mapped objects, one problem per field the
    org refuses. Without them (or when Salesforce cannot be asked) the file alone is checked,
    and the first element says so."""
    from worker.commands.errors import explain
    from worker.commands.preflight import org_field_problems
    from worker.settings import SettingsError, load_settings

    try:
        settings = load_settings()
    except SettingsError:
        return "not checked (the settings do not load: run crmsync check)", []
    if not settings.salesforce_configured:
        return "not checked (no SALESFORCE_* login set)", []
    try:
        problems = org_field_problems(settings, mapping)
    except Exception as exc:
        failure = explain(exc, settings)
        why = failure.message.removeprefix("crmsync: ") if failure else type(exc).__name__
        return f"not checked: {why}", []
    if problems:
        return "fields refused", [problem.line() for problem in problems]
    return "every mapped field exists and is readable", []


def _strip_attributes(value: Any) -> Any:
    """Drop simple-salesforce's ``attributes`` blocks so a saved API row works as-is."""
    if isinstance(value, dict):
        return {k: _strip_attributes(v) for k, v in value.items() if k != "attributes"}
    return value


def run_preview(args: argparse.Namespace) -> int:
    try:
        mapping = _load(args.file)
    except MappingFileError as exc:
        print(mapping_problems(exc), file=sys.stderr)
        return EXIT_INPUT_INVALID
    try:
        text = sys.stdin.read() if args.record == "-" else Path(args.record).read_text("utf-8")
        record = json.loads(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        print(f"{args.record}: cannot read record JSON: {exc}", file=sys.stderr)
        return EXIT_INPUT_INVALID
    if not isinstance(record, dict):
        print(f"{args.record}: the record must be a JSON object", file=sys.stderr)
        return EXIT_INPUT_INVALID
    record = _strip_attributes(record)
    if args.account:
        record = record_from_account(record)
    try:
        desired = mapping.map_record(record)
    except MappingError as exc:
        print(f"record {exc.record_id} cannot be mapped:", file=sys.stderr)
        for path, message in exc.problems:
            print(f"  {path}: {message}", file=sys.stderr)
        return EXIT_RECORD_INVALID
    output: dict[str, Any] = {
        "desired": desired.model_dump(mode="json"),
        "state_hash": desired.state_hash(),
    }
    if mapping.contract is not None:
        output["contracts"], bad = _preview_contracts(mapping, record, desired)
        if bad:
            print(json.dumps(output, indent=2, ensure_ascii=False))
            return EXIT_RECORD_INVALID
    print(json.dumps(output, indent=2, ensure_ascii=False))
    return 0


def _preview_contracts(
    mapping: Mapping, record: dict[str, Any], desired: DesiredCustomer
) -> tuple[list[dict[str, Any]], bool]:
    """Each won deal's contract as the create body would carry it (ids Metronome assigns are
    shown as placeholders), or its mapping problems."""
    out: list[dict[str, Any]] = []
    bad = False
    for row in won_opportunity_rows(record):
        try:
            contract = mapping.map_contract(row, desired)
        except MappingError as exc:
            bad = True
            out.append({"opportunity_id": exc.record_id, "problems": dict(exc.problems)})
            continue
        if contract is None:
            out.append(_preview_edit(mapping, row, desired))
            continue
        body = contract.request_body(
            "<customer id>",
            billing_configuration_id=(
                f"<id of the customer's {contract.billing_provider} configuration>"
                if contract.billing_provider
                else None
            ),
            product_ids={
                c.product_ref(): f"<id of product {c.product_ref()}>" for c in contract.commits
            },
            renews_contract_id=(
                f"<id of the contract of {contract.parent_opportunity_id or 'the renewed deal'}>"
                if contract.kind == "renewal"
                else None
            ),
        )
        out.append({"opportunity_id": contract.salesforce_opportunity_id, "contract": body})
    return out, bad


def _preview_edit(
    mapping: Mapping, row: dict[str, Any], desired: DesiredCustomer
) -> dict[str, Any]:
    """An expansion's edit body (the contract it edits shown as a placeholder); a deal that
    is neither gets ``contract: null``. Problems were reported by the contract's mapping."""
    try:
        edit = mapping.map_expansion(row, desired)
    except MappingError as exc:
        return {"opportunity_id": exc.record_id, "problems": dict(exc.problems)}
    if edit is None:
        return {"opportunity_id": row.get("Id"), "contract": None}
    target = edit.parent_opportunity_id or "the account's one live contract"
    return {
        "opportunity_id": edit.salesforce_opportunity_id,
        "edit": edit.request_body("<customer id>", f"<id of the contract of {target}>"),
    }
