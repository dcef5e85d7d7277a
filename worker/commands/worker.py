"""``crmsync worker``: a Celery worker consuming crmsync's queue."""

from __future__ import annotations

import argparse

from worker.app import QUEUE
from worker.runtime import runtime


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("worker", help="run a Celery worker (foreground)")
    parser.add_argument(
        "--concurrency", type=int, default=None, help="child processes (CRMSYNC_CONCURRENCY)"
    )
    parser.add_argument(
        "--pool", default="prefork", choices=["prefork", "solo", "threads"], help="worker pool"
    )
    parser.add_argument("--loglevel", default="INFO")
    parser.add_argument("--hostname", default=None, help="Celery node name (default: celery@host)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    with runtime() as rt:
        argv = [
            "worker",
            f"--loglevel={args.loglevel}",
            f"--concurrency={args.concurrency or rt.settings.concurrency}",
            f"--pool={args.pool}",
            f"--queues={QUEUE}",
            "--task-events",
        ]
        if args.hostname:
            argv.append(f"--hostname={args.hostname}")
        rt.app.worker_main(argv)
    return 0
