"""The command line behaves the same everywhere: --version on every command, --json on every
command that reports, one line for an expected start-up failure, and a --help that imports no
command module (``bench/cli_startup.py`` measures the time; this checks the cause)."""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from worker import cli
from worker.commands import sandbox
from worker.sandbox import deals


def parsers(parser: argparse.ArgumentParser, path: str = "crmsync") -> Iterator[tuple[str, Any]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from parsers(sub, f"{path} {name}")


def test_help_imports_no_command_module_and_nothing_heavy() -> None:
    code = (
        "import sys; from worker import cli\n"
        "try:\n    cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('pydantic', 'celery', 'redis', 'simple_salesforce', 'mappings', "
        "'worker.commands.status', 'worker.settings') if m in sys.modules]\n"
        "print(heavy, file=sys.stderr)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stderr.strip().splitlines()[-1] == "[]"
    assert "status" in result.stdout and "sandbox" in result.stdout


def test_the_help_line_of_each_command_is_its_modules() -> None:
    full = cli.build_parser()
    (commands,) = [a for a in full._actions if isinstance(a, argparse._SubParsersAction)]
    shown = {action.dest: action.help for action in commands._choices_actions}
    assert shown == {name: summary for name, _, summary in cli.COMMANDS}


def test_every_command_and_sub_command_takes_version(capsys: pytest.CaptureFixture[str]) -> None:
    missing = [
        path for path, parser in parsers(cli.build_parser())
        if "--version" not in parser._option_string_actions
    ]  # fmt: skip
    assert not missing
    for words in (["status", "--version"], ["mapping", "check", "--version"], ["--version"]):
        assert cli.main(words) == 0
        assert capsys.readouterr().out.startswith("crmsync ")


@pytest.mark.parametrize(
    "words",
    [
        ["plan", "001000000000001AAA"],
        ["check"],
        ["poll"],
        ["resync", "--all"],
        ["status"],
        ["attention"],
        ["dead-letters", "list"],
        ["parked", "list"],
        ["history", "001000000000001AAA"],
        ["mapping", "check"],
        ["sandbox", "contracts"],
        ["sandbox", "customers"],
        ["demo"],
    ],
)
def test_every_command_that_reports_takes_json(words: list[str]) -> None:
    args = cli.build_parser().parse_args([*words, "--json"])
    assert args.json is True


def test_only_the_ports_given_are_served() -> None:
    parser = cli.build_parser(["sandbox"])
    two = parser.parse_args(["sandbox", "--metronome-port", "9001", "--salesforce-port", "9002"])
    assert sandbox.ports(two) == (9001, 9002, None)
    default = parser.parse_args(["sandbox"])
    assert sandbox.ports(default) == (8081, 8082, 8083)
    asked = parser.parse_args(["sandbox", "--salesforce-port", "9002", "--pubsub-port", "9003"])
    assert sandbox.ports(asked) == (8081, 9002, 9003)


def test_a_busy_port_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with socket.socket() as free:
            free.bind(("127.0.0.1", 0))
            other = free.getsockname()[1]
        code = cli.main(["sandbox", "--metronome-port", str(other), "--salesforce-port", str(port)])
    err = capsys.readouterr().err
    assert code == 1
    assert err.strip().splitlines() == [
        f"crmsync: port {port} on 127.0.0.1 is in use (another `crmsync sandbox`?): stop that "
        "program, or choose another port with --salesforce-port N"
    ]


class Recorder:
    """A Salesforce client that records what would have been created."""

    def __init__(self) -> None:
        self.created: list[str] = []
        recorder = self

        class SObject:
            def __init__(self, name: str) -> None:
                self.name = name

            def create(self, fields: dict[str, Any]) -> dict[str, Any]:
                recorder.created.append(self.name)
                return {"id": "001Hp000000000AIAQ"}

        self.Account = SObject("Account")
        self.Opportunity = SObject("Opportunity")


def test_a_too_long_account_name_is_refused_before_anything_is_created() -> None:
    sf = Recorder()
    with pytest.raises(deals.SandboxEditError, match="1 to 255 characters"):
        deals.add_account(sf, "x" * 256)  # type: ignore[arg-type]
    assert sf.created == []
    deals.add_account(sf, "y" * 255, rate_card="standard")  # type: ignore[arg-type]
    assert sf.created == ["Account", "Opportunity"]


def test_attention_json_is_an_empty_array_when_nothing_is_open(
    redis_server: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    assert cli.main(["attention", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert cli.main(["dead-letters", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
