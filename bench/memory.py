"""Peak memory of the process that polls a large org: the real ``crmsync poll`` command.

The poll must stream (one SOQL page and one enqueue chunk at a time); a poll that gathered
every row first would need memory in proportion to the org and be killed on a small node. The
command runs as a child process against its own stack (Redis and emulators, no workers, so
the 100,000 sync messages just wait in Redis), and its peak RSS is the kernel's figure for the
child, imports and the Salesforce session included.

The peak is read from the child's own ``VmHWM`` (``/proc/PID/status``), sampled until it
exits, not from ``wait4``'s ``ru_maxrss``: between fork and exec the child still runs in the
parent's address space, and the parent here holds the emulator's 100,000 seeded accounts, so
``ru_maxrss`` reported the *benchmark's* size (408 MB) for a poll that never exceeded 121 MB.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from worker.sandbox.stack import SandboxStack
from worker.settings import child_environment


def poll_peak_rss(base: Path, won_accounts: int, progress: Any) -> dict[str, Any]:
    with SandboxStack(data_dir=base / "poll-data") as stack:
        assert stack.salesforce is not None  # noqa: S101 - started
        started = time.monotonic()
        stack.salesforce.seed(won_accounts, seed=8, won_fraction=1.0)
        progress(f"seeded {won_accounts} won accounts in {time.monotonic() - started:.1f}s")
        env = child_environment(stack.env())
        with (base / "poll-100k.log").open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "worker.cli", "poll", "--json"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=log,
            )
            assert process.stdout is not None  # noqa: S101 - piped
            peak_kib = [0]
            sampler = threading.Thread(
                target=_sample_peak, args=(process.pid, peak_kib), daemon=True
            )
            sampler.start()
            output = process.stdout.read()
            _, status, usage = os.wait4(process.pid, 0)
            sampler.join(timeout=5)
        process.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.monotonic() - started
        if process.returncode != 0:
            raise RuntimeError(f"crmsync poll exited {process.returncode}: see poll-100k.log")
        summary = json.loads(output)
        return {
            "rows": int(summary.get("rows", 0)),
            "enqueued": int(summary.get("enqueued", 0)),
            "salesforce_calls": int(summary.get("salesforce_calls", 0)),
            "peak_rss_mb": peak_kib[0] / 1024,
            "ru_maxrss_mb_including_fork": usage.ru_maxrss / 1024,
            "cpu_s": usage.ru_utime + usage.ru_stime,
            "seconds": seconds,
        }


def _sample_peak(pid: int, peak_kib: list[int]) -> None:
    """Keep the child's high-water mark (VmHWM, KiB) until its /proc entry is gone."""
    while True:
        try:
            with open(f"/proc/{pid}/status") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        peak_kib[0] = max(peak_kib[0], int(line.split()[1]))
        except (FileNotFoundError, ProcessLookupError, ValueError):
            return
        time.sleep(0.2)
