"""`crmsync check` against the running product: one line per check, exit code = any failure."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.ops.conftest import OpsStack
from tests.support.processes import REPO_ROOT, crmsync_env
from worker.sandbox.stack import SANDBOX_METRONOME_TOKEN

pytestmark = pytest.mark.integration


def run_check(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", "check", "--worker-timeout=60"],
        cwd=REPO_ROOT,
        env=crmsync_env(env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def lines(output: str) -> dict[str, str]:
    found = {}
    for line in output.splitlines():
        status, _, rest = line.partition(" ")
        name = rest.strip().split(":", 1)[0]
        found[name] = status
    return found


def test_everything_up_is_ok_and_exit_zero(ops: OpsStack) -> None:
    result = run_check(ops.stack.env())
    assert result.returncode == 0, result.stdout + result.stderr
    assert lines(result.stdout) == {
        "settings": "ok",
        "redis": "ok",
        "salesforce": "ok",
        "metronome": "ok",
        "pubsub": "ok",
        "worker": "ok",
    }, result.stdout
    assert "API quota" in result.stdout
    assert SANDBOX_METRONOME_TOKEN not in result.stdout + result.stderr


def test_a_wrong_metronome_token_fails_that_line_only(ops: OpsStack) -> None:
    env = {**ops.stack.env(), "METRONOME_BEARER_TOKEN": "wrong-token-123456"}
    result = run_check(env)
    assert result.returncode == 1, result.stdout + result.stderr
    status = lines(result.stdout)
    assert status["metronome"] == "FAIL", result.stdout
    assert "401" in result.stdout
    assert {k: v for k, v in status.items() if k != "metronome"} == {
        "settings": "ok",
        "redis": "ok",
        "salesforce": "ok",
        "pubsub": "ok",
        "worker": "ok",
    }
    assert "wrong-token-123456" not in result.stdout + result.stderr


def test_a_topic_that_cannot_be_subscribed_fails_the_pubsub_line(ops: OpsStack) -> None:
    env = {**ops.stack.env(), "CRMSYNC_LISTENER_TOPICS": "/data/NoSuchChangeEvent"}
    result = run_check(env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert lines(result.stdout)["pubsub"] == "FAIL", result.stdout
    assert "/data/NoSuchChangeEvent" in result.stdout
