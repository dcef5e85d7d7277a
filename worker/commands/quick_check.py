"""``crmsync check --quick --skip-worker`` without pydantic, the mapping models or redis-py.

Compose and Kubernetes run it every 30-60 s in the listener and beat containers, and the
full check spends ~1 s importing what it validates with. Here, a stamp (worker/commands/
check_stamp.py) proves that the settings and the mapping were validated with exactly today's
inputs, so their lines are printed from it, and Redis is reached with the standard library
(worker/state/ping.py): the same server, the same credentials, the same handshake, the same
line. Redis is asked every time: a worker whose every poll would fail must not look healthy.

Only health is answered here. No stamp, a stamp for other inputs, a Redis URL this path
cannot read, or Redis answering anything but a healthy primary's answers: :func:`quick_check`
returns None and the full check runs, unchanged, printing its one line for whatever is wrong.

``--this-host`` and ``--node`` (the workers' health check) are not served here: their Celery
ping imports celery, kombu and the settings anyway (~1 s), so a stamp would save little.
"""

from __future__ import annotations

import argparse
import os

from worker.commands.check_redis_target import configured_redis_url, embedded_redis_url
from worker.commands.check_report import CheckResult, report
from worker.commands.check_stamp import read_stamp, secret_digest
from worker.state.ping import ProbeFailed, Unsupported, probe


def quick_check(args: argparse.Namespace) -> int | None:
    """The exit code of an all-ok quick check vouched for by a stamp; None to run the full
    check (always, for anything else)."""
    if not (args.quick and args.skip_worker) or args.node or args.this_host:
        return None
    stamp = read_stamp()
    if stamp is None:
        return None
    cwd = os.getcwd()
    try:
        url = configured_redis_url(os.environ, cwd)
        if secret_digest(stamp["key"], url or "") != stamp["redis"]["digest"]:
            return None  # not the URL the settings built: let them build it
        shown = str(stamp["redis"]["shown"])
        if url is None:  # the embedded Redis of `crmsync run`: wherever it runs now
            url = shown = embedded_redis_url(os.environ, cwd) or ""
        found = probe(url) if url else None
        stamped = [CheckResult(str(r["name"]), True, str(r["detail"])) for r in stamp["lines"]]
    except (Unsupported, ProbeFailed, KeyError, TypeError, ValueError):
        return None
    if found is None or found.maxmemory_policy != "noeviction":
        return None
    detail = f"{shown} redis {found.version}, maxmemory-policy {found.maxmemory_policy}"
    if found.primary is not None:
        detail += f"; the sentinels name {found.primary} as the primary"
    return report([*stamped, CheckResult("redis", True, detail)], args.json)
