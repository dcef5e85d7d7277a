"""An orchestrator's liveness probe for the chaos run's workers (``celery inspect ping``).

Why the runner needs one: after a Redis restart, some workers' main loops block for good in
kombu's pub/sub read (seen with celery 5.7 / kombu 5.7 / redis-py 8: the consumer sits in
``recv`` on the fanout connection, consumes nothing and never reconnects; see the report).
A deployment runs such a probe (Kubernetes ``livenessProbe`` with ``celery inspect ping``) and
restarts what stops answering; the chaos run does the same and *counts* it, so the hang is
visible in the result (``liveness_restarts``) instead of stalling the run or being hidden.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from worker.app import app
from worker.sandbox.stack import ServiceProcess

#: Seconds between probes, and failed probes in a row before a restart (as a k8s probe with
#: periodSeconds 10, failureThreshold 3). New workers get a grace period to boot.
PROBE_EVERY_S = 10.0
FAILURES_TO_RESTART = 3
GRACE_S = 30.0


@dataclass
class Probed:
    process: ServiceProcess
    name: str
    started: float = field(default_factory=time.monotonic)
    failures: int = 0


@dataclass
class Liveness:
    """Probe the workers every PROBE_EVERY_S; restart one after FAILURES_TO_RESTART misses."""

    restart: Callable[[Probed], None]
    workers: list[Probed] = field(default_factory=list)
    last_probe: float = 0.0
    restarts: list[str] = field(default_factory=list)

    def track(self, process: ServiceProcess, name: str) -> None:
        self.workers.append(Probed(process, name))

    def forget(self, process: ServiceProcess) -> None:
        self.workers = [w for w in self.workers if w.process is not process]

    def tick(self) -> None:
        now = time.monotonic()
        if now - self.last_probe < PROBE_EVERY_S:
            return
        self.last_probe = now
        try:
            replies = app.control.ping(timeout=2.0)
        except Exception:  # Redis restarting: no verdict this round
            return
        alive = {host.split("@", 1)[0] for reply in replies for host in reply}
        for worker in list(self.workers):
            if worker.process.poll() is not None or now - worker.started < GRACE_S:
                continue
            worker.failures = 0 if worker.name in alive else worker.failures + 1
            if worker.failures >= FAILURES_TO_RESTART:
                self.restarts.append(worker.name)
                self.forget(worker.process)
                self.restart(worker)
