"""A newcomer's first sync, from README's commands alone, in clean shells.

Each "terminal" is a fresh ``bash`` with no virtualenv activated and nothing of ours on PATH
(only /usr/bin and /bin, an empty HOME): the commands are the README's, checked to be there
word for word, run from a directory that holds the repository's ``.venv`` (a link, so the
test writes nothing into the repository). The one change: the sandbox gets free ports, as
other tests may hold 8081-8083. The newcomer reaches a Metronome customer and its contract.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import REPO_ROOT
from tests.support.waiting import free_port, wait_until

pytestmark = pytest.mark.integration

README = (REPO_ROOT / "README.md").read_text()
FIRST_SYNC = README.split("## A first sync you can watch", 1)[1].split("\n## ", 1)[0]

ACTIVATE = ". .venv/bin/activate"
SANDBOX = "crmsync sandbox"
TRY = "mkdir try && cd try"
RUN = "crmsync run"
ADD = 'crmsync sandbox add-account "Acme Corp" --rate-card standard'
SEATS = "--line-item SEAT,quantity=50,price=1200"
CLOSE = "crmsync sandbox close"
CONTRACTS = "crmsync sandbox contracts"
CUSTOMERS = "crmsync sandbox customers"


def test_the_commands_used_here_are_the_readmes() -> None:
    for command in (ACTIVATE, SANDBOX, TRY, RUN, ADD, SEATS, CLOSE, CONTRACTS, CUSTOMERS):
        assert command in FIRST_SYNC, command
    assert ". .venv/bin/activate && cd try" in FIRST_SYNC


def clean_env(home: Path) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8", "TERM": "dumb"}


def terminal(script: str, cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """A long-running command in a new shell (its own process group, stopped after)."""
    with log.open("wb") as out:
        return subprocess.Popen(
            ["/bin/bash", "-c", script],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def shell(script: str, cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run(
        ["/bin/bash", "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def stop(process: subprocess.Popen[bytes]) -> None:
    """Ctrl-C in that terminal: SIGINT to its whole foreground process group.

    Celery's pool children ignore SIGINT, so a sync still running finishes while the worker
    shuts down warm. (A SIGTERM to the whole group, which no terminal, Docker or Kubernetes
    sends, killed a busy pool child and logged WorkerLostError on a loaded machine.)
    """
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[Path]:
    """Where the newcomer types: the repository's .venv is there, nothing else."""
    (tmp_path / "home").mkdir()
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / ".venv").symlink_to(REPO_ROOT / ".venv")
    yield tmp_path


def test_a_newcomer_reaches_a_customer_and_a_contract(desk: Path) -> None:
    repo, env = desk / "repo", clean_env(desk / "home")
    assert "crmsync" not in shell("command -v crmsync || echo none", repo, env)
    ports = f"--metronome-port {free_port()} --salesforce-port {free_port()} "
    ports += f"--pubsub-port {free_port()}"
    sandbox_log = desk / "sandbox.log"
    sandbox = terminal(f"{ACTIVATE}\n{SANDBOX} {ports}", repo, env, sandbox_log)
    running: list[subprocess.Popen[bytes]] = [sandbox]
    try:
        printed = wait_until(lambda: _env_block(sandbox_log.read_text()), timeout_s=120)
        # Terminal 2: copy the printed lines into try/.env, then run worker + beat.
        shell(f"{ACTIVATE}\n{TRY}", repo, env)
        (repo / "try" / ".env").write_text("\n".join(printed) + "\n")
        running.append(terminal(f"{ACTIVATE}\ncd try\n{RUN}", repo, env, desk / "run.log"))
        # Terminal 3: a sales rep adds an account with a rate card and seats, and wins its deal.
        added = shell(f"{ACTIVATE} && cd try\n{ADD} {SEATS}", repo, env)
        account_id = added.split(":", 1)[0].strip()
        assert re.fullmatch(r"001\w{15}", account_id), added
        shell(f"{ACTIVATE} && cd try\n{CLOSE} {account_id}", repo, env)

        def contract() -> dict[str, Any] | None:
            customers = json.loads(shell(f"{ACTIVATE} && cd try\n{CUSTOMERS} --json", repo, env))
            ours = [c for c in customers if c["custom_fields"].get("sfdc_account_id") == account_id]
            if not ours:
                return None
            contracts = json.loads(shell(f"{ACTIVATE} && cd try\n{CONTRACTS} --json", repo, env))
            return next((c for c in contracts if c["customer_id"] == ours[0]["id"]), None)

        made = wait_until(contract, timeout_s=180, interval_s=2)
        assert made["customer_id"]
        [seats] = made["subscriptions"]
        assert [step["quantity"] for step in seats["quantity_schedule"]] == [50]
        listing = shell(f"{ACTIVATE} && cd try\n{CONTRACTS}", repo, env)
        assert made["id"] in listing
        assert "  subscription Platform seat: 50 from " in listing
    finally:
        for process in reversed(running):
            stop(process)
    for log in (sandbox_log, desk / "run.log"):
        assert "Traceback" not in log.read_text(), log.read_text()[-3000:]


def _env_block(output: str) -> list[str] | None:
    """The .env lines `crmsync sandbox` printed, once it printed them all."""
    lines = [line for line in output.splitlines() if re.match(r"^[A-Z_]+=\S", line)]
    return lines if any(line.startswith("CRMSYNC_DATA_DIR=") for line in lines) else None
