"""The ceiling: how many requests per second the Metronome emulator serves the official SDK.

Every backfill figure is read as a ratio to this number, so both must be measured the same
way. The backfill's workers are separate processes talking HTTP to the emulator, which runs
on a thread of the benchmark process; so here the SDK loop also runs in a *separate process*
(``python -m bench.ceiling URL TOKEN OPERATION START SECONDS``). Run in-process, the loop would
share the GIL with the emulator's event loop and measure the GIL hand-off, not the emulator:
the ceiling would read low and every ratio against it would flatter the worker.

Clients start together at an agreed wall-clock instant (after their imports and a warm-up),
each with one pooled httpx connection, and loop until a common deadline. The rate is counted
by the emulator (requests it answered inside the window), not by the clients.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from typing import Literal

from worker.sandbox.metronome.emulator import MetronomeEmulator

Operation = Literal["create", "list"]
_TOKEN = "bench-ceiling-token"  # noqa: S105 - the throwaway emulator's own token
#: Seconds the clients get to import the SDK and warm their connection before the window.
START_DELAY_S = 2.5
WARMUP_REQUESTS = 20


@dataclass(frozen=True, slots=True)
class Ceiling:
    operation: str
    clients: int
    requests: int
    seconds: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def measure(operation: Operation, *, clients: int = 1, seconds: float = 4.0) -> Ceiling:
    """Requests/s a fresh emulator (on a thread here) answers ``clients`` SDK processes."""
    with MetronomeEmulator(token=_TOKEN) as emulator:
        start_at = time.time() + START_DELAY_S
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bench.ceiling",
                    emulator.url,
                    operation,
                    repr(start_at),
                    repr(seconds),
                ],
                stdout=subprocess.PIPE,
            )
            for _ in range(clients)
        ]
        time.sleep(max(0.0, start_at - time.time()))  # wait for the agreed instant
        before = emulator.total_requests()
        time.sleep(seconds)
        after = emulator.total_requests()
        for proc in procs:
            proc.wait(timeout=60)
            if proc.returncode != 0:
                raise RuntimeError(f"ceiling client exited {proc.returncode}")
    return Ceiling(operation, clients, after - before, seconds)


def best(operation: Operation, seconds: float = 4.0) -> tuple[Ceiling, list[Ceiling]]:
    """The emulator's raw rate: the higher of one and two client processes (2 cores)."""
    runs = [measure(operation, clients=n, seconds=seconds) for n in (1, 2)]
    return max(runs, key=lambda c: c.rps), runs


def _client(url: str, operation: str, start_at: float, seconds: float) -> int:
    import httpx
    import metronome

    with httpx.Client(timeout=10) as http:
        client = metronome.Metronome(
            bearer_token=_TOKEN, base_url=url, max_retries=0, http_client=http
        )

        def call() -> None:
            if operation == "create":
                client.v1.customers.create(
                    name="bench",
                    ingest_aliases=[uuid.uuid4().hex],
                    extra_headers={"Idempotency-Key": uuid.uuid4().hex},
                )
            else:
                client.v1.customers.list(limit=10)

        for _ in range(WARMUP_REQUESTS):
            call()
        time.sleep(max(0.0, start_at - time.time()))
        deadline = start_at + seconds + 0.2  # a little past the window: no idle tail inside
        done = 0
        while time.time() < deadline:
            call()
            done += 1
    print(json.dumps({"requests": done}))
    return 0


if __name__ == "__main__":
    sys.exit(_client(sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])))
