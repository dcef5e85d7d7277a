"""The chaos run's failover phase: Redis fails over under a fixed REDIS_URL, three ways.

A stack of its own (the main run's Redis is a single embedded server): a primary, a replica and
a TCP endpoint in front (worker/sandbox/failover.py), ``--workers`` real workers knowing only
the endpoint's URL, and ``accounts`` won deals (each with a contract) to backfill. Then:

1. **kill during a backfill**: the replica is promoted, the primary SIGKILLed and the
   endpoint moved while the workers sync;
2. **kill during a poll's enqueue**: new deals are closed and polled; between publishing its
   messages and moving its cursor, the replica is promoted (the messages go to the old primary
   and are lost), the old primary killed and the endpoint moved, so the cursor lands on the
   new primary without the messages (the poll's failover rule must read them again);
3. **a promoted replica lacking the last writes**: the replica is promoted while the old
   primary serves the workers ``serve_on_s`` more (those writes are lost), then killed.

After each, a fresh replica follows the new primary. ``failover_resumed_s`` is the slowest
time from a failover until every worker's main loop answers a remote-control ping again (it
consumes). Then the phase waits for convergence and judges customers and contracts with the
main run's verdict (:mod:`bench.chaos_verify`).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.chaos_verify import expected_state, judge, judge_contracts
from bench.data import account_fields, seed_won_accounts
from worker.app import app, configure
from worker.context import build_context
from worker.queue.publish import batch_publisher
from worker.sandbox.failover import ReplicatedRedis, replicated
from worker.sandbox.metronome import MetronomeFaults
from worker.sandbox.stack import SandboxStack

RATE_CARD = "standard"


@dataclass(frozen=True)
class FailoverConfig:
    accounts: int = 300
    workers: int = 2
    new_closes: int = 20
    serve_on_s: float = 1.5
    latency_s: float = 0.03
    timeout_s: float = 300.0


def _say(what: str, **data: Any) -> None:
    import json

    print(json.dumps({"chaos": what, **data}, default=str), file=sys.stderr, flush=True)


def _wait(condition: Callable[[], bool], timeout_s: float, step_s: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step_s)  # polling a condition, with a deadline
    return condition()


class Phase:
    def __init__(self, config: FailoverConfig, base: Path) -> None:
        self.config = config
        self.base = base
        self.resumed: list[float] = []
        self.failovers = 0

    def nodes(self, stack: SandboxStack) -> int:
        return len([p for p in stack.workers if p.poll() is None])

    def answering(self) -> int:
        try:
            return len(app.control.ping(timeout=1.0) or [])
        except Exception:  # the broker is still away: nobody answers yet
            return 0

    def after_failover(self, stack: SandboxStack, pair: ReplicatedRedis, at: float) -> None:
        """Time until every worker answers again; then a fresh replica for the next one."""
        expected = self.nodes(stack)
        _wait(lambda: self.answering() >= expected, self.config.timeout_s, step_s=0.5)
        self.resumed.append(round(time.monotonic() - at, 2))
        self.failovers += 1
        pair.new_replica(self.base / f"replica{self.failovers}")
        _say("failover", n=self.failovers, resumed_s=self.resumed[-1])

    def poll(self, stack: SandboxStack, url: str, enqueue: Any = None) -> dict[str, Any]:
        from tasks.poll import run_poll

        ctx = build_context(stack.settings(), url)
        try:
            return run_poll(ctx, enqueue)
        except Exception as exc:  # a poll cut by the failover: the next one covers it
            return {"status": "error", "error": repr(exc)}
        finally:
            ctx.close()


def close_new_deals(stack: SandboxStack, count: int, start: int) -> None:
    sf = stack.salesforce
    assert sf is not None  # noqa: S101
    for n in range(start, start + count):
        account = sf.insert("Account", account_fields(n, prefix="Failover"))
        sf.insert(
            "Opportunity",
            {
                "AccountId": account,
                "Name": "Failover deal",
                "StageName": "Closed Won",
                "CloseDate": datetime.now(UTC).date().isoformat(),
                "Amount": 1000,
                "Metronome_Rate_Card__c": RATE_CARD,
            },
        )


def _enqueue_then_fail_over(
    phase: Phase, stack: SandboxStack, pair: ReplicatedRedis, moments: list[float]
) -> Callable[[Sequence[Any]], None]:
    """The poll's publisher, but the replica is promoted before the messages go out (they
    reach only the old primary) and the endpoint moves right after (the cursor reaches the
    new one)."""
    publish = batch_publisher(reason="poll")

    def enqueue(items: Sequence[Any]) -> None:
        if not moments:
            pair.promote()
        publish(items)
        if not moments:
            moments.append(time.monotonic())
            pair.fail_over()

    return enqueue


def run_failover_phase(config: FailoverConfig, base: Path) -> dict[str, Any]:
    phase = Phase(config, base)
    stack = SandboxStack(
        data_dir=base / "data",
        metronome_faults=MetronomeFaults(latency_s=config.latency_s),
        extra_env={"CRMSYNC_OVERLAP_S": "1"},
    )
    with stack:
        assert stack.redis is not None and stack.salesforce is not None  # noqa: S101
        assert stack.metronome is not None  # noqa: S101
        metronome = stack.metronome
        seed_won_accounts(stack.salesforce, config.accounts, rate_card=RATE_CARD)
        with replicated(stack.redis, base) as pair:
            stack.extra_env["REDIS_URL"] = pair.url
            configure(pair.url, stack.settings())
            for n in range(config.workers):
                stack.start_worker(base / f"failover-worker{n}.log", concurrency=2, name=f"f{n}")
            stack.wait_for_worker(timeout_s=120)

            # 1. SIGKILL the primary during the backfill.
            phase.poll(stack, pair.url)
            _wait(lambda: len(metronome.customers()) >= config.accounts // 4, config.timeout_s)
            at = time.monotonic()
            pair.fail_over()
            phase.after_failover(stack, pair, at)

            # 2. During a poll's enqueue: messages to the old primary, cursor to the new.
            _wait(lambda: len(metronome.customers()) >= config.accounts, config.timeout_s)
            close_new_deals(stack, config.new_closes, start=100_000)
            moments: list[float] = []
            enqueue = _enqueue_then_fail_over(phase, stack, pair, moments)
            _say("poll during failover", **phase.poll(stack, pair.url, enqueue))
            phase.after_failover(stack, pair, moments[0] if moments else time.monotonic())

            # 3. A promoted replica lacking the last writes (old primary serves on, then dies).
            close_new_deals(stack, config.new_closes, start=200_000)
            phase.poll(stack, pair.url)
            at = time.monotonic()
            pair.fail_over(serve_on_s=config.serve_on_s)
            phase.after_failover(stack, pair, at)

            expected_total = config.accounts + 2 * config.new_closes
            converged = _wait(
                lambda: (
                    phase.poll(stack, pair.url).get("status") is not None
                    and len(metronome.customers()) >= expected_total
                ),
                config.timeout_s,
                step_s=2.0,
            )
            result = _verdict(stack, pair.url)
            stack.stop_workers()
    return {
        "failovers": phase.failovers,
        "failover_resumed_s": max(phase.resumed) if phase.resumed else None,
        "failover_resumed_each_s": phase.resumed,
        "failover_converged": converged,
        **result,
    }


def _verdict(stack: SandboxStack, url: str) -> dict[str, Any]:
    assert stack.metronome is not None  # noqa: S101
    ctx = build_context(stack.settings(), url)
    try:
        won = list(ctx.source.all_records())
        expected = expected_state(won, ctx.mapping.map_record)
        contracts = judge_contracts(
            won, ctx.mapping.map_record, ctx.mapping.map_contract, stack.metronome.contracts()
        )
    finally:
        ctx.close()
    verdict = judge(
        expected, stack.metronome.customers(), stack.metronome.billing_configurations(), []
    )
    return {
        "failover_customers": len(stack.metronome.customers()),
        "failover_duplicates": verdict.duplicates,
        "failover_missing": verdict.missing,
        "failover_drifted": verdict.drifted,
        "failover_contracts": len(stack.metronome.contracts()),
        "failover_duplicate_contracts": contracts.duplicates,
        "failover_missing_contracts": contracts.missing,
        "failover_ok": (
            not verdict.duplicates
            and not verdict.missing
            and not verdict.drifted
            and not contracts.duplicates
            and not contracts.missing
        ),
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.chaos_failover [ACCOUNTS]``: the failover phase alone."""
    import json
    import tempfile

    args = sys.argv[1:] if argv is None else argv
    config = FailoverConfig(accounts=int(args[0])) if args else FailoverConfig()
    with tempfile.TemporaryDirectory(prefix="crmsync-failover-") as tmp:
        result = run_failover_phase(config, Path(tmp))
    print(json.dumps(result, sort_keys=True))
    return 0 if result["failover_ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
