"""``crmsync mapping check|preview`` through its own argparse wiring (no Salesforce)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from tests.support.mapping_records import WIDGETS_ACCOUNT_ID, widgets_record
from worker.commands import mapping as command


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="crmsync")
    command.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["mapping", *argv])
    code: int = args.func(args)
    return code


def test_check_prints_the_fields_the_default_mapping_reads(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run("check", "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True
    assert "Account.AWS_Region__c" in report["opportunity_fields"]
    assert "AWS_Region__c" in report["account_fields"]


def test_check_reports_a_bad_file_with_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: {field: Account.Name}\nnmae: {literal: x}\n", encoding="utf-8")
    assert run("check", str(path)) == 2
    err = capsys.readouterr().err
    assert f"{path}:2:" in err
    assert "nmae" in err


def test_preview_prints_the_desired_customer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    record = widgets_record()
    record["attributes"] = {"type": "Opportunity", "url": "/services/data/v59.0/x"}
    path = tmp_path / "record.json"
    path.write_text(json.dumps(record), encoding="utf-8")
    assert run("preview", "default", str(path)) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["desired"]["name"] == "WidgetsExpress"
    assert out["desired"]["custom_fields"] == {"sfdc_account_id": WIDGETS_ACCOUNT_ID}
    assert len(out["state_hash"]) == 64


def test_preview_of_an_account_row(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "account.json"
    path.write_text(json.dumps(widgets_record()["Account"]), encoding="utf-8")
    assert run("preview", "default", str(path), "--account") == 0
    assert json.loads(capsys.readouterr().out)["desired"]["name"] == "WidgetsExpress"


def test_preview_lists_every_problem_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "record.json"
    path.write_text(json.dumps(widgets_record(Name=None, AWS_Region__c="mars-1")), "utf-8")
    assert run("preview", "default", str(path)) == 1
    err = capsys.readouterr().err
    assert "name:" in err
    assert "aws_region" in err


def test_preview_refuses_a_record_that_is_not_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "record.json"
    path.write_text("{not json", encoding="utf-8")
    assert run("preview", "default", str(path)) == 2
    assert "cannot read record JSON" in capsys.readouterr().err
