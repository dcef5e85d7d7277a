"""An operator's questions, answered by the commands against a running product: real Redis, a
real `crmsync worker`, both emulators, and ledger entries, dead letters and attention items
made by real syncs (issue #18). Nothing of ours is mocked; each test uses accounts of its own.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from simple_salesforce.api import Salesforce

from tests.support.deals import close_deal, customers_of
from tests.support.prewarmed import run_cli
from tests.support.stack import poll_and_wait, salesforce_client, stack_with_worker
from worker.sandbox.stack import SandboxStack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxStack]:
    base = tmp_path_factory.mktemp("operations")
    # Every poll reads the re-opened / deleted streams here, so one poll shows a re-open.
    with stack_with_worker(base, extra_env={"CRMSYNC_EVENTS_INTERVAL_S": "0"}) as running:
        yield running


@pytest.fixture(scope="module")
def sf(stack: SandboxStack) -> Salesforce:
    return salesforce_client(stack)


def cli(stack: SandboxStack, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(stack.env(), *args)


def cli_json(stack: SandboxStack, *args: str) -> Any:
    result = cli(stack, *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def json_lines(stack: SandboxStack, *args: str) -> list[dict[str, Any]]:
    result = cli(stack, *args)
    assert result.returncode == 0, result.stderr
    items: list[dict[str, Any]] = json.loads(result.stdout)  # one array, [] when empty
    return items


def opportunity_of(sf: Salesforce, account_id: str) -> str:
    [row] = sf.query(
        f"SELECT Id FROM Opportunity WHERE AccountId = '{account_id}'"  # noqa: S608 - test id
    )["records"]
    return str(sf.Opportunity.get(row["Id"])["Id"])  # type: ignore[operator]


def test_history_of_a_synced_account_lists_its_syncs_newest_first(
    stack: SandboxStack, sf: Salesforce
) -> None:
    account = close_deal(sf, "History Co")
    poll_and_wait(stack)
    sf.Account.update(account, {"Name": "History Company"})  # type: ignore[operator]
    poll_and_wait(stack)
    [customer] = customers_of(stack, account)

    history = cli_json(stack, "history", account, "--json")
    assert history["verdict"].startswith(f"synced: customer {customer['id']}")
    assert history["customer_id"] == customer["id"] and history["kind"] == "account"
    outcomes = [e["outcome"] for e in history["timeline"]]
    assert outcomes == ["updated", "created"], history["timeline"]
    updated, created = history["timeline"]
    assert updated["trigger"] == created["trigger"] == "poll"
    assert "setName" in updated["detail"] and updated["calls"] >= 1
    assert created["calls"] >= 2 and created["task_id"]
    assert cli_json(stack, "history", account, "--json", "--limit", "1")["timeline"] == [updated]

    text = cli(stack, "history", account[:15])  # the 15-character form works too
    assert text.returncode == 0, text.stderr
    assert f"account {account}: synced: customer {customer['id']}" in text.stdout
    assert "updated" in text.stdout and "created" in text.stdout


def test_dead_letters_are_grouped_and_resolved_by_the_sync_that_fixes_them(
    stack: SandboxStack, sf: Salesforce
) -> None:
    account = close_deal(sf, "Grouped Bad", AWS_Region__c="pluto-1")
    poll_and_wait(stack)
    for _ in range(2):  # an operator retries: still the same thing to fix
        result = cli(stack, "resync", account)
        assert result.returncode == 1, result.stdout  # it dead-lettered again, and says so
        assert "pluto-1" in result.stdout

    [group] = json_lines(stack, "dead-letters", "list", "--account", account, "--json")
    assert (group["kind"], group["count"], group["status"]) == ("mapping", 3, "open")
    assert group["trigger"] == "resync" and "pluto-1" in group["reason"]
    listed = cli(stack, "dead-letters", "list", "--account", account)
    assert listed.stdout.count("\n") == 1 and f"#{group['id']}" in listed.stdout
    history = cli_json(stack, "history", account, "--json")
    assert history["verdict"].startswith("no customer: dead-lettered [mapping] 3 times")
    assert [e["outcome"] for e in history["timeline"]] == ["dead_lettered"] * 3
    assert [e["trigger"] for e in history["timeline"]] == ["resync", "resync", "poll"]

    sf.Account.update(account, {"AWS_Region__c": "us-west-1"})  # type: ignore[operator]
    poll_and_wait(stack)
    assert len(customers_of(stack, account)) == 1
    assert json_lines(stack, "dead-letters", "list", "--account", account, "--json") == []
    [resolved] = json_lines(stack, "dead-letters", "list", "--account", account, "--all", "--json")
    history = cli_json(stack, "history", account, "--json")
    created = next(e for e in history["timeline"] if e["outcome"] == "created")
    assert resolved["status"] == "resolved" and resolved["resolved_how"] == "created"
    assert resolved["resolved_by"] == created["task_id"]
    assert history["verdict"].startswith("synced: customer")
    assert history["timeline"][0]["outcome"] == "dead_letter_resolved"


def test_an_unknown_kind_is_refused(stack: SandboxStack) -> None:
    for action in ("list", "redrive"):
        result = cli(stack, "dead-letters", action, "--kind", "mappnig")
        assert result.returncode == 2
        assert "unknown kind 'mappnig'" in result.stderr and "transient_exhausted" in result.stderr


def test_a_reopened_deal_needs_attention_until_acknowledged(
    stack: SandboxStack, sf: Salesforce
) -> None:
    account = close_deal(sf, "Reopened Ops")
    poll_and_wait(stack)
    opportunity = opportunity_of(sf, account)
    sf.Opportunity.update(opportunity, {"StageName": "Negotiation/Review"})  # type: ignore[operator]
    open_before = cli_json(stack, "status", "--json")["attention"]["open"]
    poll_and_wait(stack)

    [item] = [i for i in json_lines(stack, "attention", "--json") if i["record_id"] == opportunity]
    assert (item["event"], item["account_id"], item["status"]) == (
        "opportunity_reopened",
        account,
        "open",
    )
    assert "archived nothing" in item["what_to_do"]
    assert cli_json(stack, "status", "--json")["attention"]["open"] == open_before + 1
    listed = cli(stack, "attention")
    assert f"#{item['id']}" in listed.stdout and "to do:" in listed.stdout
    assert len(customers_of(stack, account)) == 1  # nothing archived

    acked = cli(stack, "attention", "ack", item["id"], "--note", "deal lost", "--by", "ops")
    assert acked.returncode == 0 and "acknowledged" in acked.stdout, acked.stderr
    assert not [i for i in json_lines(stack, "attention", "--json") if i["id"] == item["id"]]
    [kept] = [i for i in json_lines(stack, "attention", "--all", "--json") if i["id"] == item["id"]]
    assert (kept["status"], kept["acked_by"], kept["note"]) == ("acked", "ops", "deal lost")
    assert cli_json(stack, "status", "--json")["attention"]["open"] == open_before
    unknown = cli(stack, "attention", "ack", "99999")
    assert unknown.returncode == 2 and "no item 99999" in unknown.stderr

    # The deal's own history: the event, and who acknowledged it.
    history = cli_json(stack, "history", opportunity, "--json")
    assert history["kind"] == "opportunity" and history["account_id"] == account
    outcomes = [e["outcome"] for e in history["timeline"]]
    assert outcomes[:2] == ["attention_acked", "needs_attention"], history["timeline"]


def test_a_customer_conflict_needs_attention_and_waits_as_a_dead_letter(
    stack: SandboxStack, sf: Salesforce
) -> None:
    first = close_deal(sf, "Conflict One", Billing_Email__c="billing@shared.example")
    poll_and_wait(stack)
    second = close_deal(sf, "Conflict Two", Billing_Email__c="billing@shared.example")
    poll_and_wait(stack)
    assert len(customers_of(stack, first)) == 1 and customers_of(stack, second) == []
    [item] = [i for i in json_lines(stack, "attention", "--json") if i["record_id"] == second]
    assert item["event"] == "customer_conflict" and "never moves" in item["what_to_do"]
    assert customers_of(stack, first)[0]["id"] in item["details"]["customer_ids"]
    [letter] = json_lines(stack, "dead-letters", "list", "--account", second, "--json")
    assert letter["kind"] == "permanent"
    history = cli_json(stack, "history", second, "--json")
    assert history["verdict"].startswith("no customer: dead-lettered [permanent]")
    assert [i["event"] for i in history["attention"]] == ["customer_conflict"]


def test_history_says_why_an_account_was_never_synced(stack: SandboxStack, sf: Salesforce) -> None:
    created = sf.Account.create({"Name": "Still Negotiating"})  # type: ignore[operator]
    account = str(sf.Account.get(created["id"])["Id"])  # type: ignore[operator]
    deal = sf.Opportunity.create(  # type: ignore[operator]
        {
            "AccountId": account,
            "Name": "Big deal",
            "StageName": "Prospecting",
            "CloseDate": "2026-12-31",
        }
    )
    poll_and_wait(stack)
    history = cli_json(stack, "history", account, "--json")
    assert history["verdict"] == "no customer: never seen by a poll"
    assert history["finding"] == "not_won" and "Prospecting x1" in history["explanation"][0]
    offline = cli_json(stack, "history", account, "--json", "--offline")
    assert offline["finding"] is None and offline["explanation"] == []

    sf.Opportunity.update(deal["id"], {"StageName": "Closed Won"})  # type: ignore[operator]
    # Won, not polled yet: the poll will pick it up.
    text = cli(stack, "history", account)
    assert text.returncode == 0, text.stderr
    assert "never seen by a poll" in text.stdout and "the next poll picks it up" in text.stdout


def test_status_shows_the_sync_lag_and_open_attention(stack: SandboxStack) -> None:
    poll_and_wait(stack)
    status = cli_json(stack, "status", "--json")
    assert status["sync_lag"]["from"] == "last_ok_poll" and status["sync_lag"]["lag_s"] >= 0
    assert isinstance(status["attention"]["open"], int)
    text = cli(stack, "status").stdout
    assert "sync lag:" in text and "since the last ok poll; alert above 900s" in text
    assert "needs attention:" in text


def test_read_only_commands_refuse_a_malformed_id_and_need_a_running_crmsync(
    stack: SandboxStack,
) -> None:
    bad = cli(stack, "history", "not-an-id")
    assert bad.returncode == 2 and "Salesforce id" in bad.stderr
    nowhere = {"CRMSYNC_DATA_DIR": str(stack.data_dir / "nothing-here")}
    alone = run_cli(nowhere, "history", "001000000000001AAA", timeout_s=60)
    assert alone.returncode == 1 and "no crmsync running here" in alone.stderr
    for command in (["attention"], ["dead-letters", "list"]):
        result = run_cli(nowhere, *command, timeout_s=60)
        assert result.returncode == 1 and "no crmsync running here" in result.stderr
    assert not (stack.data_dir / "nothing-here").exists()  # and started no Redis there


def test_history_of_a_deal_the_mapping_makes_no_contract_of(
    stack: SandboxStack, sf: Salesforce
) -> None:
    """The default mapping makes a contract only of deals naming a rate card: a won deal
    without one has its customer, no contract, and history says the mapping filtered it."""
    account = close_deal(sf, "No Rate Card Co")
    poll_and_wait(stack)
    deal = opportunity_of(sf, account)
    history = cli_json(stack, "history", deal, "--json")
    assert history["kind"] == "opportunity" and history["account_id"] == account
    assert history["verdict"].startswith("no contract")
    assert history["finding"] == "not_selected"
    assert "filtered by the mapping" in history["explanation"][0]
    assert [e["outcome"] for e in history["timeline"]] == ["created"]  # its customer's sync
