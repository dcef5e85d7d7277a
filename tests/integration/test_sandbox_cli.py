"""`crmsync sandbox` serves both emulators with the credentials it was given."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import metronome
import pytest
from metronome import Metronome

from tests.support.prewarmed import run_cli
from tests.support.processes import REPO_ROOT, crmsync_env
from worker.salesforce.events.auth import credentials_of
from worker.salesforce.events.client import PubSubClient, open_channel
from worker.sandbox.salesforce import SandboxCredentials
from worker.sandbox.salesforce.client import build_sandbox_salesforce

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_sandbox_serves_both_emulators_with_the_given_credentials(tmp_path: Path) -> None:
    metronome_port, salesforce_port, pubsub_port = _free_port(), _free_port(), _free_port()
    credentials = SandboxCredentials(
        username="ops@acme.test", password="pw-1", security_token="tok-1"
    )
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "worker.cli",
            "sandbox",
            f"--metronome-port={metronome_port}",
            f"--salesforce-port={salesforce_port}",
            f"--pubsub-port={pubsub_port}",
            "--metronome-token=tok-metronome",
            f"--salesforce-user={credentials.username}",
            f"--salesforce-password={credentials.password}",
            f"--salesforce-token={credentials.security_token}",
            "--seed-accounts=5",
        ],
        cwd=REPO_ROOT,
        env=crmsync_env({}),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        banner = []
        for line in process.stdout:  # readiness: the banner's last line
            banner.append(line)
            if line.startswith("Ctrl-C"):
                break
        assert f"http://127.0.0.1:{metronome_port}" in "".join(banner)

        client = Metronome(
            bearer_token="tok-metronome", base_url=f"http://127.0.0.1:{metronome_port}"
        )
        assert list(client.v1.customers.list()) == []
        wrong = Metronome(bearer_token="nope", base_url=f"http://127.0.0.1:{metronome_port}")
        with pytest.raises(metronome.AuthenticationError):
            wrong.v1.customers.list()

        sf = build_sandbox_salesforce(f"http://127.0.0.1:{salesforce_port}", credentials)
        assert sf.query("SELECT Id FROM Account")["totalSize"] == 5

        pubsub = PubSubClient(open_channel(f"127.0.0.1:{pubsub_port}", plaintext=True))
        try:
            topic = pubsub.get_topic("/data/OpportunityChangeEvent", credentials_of(sf))
            assert topic.can_subscribe
        finally:
            pubsub.close()

        # The banner is a ready .env: every value real, the secrets included.
        text = "".join(banner)
        for line in (
            f"METRONOME_BASE_URL=http://127.0.0.1:{metronome_port}",
            "METRONOME_BEARER_TOKEN=tok-metronome",
            f"CRMSYNC_SALESFORCE_EMULATOR_URL=http://127.0.0.1:{salesforce_port}",
            f"SALESFORCE_USERNAME={credentials.username}",
            f"SALESFORCE_PASSWORD={credentials.password}",
            f"SALESFORCE_SECURITY_TOKEN={credentials.security_token}",
            f"CRMSYNC_PUBSUB_EMULATOR_ADDRESS=127.0.0.1:{pubsub_port}",
        ):
            assert f"\n{line}\n" in text, text
        env_file = tmp_path / ".env"
        env_file.write_text(
            "\n".join(x for x in text.splitlines() if "=" in x and not x.startswith("#"))
        )
        _edits_through_the_rest_api(tmp_path, sf)
    finally:
        process.send_signal(signal.SIGINT)
        exit_code = process.wait(timeout=30)
        if process.stdout is not None:
            process.stdout.close()
    assert exit_code == 0


def test_sandbox_help_shows_the_default_credentials() -> None:
    result = run_cli({}, "sandbox", "--help")
    assert result.returncode == 0, result.stderr
    for flag in ("--salesforce-user", "--salesforce-password", "--salesforce-token"):
        assert flag in result.stdout
    assert "demo@crmsync.local" in result.stdout


def _sandbox(cwd: Path, *args: str) -> str:
    """`crmsync sandbox EDIT ...` run where the printed .env was saved, as a newcomer would
    (the settings come from that .env alone)."""
    result = run_cli({}, "sandbox", *args, timeout_s=60, cwd=cwd)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def _edits_through_the_rest_api(cwd: Path, sf: Any) -> None:
    def deal(account_id: str) -> dict[str, Any]:
        soql = f"SELECT StageName, IsWon, Account.Name FROM Opportunity WHERE AccountId = '{account_id}'"  # noqa: S608, E501
        [row] = sf.query(soql)["records"]
        return {"stage": row["StageName"], "won": row["IsWon"], "name": row["Account"]["Name"]}

    account_id = _sandbox(cwd, "add-account", "Acme Corp").split(":")[0]
    assert deal(account_id) == {"stage": "Prospecting", "won": False, "name": "Acme Corp"}
    _sandbox(cwd, "close", account_id)
    assert deal(account_id)["won"] is True
    _sandbox(cwd, "rename", account_id, "Acme Inc")
    assert deal(account_id)["name"] == "Acme Inc"
    _sandbox(cwd, "reopen", account_id)
    assert deal(account_id)["won"] is False

    refused = run_cli({}, "sandbox", "reopen", account_id, timeout_s=60, cwd=cwd)
    assert refused.returncode == 2
    assert refused.stderr.splitlines() == [
        f"crmsync: account {account_id} has no won deal to move to 'Negotiation/Review'"
    ]

    # A product the org does not sell: one line with the org's products, nothing created.
    typo = run_cli(
        {},
        "sandbox",
        "add-account",
        "Typo Co",
        "--rate-card=standard",
        "--line-item=SEATS,quantity=50",
        timeout_s=60,
        cwd=cwd,
    )
    assert typo.returncode == 2
    assert typo.stderr.splitlines() == [
        "crmsync: --line-item 'SEATS,quantity=50': no product 'SEATS' in the sandbox org; its "
        "products: SEAT (Platform seat, subscription), COMMIT (Prepaid commit, commit), "
        "COMPUTE (Compute, usage), ONBOARD (Onboarding fee, fee)"
    ]
    assert sf.query("SELECT Id FROM Account WHERE Name = 'Typo Co'")["totalSize"] == 0
