"""How fast the emulator answers the real SDK: the ceiling any benchmark of the worker sits under.

``python -m worker.sandbox.metronome.measure`` prints one JSON object per operation. Numbers
are measured, never asserted (CI machines differ).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any, Literal

import httpx
import metronome

from worker.sandbox.metronome.emulator import MetronomeEmulator

Operation = Literal["create", "list"]
_TOKEN = "measure-token"  # noqa: S105 - the throwaway emulator's own token


def measure_ceiling(
    operation: Operation = "create", *, seconds: float = 2.0, threads: int = 1
) -> dict[str, Any]:
    """Requests per second a fresh emulator serves to ``threads`` SDK clients in a tight loop."""
    with MetronomeEmulator(token=_TOKEN) as emulator:
        counts = [0] * threads
        deadline = time.perf_counter() + seconds

        def loop(slot: int) -> None:
            with httpx.Client(timeout=10) as http:
                client = metronome.Metronome(
                    bearer_token=_TOKEN, base_url=emulator.url, max_retries=0, http_client=http
                )
                while time.perf_counter() < deadline:
                    if operation == "create":
                        client.v1.customers.create(
                            name="bench",
                            ingest_aliases=[uuid.uuid4().hex],
                            extra_headers={"Idempotency-Key": uuid.uuid4().hex},
                        )
                    else:
                        client.v1.customers.list(limit=10)
                    counts[slot] += 1

        started = time.perf_counter()
        workers = [threading.Thread(target=loop, args=(n,)) for n in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        elapsed = time.perf_counter() - started
        total = sum(counts)
        return {
            "operation": operation,
            "threads": threads,
            "requests": total,
            "seconds": round(elapsed, 3),
            "requests_per_second": round(total / elapsed, 1),
        }


if __name__ == "__main__":
    for op in ("create", "list"):
        for n in (1, 4):
            print(json.dumps(measure_ceiling(op, threads=n)))
