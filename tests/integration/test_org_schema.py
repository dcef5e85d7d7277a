"""A mapped field the org refuses is found before anything runs: ``crmsync check``, ``mapping
check`` (with credentials) and ``worker`` start describe the mapped objects on the Salesforce
emulator (real processes, real Redis, simple-salesforce) and name the field."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.prewarmed import run_cli, start_service
from tests.support.processes import REPO_ROOT
from worker.sandbox.stack import SandboxStack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def misspelt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("mapping") / "misspelt.yaml"
    text = (REPO_ROOT / "mappings" / "default.yaml").read_text()
    assert "field: Account.Name\n" in text
    path.write_text(text.replace("field: Account.Name\n", "field: Account.Nmae\n", 1))
    return path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, misspelt: Path) -> Iterator[SandboxStack]:
    with SandboxStack(
        data_dir=tmp_path_factory.mktemp("org") / "data", launcher=start_service
    ) as running:
        yield running


def env(stack: SandboxStack, mapping: Path | None) -> dict[str, str]:
    values = stack.env()
    if mapping is not None:
        values["CRMSYNC_MAPPING"] = str(mapping)
    return values


def test_check_names_the_misspelt_field(stack: SandboxStack, misspelt: Path) -> None:
    result = run_cli(env(stack, misspelt), "check", "--skip-worker")
    assert result.returncode == 1, result.stdout + result.stderr
    failed = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert len(failed) == 1, result.stdout
    assert "salesforce fields" in failed[0]
    assert "Account.Nmae" in failed[0] and "did you mean Account.Name?" in failed[0]
    assert "Traceback" not in result.stderr


def test_check_passes_the_default_mapping(stack: SandboxStack) -> None:
    result = run_cli(env(stack, None), "check", "--skip-worker")
    assert "ok   salesforce fields: every mapped field exists and is readable" in result.stdout


def test_mapping_check_with_credentials_names_the_field(
    stack: SandboxStack, misspelt: Path
) -> None:
    result = run_cli(env(stack, None), "mapping", "check", str(misspelt))
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert "Salesforce field Account.Nmae" in result.stderr
    assert "sf project deploy start" in result.stderr
    without_credentials = run_cli({}, "mapping", "check", str(misspelt))
    assert without_credentials.returncode == 0, without_credentials.stderr
    assert "Salesforce: not checked (no SALESFORCE_* login set)" in without_credentials.stdout


def test_the_worker_refuses_to_start_naming_the_field(stack: SandboxStack, misspelt: Path) -> None:
    result = run_cli(env(stack, misspelt), "worker", "--pool=solo", timeout_s=120)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("crmsync: Salesforce")]
    assert len(lines) == 1 and "Account.Nmae" in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_a_field_the_user_cannot_read_is_refused_too(stack: SandboxStack) -> None:
    assert stack.salesforce is not None
    stack.salesforce.set_faults(hidden_fields=("Account.Billing_Email__c",))
    try:
        result = run_cli(env(stack, None), "check", "--skip-worker")
    finally:
        stack.salesforce.set_faults()
    assert result.returncode == 1
    assert "Salesforce field Account.Billing_Email__c" in result.stdout
    assert "Crmsync_Integration permission set" in result.stdout


def test_a_poll_by_hand_names_the_field_the_query_failed_on(
    stack: SandboxStack, misspelt: Path
) -> None:
    result = run_cli(env(stack, misspelt), "poll")
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip().startswith(
        "crmsync: Salesforce has no readable field Account.Nmae (INVALID_FIELD)"
    ), result.stderr
    assert "{url}" not in result.stderr and "Traceback" not in result.stderr
    # The same configuration again: answered without asking Salesforce (no query).
    assert stack.salesforce is not None
    before = stack.salesforce.request_counts().get("query 400", 0)
    again = run_cli(env(stack, misspelt), "poll")
    assert again.returncode == 2 and "Account.Nmae" in again.stderr, again.stderr
    assert stack.salesforce.request_counts().get("query 400", 0) == before
    # The mapping corrected: the next poll asks at once, and works.
    fixed = run_cli(env(stack, None), "poll", "--json")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
