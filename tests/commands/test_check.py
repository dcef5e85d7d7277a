"""`crmsync check` against the running product: one line per check, exit code = any failure."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from tests.support.ops_stack import OpsStack
from tests.support.prewarmed import run_cli
from worker.sandbox.stack import SANDBOX_METRONOME_TOKEN

pytestmark = pytest.mark.integration


def run_check(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(env, "check", "--worker-timeout=60", *args, timeout_s=120)


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
        "mapping": "ok",
        "redis": "ok",
        "salesforce": "ok",
        "salesforce fields": "ok",
        "metronome": "ok",
        "contracts": "ok",
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
    # The contract catalog is not checked through a Metronome that refuses the token: one
    # cause, one failed line.
    assert {k: v for k, v in status.items() if k != "metronome"} == {
        "settings": "ok",
        "mapping": "ok",
        "redis": "ok",
        "salesforce": "ok",
        "salesforce fields": "ok",
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


def test_a_bad_mapping_is_the_mapping_line_and_salesforce_stays_ok(
    ops: OpsStack, tmp_path: Path
) -> None:
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text("version: 1\nname: {field: Account.Name}\nnmae_typo: 1\n")
    result = run_check({**ops.stack.env(), "CRMSYNC_MAPPING": str(mapping)})
    assert result.returncode == 1, result.stdout + result.stderr
    status = lines(result.stdout)
    assert status["mapping"] == "FAIL" and status["salesforce"] == "ok", result.stdout
    [line] = [x for x in result.stdout.splitlines() if x.startswith("FAIL")]
    assert f"{mapping}:3: key nmae_typo" in line
    assert "Traceback" not in result.stdout + result.stderr


def test_quick_validates_the_mapping_too(ops: OpsStack, tmp_path: Path) -> None:
    """The compose health check: a worker whose every poll would fail is not healthy."""
    env = {**ops.stack.env(), "CRMSYNC_MAPPING": str(tmp_path / "missing.yaml")}
    result = run_check(env, "--quick")
    assert result.returncode == 1
    status = lines(result.stdout)
    assert status["mapping"] == "FAIL" and "salesforce" not in status, result.stdout


def test_each_wrong_setting_is_a_line_of_its_own(ops: OpsStack) -> None:
    env = {**ops.stack.env(), "CRMSYNC_OVERLAP_S": "soon", "CRMSYNC_CONCURRENCY": "-1"}
    result = run_check(env)
    assert result.returncode == 1
    failures = [x for x in result.stdout.splitlines() if x.startswith("FAIL settings:")]
    assert len(failures) == 2, result.stdout
    assert "CRMSYNC_OVERLAP_S" in failures[0] and "CRMSYNC_CONCURRENCY" in failures[1]


def test_a_replica_checks_its_own_node_not_the_shared_queue(ops: OpsStack) -> None:
    """The ops worker runs as ops@HOST: another node name must fail even though a worker
    consumes the queue (a replica's health check must not be answered by another)."""
    env = ops.stack.env()
    own = run_check(env, "--quick", f"--node=ops@{socket.gethostname()}")
    assert own.returncode == 0, own.stdout + own.stderr
    other = run_check(env, "--quick", "--node=gone@nowhere", "--worker-timeout=2")
    assert other.returncode == 1
    assert lines(other.stdout)["worker"] == "FAIL"
