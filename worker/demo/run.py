"""``crmsync demo``: the product end to end on this machine, in three passes.

The org and the hand-made customer are seeded by ``worker/demo/seed.py`` (about fifty won
accounts, a roll-up parent with two children, one customer to adopt, two records that must
dead-letter). Then:

1. first sync: every account becomes exactly one customer, and every won deal that names a
   rate card one contract;
2. a poll with no change: the overlap window re-reads every row, and nothing is written;
3. with ``crmsync listen`` running, three deals closed and one account renamed *through
   simple-salesforce*, as a sales rep's edits would arrive: only those reach Metronome (three
   customers, three contracts, one update), by
   change event within about a second; the poll that follows finds them done (the table says
   how many arrived by event and how many by poll).

Each pass's expectations are checked; the demo exits 0 only if all held.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tasks.poll import run_poll
from worker.demo.seed import (
    CONTRACTS_FIRST_PASS,
    deal_terms,
    demo_mapping,
    make_customer_by_hand,
    seed,
)
from worker.ops.progress import wait_for_syncs
from worker.sandbox.billing import PROVIDERS, provider_fields
from worker.sandbox.stack import SandboxStack
from worker.state.store import SyncStore

__all__ = ["PassResult", "run_demo"]


@dataclass
class PassResult:
    name: str
    enqueued: int = 0
    created: int = 0
    contracts: int = 0
    updated: int = 0
    unchanged: int = 0
    dead_lettered: int = 0
    metronome_calls: int = 0
    metronome_writes: int = 0
    seconds: float = 0.0
    #: Changes (created/updated) that arrived by change event and by poll (pass 3).
    by_event: int = 0
    by_poll: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def metronome_counts(stack: SandboxStack) -> tuple[int, int]:
    """(all /v1 calls, writes) from the emulator's request log."""
    assert stack.metronome is not None  # noqa: S101
    calls = writes = 0
    for key, count in stack.metronome.request_counts().items():
        method, path = key.split(" ")[:2]
        if not path.startswith(("/v1", "/v2")):
            continue
        calls += count
        if (
            method == "POST"
            and not path.endswith(("/list", "listKeys"))
            and "getCustomer" not in path
        ):
            writes += count
    return calls, writes


def run_pass(
    stack: SandboxStack,
    store: SyncStore,
    name: str,
    progress: bool,
    *,
    before_poll: Callable[[], int] | None = None,
) -> PassResult:
    """One poll and its syncs. ``before_poll`` makes the pass's changes first (and waits for
    the syncs they caused: the listener's) and returns how many of those it waited for."""
    result = PassResult(name)
    started = time.monotonic()
    before = store.outcomes()
    ledger_before = store.ledger(1)
    calls_before, writes_before = metronome_counts(stack)
    synced_early = before_poll() if before_poll is not None else 0
    ctx = stack.context()
    try:
        summary = run_poll(ctx)
    finally:
        ctx.close()
    result.enqueued = int(summary.get("enqueued", 0))
    if summary.get("status") != "ok":
        result.problems.append(f"poll ended {summary.get('status')}")
    baseline = sum(
        before.get(k, 0) for k in ("created", "updated", "in_sync", "unchanged", "dead_lettered")
    )
    stream = sys.stderr if progress else open("/dev/null", "w")  # noqa: SIM115
    if not wait_for_syncs(
        store, baseline, synced_early + result.enqueued, timeout_s=300, label=name, stream=stream
    ):
        result.problems.append("timed out waiting for the worker")
    after = store.outcomes()

    def delta(key: str) -> int:
        return after.get(key, 0) - before.get(key, 0)

    result.created = delta("created")
    result.contracts = delta("contract_created")
    result.updated = delta("updated")
    result.unchanged = delta("unchanged") + delta("in_sync")
    result.dead_lettered = delta("dead_lettered")
    calls_after, writes_after = metronome_counts(stack)
    result.metronome_calls = calls_after - calls_before
    result.metronome_writes = writes_after - writes_before
    since = ledger_before[0]["id"] if ledger_before else "0"
    for entry in store.ledger(10_000):
        if entry["id"] > since and entry.get("outcome") in ("created", "updated"):
            result.by_event += entry.get("reason") == "event"
            result.by_poll += entry.get("reason") == "poll"
    result.seconds = round(time.monotonic() - started, 2)
    return result


def start_listener(stack: SandboxStack, store: SyncStore, base: Path) -> None:
    """``crmsync listen`` as its own process, subscribed, and the poll it asks for at its first
    start (no replay id stored yet) finished, so that pass 3 starts from quiet."""
    from worker.state.listener import ListenerState

    before = store.last_poll().get("finished_at", "")
    baseline = sum(store.outcomes().get(k, 0) for k in _TERMINAL)
    stack.start_listener(base / "listener.log")
    state = ListenerState.from_url(stack.redis_url)
    try:
        _wait(
            lambda: all(state.topic_stats(t).get("state") == "subscribed" for t in _TOPICS),
            "the listener's subscriptions",
        )
    finally:
        state.close()
    _wait(lambda: store.last_poll().get("finished_at", "") > before, "the listener's first poll")
    done = store.last_poll()
    _wait(
        lambda: sum(store.outcomes().get(k, 0) for k in _TERMINAL) >= baseline + done["enqueued"],
        "the syncs of the listener's first poll",
    )


_TOPICS = ("/data/OpportunityChangeEvent", "/data/AccountChangeEvent")
_TERMINAL = ("created", "updated", "in_sync", "unchanged", "dead_lettered")


def _wait(probe: Callable[[], bool], what: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not probe():
        if time.monotonic() > deadline:
            raise RuntimeError(f"demo: {what} did not happen within {timeout_s:.0f}s")
        time.sleep(0.05)  # polling a condition with a deadline, not a guessed delay


def expect(result: PassResult, **expected: int) -> None:
    for key, value in expected.items():
        actual = getattr(result, key)
        if actual != value:
            result.problems.append(f"{key} = {actual}, expected {value}")


def close_deals_like_a_sales_rep(stack: SandboxStack, store: SyncStore | None = None) -> int:
    """Pass 3's edits, made through simple-salesforce exactly as a rep's would arrive; with
    ``store``, wait until the listener has synced all four (created 3, updated 1) and return
    how many syncs that was."""
    from worker.sandbox.salesforce.client import build_sandbox_salesforce

    assert stack.salesforce is not None  # noqa: S101
    sf = build_sandbox_salesforce(stack.salesforce.url, stack.credentials)
    for n in range(3):
        created = sf.Account.create(  # type: ignore[operator]
            {
                "Name": f"New Logo {n}",
                "Billing_Email__c": f"new-logo-{n}@demo.example",
                **provider_fields(PROVIDERS[n], 900 + n),
            }
        )
        opportunity = sf.Opportunity.create(  # type: ignore[operator]
            {
                "AccountId": created["id"],
                "Name": "Pilot",
                "StageName": "Prospecting",
                "CloseDate": "2026-11-30",
            }
        )
        sf.Opportunity.update(  # type: ignore[operator]
            opportunity["id"], {"StageName": "Closed Won", **deal_terms(n)}
        )
    renamed = sf.query("SELECT Id FROM Account WHERE Name = 'Demo Customer 07'")["records"][0]
    before = store.outcomes() if store is not None else {}
    sf.Account.update(renamed["Id"], {"Name": "Demo Customer 07 (renamed)"})  # type: ignore[operator]
    if store is None:
        return 0
    outcomes = store.outcomes

    def arrived() -> bool:
        now = outcomes()
        return now.get("created", 0) - before.get("created", 0) >= 3 and (
            now.get("updated", 0) - before.get("updated", 0) >= 1
        )

    _wait(arrived, "the closes and the rename by change event", timeout_s=60)
    now = outcomes()
    return sum(now.get(k, 0) - before.get(k, 0) for k in _TERMINAL)


def run_demo(as_json: bool = False, workdir: Path | None = None) -> int:
    progress = not as_json and sys.stderr.isatty()
    with tempfile.TemporaryDirectory(prefix="crmsync-demo-") as tmp:
        base = workdir or Path(tmp)
        stack = SandboxStack(
            data_dir=base / "data", mapping_file=demo_mapping(base / "mapping.yaml")
        )
        with stack:
            seed(stack)
            make_customer_by_hand(stack)
            stack.start_worker(base / "worker.log", concurrency=2)
            store = stack.context().store
            stack.wait_for_worker()
            first = run_pass(stack, store, "first sync", progress)
            expect(first, created=49, dead_lettered=2, contracts=CONTRACTS_FIRST_PASS)
            # The hand-made customer is adopted (updated). The roll-up parent and its child
            # share one customer: the first of the two to sync creates it; the second adds the
            # child's alias (updated) or finds it in sync, depending on which went first.
            if first.updated < 1 or first.updated + first.unchanged != 2:
                first.problems.append(
                    f"updated = {first.updated}, unchanged = {first.unchanged}; expected the "
                    "adoption plus one roll-up sync (updated or in sync)"
                )
            second = run_pass(stack, store, "no change", progress)
            expect(second, created=0, updated=0, dead_lettered=0, contracts=0, metronome_writes=0)
            start_listener(stack, store, base)
            third = run_pass(
                stack,
                store,
                "3 closes + 1 rename",
                progress,
                before_poll=lambda: close_deals_like_a_sales_rep(stack, store),
            )
            expect(third, created=3, updated=1, dead_lettered=0, contracts=3)
            passes = [first, second, third]
            duplicates = _duplicates(stack)
            if duplicates:
                third.problems.append(f"duplicate customers for {duplicates}")
            doubled = _duplicate_contracts(stack)
            if doubled:
                third.problems.append(f"duplicate contracts for {doubled}")
    if not as_json:
        _print_table(passes)
    # Last, always: one JSON object, so a script (or a make target) can read the outcome.
    print(json.dumps({"passes": [_public(p) for p in passes], "ok": all(p.ok for p in passes)}))
    return 0 if all(p.ok for p in passes) else 1


def _duplicates(stack: SandboxStack) -> list[str]:
    assert stack.metronome is not None  # noqa: S101
    seen: dict[str, int] = {}
    for customer in stack.metronome.customers():
        sfid = (customer.get("custom_fields") or {}).get("sfdc_account_id")
        if sfid:
            seen[sfid] = seen.get(sfid, 0) + 1
    return sorted(k for k, v in seen.items() if v > 1)


def _duplicate_contracts(stack: SandboxStack) -> list[str]:
    """Opportunities with more than one contract in the emulator (must be none)."""
    assert stack.metronome is not None  # noqa: S101
    seen: dict[str, int] = {}
    for contract in stack.metronome.contracts():
        opportunity = (contract.get("custom_fields") or {}).get("sfdc_opportunity_id")
        if opportunity:
            seen[opportunity] = seen.get(opportunity, 0) + 1
    return sorted(k for k, v in seen.items() if v > 1)


def _public(result: PassResult) -> dict[str, Any]:
    data = asdict(result)
    return {
        k: data[k]
        for k in (
            "name",
            "created",
            "contracts",
            "updated",
            "unchanged",
            "dead_lettered",
            "metronome_calls",
            "metronome_writes",
            "by_event",
            "by_poll",
            "problems",
        )
    }


def _print_table(passes: list[PassResult]) -> None:
    header = (
        f"{'pass':<22}{'created':>8}{'contracts':>10}{'updated':>8}{'unchanged':>10}{'dead':>6}"
        f"{'calls':>7}{'writes':>7}  result"
    )
    print(header)
    print("-" * len(header))
    for p in passes:
        verdict = "ok" if p.ok else "FAILED: " + "; ".join(p.problems)
        print(
            f"{p.name:<22}{p.created:>8}{p.contracts:>10}{p.updated:>8}{p.unchanged:>10}"
            f"{p.dead_lettered:>6}"
            f"{p.metronome_calls:>7}{p.metronome_writes:>7}  {verdict}"
        )
    for p in passes:
        if p.by_event:
            print(
                f"{p.name}: {p.by_event} change(s) arrived by change event (crmsync listen), "
                f"{p.by_poll} by poll"
            )
