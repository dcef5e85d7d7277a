"""``crmsync.ping``: proves a live worker consumes our queue (used by ``crmsync check``)."""

from __future__ import annotations

import os
import socket

from worker.app import app


@app.task(name="crmsync.ping", ignore_result=False, acks_late=False)
def ping() -> dict[str, object]:
    """Answer with who answered, so a caller knows which worker process is alive."""
    return {"pong": True, "hostname": socket.gethostname(), "pid": os.getpid()}
