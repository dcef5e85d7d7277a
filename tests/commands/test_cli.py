"""The CLI: every design command is listed, and bad configuration reads as one message."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.support.prewarmed import run_cli
from tests.support.processes import REPO_ROOT
from worker.commands.dead_letters import DEAD_LETTER_KINDS


def _crmsync(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_cli(env or {}, *args, timeout_s=60)


def test_help_lists_the_commands() -> None:
    result = _crmsync("--help")
    assert result.returncode == 0
    for command in ("check", "worker", "beat", "flower"):
        assert command in result.stdout


def test_bad_configuration_is_one_readable_message_not_a_traceback() -> None:
    result = _crmsync("check", env={"CRMSYNC_OVERLAP_S": "a while", "SALESFORCE_USERNAME": "x"})
    assert result.returncode != 0
    assert "Traceback" not in result.stdout + result.stderr
    assert "CRMSYNC_OVERLAP_S" in result.stdout


def test_flower_refuses_to_start_without_credentials() -> None:
    result = _crmsync("flower")
    assert result.returncode == 2
    assert "FLOWER_USER" in result.stderr and "--insecure-local" in result.stderr


@pytest.mark.parametrize(
    "command",
    [["poll"], ["worker"], ["listen"], ["resync", "--all"], ["plan", "001Hp00000AbCdE"]],
)
def test_commands_that_talk_to_the_apis_name_the_missing_settings(command: list[str]) -> None:
    result = _crmsync(*command)
    assert result.returncode == 2
    assert "METRONOME_BEARER_TOKEN" in result.stderr
    assert "SALESFORCE_USERNAME" in result.stderr
    assert "crmsync demo" in result.stderr
    assert "Traceback" not in result.stderr


def test_version() -> None:
    result = _crmsync("--version")
    assert result.returncode == 0
    assert re.fullmatch(r"crmsync \S+\n", result.stdout)


def test_redrive_refuses_an_unknown_kind_and_lists_the_known_ones() -> None:
    result = _crmsync("dead-letters", "redrive", "--kind", "nope")
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert "'nope'" in line
    for kind in DEAD_LETTER_KINDS:
        assert kind in line


def test_every_dead_letter_kind_the_tasks_write_is_known_to_redrive() -> None:
    written: set[str] = set()
    for source in (REPO_ROOT / "tasks").glob("*.py"):
        text = source.read_text()
        written |= set(re.findall(r"\bdead\(\s*\"(\w+)\"", text))
        written |= set(re.findall(r"dead_letter_message\(\s*\"(\w+)\"", text))
        written |= set(re.findall(r"\bkind=\"(\w+)\"", text))
        written |= set(re.findall(r"\bkind = \"(\w+)\" if", text))
        written |= set(re.findall(r"else \"(\w+)\"\n\s+dead_letter_message", text))
    assert written, "the patterns no longer find the kinds: update this test"
    assert written <= set(DEAD_LETTER_KINDS), written - set(DEAD_LETTER_KINDS)


def test_debug_shows_the_traceback_behind_the_line() -> None:
    # beat checks the mapping before it touches Redis: nothing starts here.
    env = {"CRMSYNC_MAPPING": "/nonexistent/mapping.yaml"}
    quiet = _crmsync("beat", env=env)
    assert quiet.returncode == 2 and "Traceback" not in quiet.stderr
    assert "/nonexistent/mapping.yaml" in quiet.stderr
    for debug in (_crmsync("beat", "--debug", env=env), _crmsync("--debug", "beat", env=env)):
        assert debug.returncode == 2
        assert "Traceback" in debug.stderr and "MappingFileError" in debug.stderr
    logged = _crmsync("beat", env={**env, "CRMSYNC_LOG_LEVEL": "debug"})
    assert "Traceback" in logged.stderr


def test_only_salesforce_username_names_every_missing_variable() -> None:
    result = _crmsync("poll", env={"SALESFORCE_USERNAME": "ops@acme.test"})
    assert result.returncode == 2
    for name in ("SALESFORCE_PASSWORD", "SALESFORCE_SECURITY_TOKEN", "METRONOME_BEARER_TOKEN"):
        assert name in result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
