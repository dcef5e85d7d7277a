"""Peak memory of the process that polls a large org: the real ``crmsync poll`` command.

The poll must stream (one SOQL page and one enqueue chunk at a time); a poll that gathered
every row first would need memory in proportion to the org and be killed on a small node. The
command runs as a child process against its own stack (Redis and emulators, no workers, so
the 100,000 sync messages just wait in Redis), and its peak RSS is the kernel's figure for the
child (``wait4`` rusage ``ru_maxrss``), imports and the Salesforce session included.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from worker.sandbox.stack import SandboxStack


def poll_peak_rss(base: Path, won_accounts: int, progress: Any) -> dict[str, Any]:
    with SandboxStack(data_dir=base / "poll-data") as stack:
        assert stack.salesforce is not None  # noqa: S101 - started
        started = time.monotonic()
        stack.salesforce.seed(won_accounts, seed=8, won_fraction=1.0)
        progress(f"seeded {won_accounts} won accounts in {time.monotonic() - started:.1f}s")
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("CRMSYNC_", "SALESFORCE_", "METRONOME_", "REDIS_"))
        }
        env.update(stack.env())
        with (base / "poll-100k.log").open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "worker.cli", "poll"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=log,
            )
            assert process.stdout is not None  # noqa: S101 - piped
            output = process.stdout.read()
            _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.monotonic() - started
        if process.returncode != 0:
            raise RuntimeError(f"crmsync poll exited {process.returncode}: see poll-100k.log")
        summary = json.loads(output)
        return {
            "rows": int(summary.get("rows", 0)),
            "enqueued": int(summary.get("enqueued", 0)),
            "salesforce_calls": int(summary.get("salesforce_calls", 0)),
            "peak_rss_mb": usage.ru_maxrss / 1024,  # Linux reports KiB
            "cpu_s": usage.ru_utime + usage.ru_stime,
            "seconds": seconds,
        }
