"""Calls in flight, not processes: a batch's accounts run on a few threads at once.

Against the real API, latency bounds a worker, not CPU: at ~100 ms a call, a process making one
call at a time makes ~10 calls/s, so the default deployment (4 processes) could never use more
than 40 req/s of whatever Metronome allows. The calls in flight a deployment needs are
``rate x latency`` (50 req/s x 100 ms = 5; 200 req/s = 20); each worker process runs
CRMSYNC_SYNC_THREADS syncs of its batch at once (8: 4 x 8 = 32 in flight by default).

Threads, not more processes: a sync spends nearly all its time waiting (HTTP, its turn from
the rate governor, Redis), with the GIL released; a thread costs a stack, a prefork child about
100 MB. It is safe because what makes two workers safe makes two threads safe: the per-account
Redis lock serialises syncs of one account, the Idempotency-Keys are per account; the httpx and
Redis clients are thread-safe and each sync counts its own calls (per thread).

Celery's soft time limit raises SoftTimeLimitExceeded in the *main* thread only (a signal
handler), which here only waits. So on the soft limit no account starts any more, running ones
get SOFT_LIMIT_GRACE_S to finish (the hard limit kills the process 60 s after the soft one),
and those still running are reported *abandoned*: the caller hands them on with the unstarted
ones. If an abandoned sync finishes after all, the handed-on copy is a dedupe hit or waits for
its lock: never a second customer (locks, identity alias, Idempotency-Key).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from celery.exceptions import SoftTimeLimitExceeded

from worker.app import TASK_SOFT_TIME_LIMIT_S, TASK_TIME_LIMIT_S
from worker.logs import inherit_task, running_task

log = logging.getLogger(__name__)

#: Running syncs get this long to finish after the soft time limit: half the time left before
#: the hard limit, so the task still returns (and hands the rest on) before it is killed.
SOFT_LIMIT_GRACE_S = (TASK_TIME_LIMIT_S - TASK_SOFT_TIME_LIMIT_S) / 2


@dataclass(slots=True)
class InFlightReport:
    #: Items never started: the time budget was spent, an item asked to stop, or the soft
    #: time limit struck (in order).
    unstarted: list[int] = field(default_factory=list)
    #: Items still running when the soft limit's grace ran out.
    abandoned: list[int] = field(default_factory=list)


class _Runner:
    def __init__(self, count: int, work: Callable[[int], bool], deadline: float) -> None:
        self._count = count
        self._work = work
        self._deadline = deadline
        self._changed = threading.Condition()
        self._next = 0
        self._stopped = False
        self._running: set[int] = set()
        self._live = 0
        self._error: Exception | None = None
        #: The Celery task the threads work for: their log lines carry its id.
        self._task = running_task()

    def start(self, threads: int, name: str) -> None:
        for number in range(max(1, min(threads, self._count))):
            with self._changed:
                self._live += 1  # before start(): the soft limit may strike inside it
            threading.Thread(target=self._loop, name=f"{name}-{number}", daemon=True).start()

    def stop(self) -> None:
        with self._changed:
            self._stopped = True

    def wait(self, timeout_s: float | None = None) -> bool:
        """True once every thread has ended; False when ``timeout_s`` ran out first."""
        end = None if timeout_s is None else time.monotonic() + timeout_s
        with self._changed:
            while self._live:
                left = 1.0 if end is None else min(1.0, end - time.monotonic())
                if left <= 0:
                    return False
                self._changed.wait(timeout=left)  # interruptible: the soft limit lands here
        return True

    def report(self, abandoned: bool) -> InFlightReport:
        with self._changed:
            running = sorted(self._running) if abandoned else []
            return InFlightReport(list(range(self._next, self._count)), running)

    def raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def _take(self) -> int | None:
        with self._changed:
            index = self._next
            if self._stopped or index >= self._count:
                return None
            if index and time.monotonic() >= self._deadline:
                self._stopped = True  # the batch's time budget: the rest is handed on
                return None
            self._next += 1
            self._running.add(index)
            return index

    def _loop(self) -> None:
        inherit_task(self._task)
        try:
            while (index := self._take()) is not None:
                stop = True
                try:
                    stop = self._work(index)
                except Exception as exc:  # Redis away: the caller re-raises it
                    with self._changed:
                        self._error = self._error or exc
                finally:
                    with self._changed:
                        self._running.discard(index)
                        self._stopped = self._stopped or stop
        finally:
            with self._changed:
                self._live -= 1
                self._changed.notify_all()


def run_in_flight(
    count: int,
    work: Callable[[int], bool],
    *,
    threads: int,
    deadline: float,
    name: str = "sync",
) -> InFlightReport:
    """Call ``work(i)`` for i in 0..count-1 on up to ``threads`` threads, started in order.

    Item 0 always starts (a batch always makes progress); a later one starts only before
    ``deadline`` (monotonic), while no ``work`` returned True (stop) or raised. The first
    exception ``work`` raised is raised here once every running item has ended (the caller
    retries the whole batch, as it did when the items ran one after another).
    """
    runner = _Runner(count, work, deadline)
    if count == 0:
        return runner.report(abandoned=False)
    try:
        runner.start(threads, name)
        runner.wait()
    except SoftTimeLimitExceeded:
        runner.stop()
        finished = runner.wait(SOFT_LIMIT_GRACE_S)
        runner.raise_error()
        report = runner.report(abandoned=not finished)
        log.warning(
            "soft time limit: %d syncs not started, %d still running after %.0f s handed on",
            len(report.unstarted),
            len(report.abandoned),
            SOFT_LIMIT_GRACE_S,
        )
        return report
    runner.raise_error()
    return runner.report(abandoned=False)
