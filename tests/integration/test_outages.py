"""Riding out outages (issue #16): real Redis, a real `crmsync worker`, both emulators over HTTP
and a switch in front of Metronome that takes it down (every request 503) and up again.

Timings are compressed by settings (one failure budget retry, a breaker that opens after 3
failed syncs and probes every second, parked syncs due within a second), never by sleeping:
every wait polls a condition (tests.support.waiting.wait_until). Polls and drains run in this
process where a test must know exactly what was sent (as `crmsync poll` would); beat drives
the recovery of the first test, as in a deployment.

The bound on the load an outage sees (test 1): before the breaker opens, each sync of an
account fails at most 1 + CRMSYNC_MAX_TASK_RETRIES times, each failure costing one call of
METRONOME_MAX_ATTEMPTS requests, plus the poll's batched find; once it is open, only probes
reach Metronome (one call each). So requests while down <= attempts x (1 + accounts x
(1 + retries) + probes), whatever the outage's length -- against thousands a minute before.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from simple_salesforce.api import Salesforce

from tasks.parked import run_drain
from tasks.poll import run_poll
from tests.support.deals import close_deal, customers_of, new_account, win
from tests.support.prewarmed import start_service
from tests.support.proxy import COMMIT_THEN_DOWN, DOWN, UP, FaultProxy
from tests.support.stack import salesforce_client
from tests.support.waiting import wait_until
from worker.cli import main as cli_main
from worker.context import WorkerContext
from worker.sandbox.stack import SandboxStack

pytestmark = pytest.mark.integration

ATTEMPTS = 2
RETRIES = 1
FAILURES = 3
SETTINGS = {
    "CRMSYNC_BREAKER_FAILURES": str(FAILURES),
    "CRMSYNC_BREAKER_PROBE_S": "1",
    "CRMSYNC_PARK_BACKOFF_MAX_S": "1",
    "CRMSYNC_MAX_TASK_RETRIES": str(RETRIES),
    "CRMSYNC_RETRY_IMMEDIATELY": "true",
    "METRONOME_MAX_ATTEMPTS": str(ATTEMPTS),
    "CRMSYNC_POLL_INTERVAL_S": "1",
    "CRMSYNC_SALESFORCE_QUOTA_PROBE_S": "1",
    "CRMSYNC_METRONOME_TOKEN_BACKOFF_MAX_S": "1",
}
#: The shortest wait between two probes of a refused token: the first wait (1 s) less its
#: jitter (25 %).
MIN_TOKEN_PROBE_GAP_S = 0.75


@pytest.fixture(scope="module")
def switch_and_stack(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[FaultProxy, SandboxStack]]:
    base = tmp_path_factory.mktemp("outages")
    with SandboxStack(
        data_dir=base / "data", extra_env=dict(SETTINGS), launcher=start_service
    ) as stack:
        assert stack.metronome is not None
        switch = FaultProxy(stack.metronome.url).start()
        try:
            stack.extra_env["METRONOME_BASE_URL"] = switch.url  # the worker talks to the switch
            stack.start_worker(base / "worker.log", concurrency=2)
            stack.wait_for_worker()
            yield switch, stack
        finally:
            switch.stop()


@pytest.fixture(scope="module")
def stack(switch_and_stack: tuple[FaultProxy, SandboxStack]) -> SandboxStack:
    return switch_and_stack[1]


@pytest.fixture(scope="module")
def switch(switch_and_stack: tuple[FaultProxy, SandboxStack]) -> FaultProxy:
    return switch_and_stack[0]


@pytest.fixture(scope="module")
def sf(stack: SandboxStack) -> Salesforce:
    return salesforce_client(stack)


@pytest.fixture
def ctx(stack: SandboxStack) -> Iterator[WorkerContext]:
    context = stack.context()
    yield context
    context.close()


def parked(ctx: WorkerContext) -> set[str]:
    return {item.account_id for item in ctx.parking.items()}


def synced(stack: SandboxStack, accounts: list[str]) -> bool:
    return all(len(customers_of(stack, account)) == 1 for account in accounts)


def dead_letters_of(ctx: WorkerContext, accounts: list[str]) -> list[Any]:
    return [d for d in ctx.store.dead_letters() if d.account_id in accounts]


def recovered(ctx: WorkerContext, stack: SandboxStack, accounts: list[str]) -> bool:
    """Drain as beat would, then: every account synced once, nothing parked, breaker closed."""
    run_drain(ctx)
    return (
        synced(stack, accounts)
        and not parked(ctx) & set(accounts)
        and ctx.metronome_breaker.state().state == "closed"
    )


def test_a_create_committed_as_the_outage_began_is_adopted_not_made_twice(
    stack: SandboxStack, switch: FaultProxy, sf: Salesforce, ctx: WorkerContext
) -> None:
    account = close_deal(sf, "Committed Then Outage")
    switch.set(COMMIT_THEN_DOWN)
    assert run_poll(ctx)["status"] == "ok"
    # The create reached Metronome, its answer did not, and every read after it failed.
    wait_until(lambda: account in parked(ctx), timeout_s=120)
    assert len(customers_of(stack, account)) == 1  # made, but the worker never heard of it
    switch.set(UP)
    wait_until(lambda: recovered(ctx, stack, [account]), timeout_s=120)
    [customer] = customers_of(stack, account)
    assert customer["customer_config"]["salesforce_account_id"] == account  # adopted, linked
    assert dead_letters_of(ctx, [account]) == []


def test_an_outage_longer_than_the_retry_budget_parks_then_syncs_everything(
    stack: SandboxStack, switch: FaultProxy, sf: Salesforce, ctx: WorkerContext
) -> None:
    switch.set(DOWN)
    refused_before = switch.refused_so_far()
    accounts = [close_deal(sf, f"Outage Close {n}") for n in range(3)]
    contract_account = new_account(sf, "Outage Contract Co")
    opportunity = win(sf, contract_account, "Outage deal", Contract_Term_Months__c=12)
    accounts.append(contract_account)
    summary = run_poll(ctx)
    assert summary["status"] == "ok"  # the poll does not depend on Metronome
    wait_until(lambda: set(accounts) <= parked(ctx), timeout_s=120)
    breaker = ctx.metronome_breaker
    assert breaker.state().state in ("open", "half_open")

    # The outage outlasts the old retry budget: probe after probe fails (each probe is the
    # parked sync due soonest, so they go round the accounts) until every account has been
    # tried again after parking, and still no dead letter.
    def every_account_tried_again() -> bool:
        run_drain(ctx)
        items = [item for item in ctx.parking.items() if item.account_id in accounts]
        return len(items) == len(accounts) and min(item.attempts for item in items) >= 2

    wait_until(every_account_tried_again, timeout_s=120)
    probes = breaker.state().probes
    refused = switch.refused_so_far() - refused_before
    assert dead_letters_of(ctx, accounts) == []
    assert probes >= len(accounts) - 1
    assert refused <= ATTEMPTS * (1 + len(accounts) * (1 + RETRIES) + probes), refused
    # Metronome comes back: beat's drain lets a probe through, it closes the breaker, and
    # every parked sync goes out at once, under the rate governor.
    switch.set(UP)
    stack.start_beat(stack.data_dir / "beat.log")
    try:
        wait_until(
            lambda: synced(stack, accounts) and not parked(ctx) & set(accounts), timeout_s=120
        )
    finally:
        stack.stop_beats()
    assert breaker.state().state == "closed"
    assert stack.metronome is not None
    contracts = [
        c
        for c in stack.metronome.contracts()
        if (c.get("custom_fields") or {}).get("sfdc_opportunity_id") == opportunity
    ]
    assert len(contracts) == 1  # exactly once, through the same idempotency machinery
    assert dead_letters_of(ctx, accounts) == []


def test_parked_syncs_survive_a_killed_worker_and_a_redis_restart(
    stack: SandboxStack, switch: FaultProxy, sf: Salesforce, ctx: WorkerContext
) -> None:
    switch.set(DOWN)
    accounts = [close_deal(sf, f"Survivor {n}") for n in range(3)]
    assert run_poll(ctx)["status"] == "ok"
    wait_until(lambda: set(accounts) <= parked(ctx), timeout_s=120)
    for worker in stack.workers:
        stack.kill_process(worker)  # SIGKILL, the whole process group: no warm shutdown
    stack.restart_redis()  # AOF kept
    wait_until(lambda: set(accounts) <= parked(ctx), timeout_s=60)
    stack.start_worker(stack.data_dir / "worker-2.log", concurrency=2, name="w2")
    stack.wait_for_worker()
    switch.set(UP)
    wait_until(lambda: recovered(ctx, stack, accounts), timeout_s=180)
    assert dead_letters_of(ctx, accounts) == []


def test_the_salesforce_quota_pauses_polling_with_cursors_untouched_then_resumes(
    stack: SandboxStack, sf: Salesforce, ctx: WorkerContext
) -> None:
    assert stack.salesforce is not None
    org = stack.salesforce
    close_deal(sf, "Before The Quota")
    assert run_poll(ctx)["status"] == "ok"
    cursors = ctx.store.cursors()
    _, limit = org.quota()
    org.set_quota(limit, limit)  # spent: 403 REQUEST_LIMIT_EXCEEDED
    assert run_poll(ctx)["status"] == "stopped_for_quota"
    pause = ctx.salesforce_pause
    assert pause.state().state == "open"
    calls = org.api_calls()
    paused = run_poll(ctx)
    assert paused["status"] == "paused" and org.api_calls() == calls  # no call at all
    # A probe (one poll, one call) now and then; still over the quota fraction: still paused.
    org.set_quota(int(limit * 0.9), limit)
    wait_until(lambda: run_poll(ctx)["status"] == "stopped_for_quota", timeout_s=60)
    assert ctx.store.cursors() == cursors
    assert pause.state().state == "open"
    # The rolling window frees up: the next probe resumes polling by itself.
    org.set_quota(0, limit)
    account = close_deal(sf, "After The Quota")
    wait_until(lambda: run_poll(ctx)["status"] == "ok", timeout_s=60)
    assert pause.state().state == "closed"
    assert ctx.store.cursors()["opportunities"] > cursors["opportunities"]
    wait_until(lambda: synced(stack, [account]), timeout_s=120)


def test_a_salesforce_outage_pauses_polling_and_it_resumes_by_itself(
    stack: SandboxStack, sf: Salesforce, ctx: WorkerContext
) -> None:
    assert stack.salesforce is not None
    org = stack.salesforce
    assert run_poll(ctx)["status"] == "ok"
    cursors = ctx.store.cursors()
    org.set_faults(server_error_rate=1.0)
    try:
        failed = [run_poll(ctx) for _ in range(FAILURES)]
        assert [f["status"] for f in failed] == ["failed"] * FAILURES
        assert "answered 503" in failed[0]["reason"]
        calls = org.api_calls()
        assert run_poll(ctx)["status"] == "paused" and org.api_calls() == calls
        assert ctx.store.cursors() == cursors
    finally:
        org.set_faults()
    account = close_deal(sf, "After The Salesforce Outage")
    wait_until(lambda: run_poll(ctx)["status"] == "ok", timeout_s=60)
    assert ctx.salesforce_pause.state().state == "closed"
    wait_until(lambda: synced(stack, [account]), timeout_s=120)


def log_sizes(stack: SandboxStack) -> dict[Path, int]:
    """Every worker log of the module and its size now (the next test reads what follows)."""
    return {path: path.stat().st_size for path in stack.data_dir.parent.rglob("worker*.log")}


def logged_since(sizes: dict[Path, int]) -> str:
    return "".join(path.read_text()[size:] for path, size in sizes.items())


def refused_requests(stack: SandboxStack) -> int:
    """Requests the Metronome emulator answered 401."""
    assert stack.metronome is not None
    return sum(n for route, n in stack.metronome.request_counts().items() if route.endswith(" 401"))


def test_a_refused_token_parks_every_sync_then_they_drain_once_it_is_accepted(
    stack: SandboxStack,
    sf: Salesforce,
    ctx: WorkerContext,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Issue #24: Metronome stops accepting the worker's token (401). The first refusal is
    shared in Redis: every sync parks without a call (no dead letter), Metronome sees one
    probe per backoff at most, `crmsync status` says since when and what to fix, and once
    Metronome accepts the token again the parked syncs drain by themselves."""
    assert stack.metronome is not None
    sizes, before = log_sizes(stack), refused_requests(stack)
    accounts = [close_deal(sf, f"Refused Token {n}") for n in range(8)]
    stack.metronome.set_token("another-token")  # the worker's token is revoked
    try:
        started = time.monotonic()
        assert run_poll(ctx)["status"] == "ok"  # the poll does not depend on Metronome
        wait_until(lambda: set(accounts) <= parked(ctx), timeout_s=60)
        elapsed = time.monotonic() - started
        refused = refused_requests(stack) - before
        refusal = ctx.metronome_token.state()
        # Every 401 was the first refusal or a probe (no account spent a call of its own),
        # and probes came one per backoff at most.
        assert refusal.refusing and 1 <= refused <= refusal.refusals, (refused, refusal)
        assert refusal.refusals <= 1 + elapsed / MIN_TOKEN_PROBE_GAP_S, (refusal, elapsed)
        assert dead_letters_of(ctx, accounts) == []

        # `crmsync status`, in this process (an interpreter start costs seconds here).
        for name, value in stack.env().items():
            monkeypatch.setenv(name, value)
        capsys.readouterr()
        assert cli_main(["status"]) == 0
        shown = capsys.readouterr()
        [line] = [x for x in shown.out.splitlines() if x.startswith("Metronome refuses")]
        assert "METRONOME_BEARER_TOKEN" in line and "401" in line
        assert f"sha256:{ctx.metronome_token.fingerprint}" in line
        assert stack.metronome_token not in shown.out + shown.err
    finally:
        # Metronome accepts the token again: the next probe gets through, the record clears
        # and every parked sync is sent (the drain runs here, as beat would run it).
        stack.metronome.set_token(stack.metronome_token)
    wait_until(lambda: recovered(ctx, stack, accounts), timeout_s=60)
    assert not ctx.metronome_token.state().refusing
    assert dead_letters_of(ctx, accounts) == []
    log = logged_since(sizes)
    assert "Traceback" not in log
    # One line per worker process naming the setting, not one per account.
    named = [x for x in log.splitlines() if "Metronome refuses the token since" in x]
    assert 1 <= len(named) < len(accounts), named
    assert all("METRONOME_BEARER_TOKEN" in x for x in named)
