"""The CLI: every design command is listed, and bad configuration reads as one message."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.processes import REPO_ROOT, crmsync_env


def _crmsync(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", *args],
        cwd=REPO_ROOT,
        env=crmsync_env(env or {}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


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


@pytest.mark.parametrize("command", [["poll"], ["worker"], ["resync", "--all"], ["plan", "001"]])
def test_commands_that_talk_to_the_apis_name_the_missing_settings(command: list[str]) -> None:
    result = _crmsync(*command)
    assert result.returncode == 2
    assert "METRONOME_BEARER_TOKEN" in result.stderr
    assert "SALESFORCE_USERNAME" in result.stderr
    assert "crmsync demo" in result.stderr
    assert "Traceback" not in result.stderr
