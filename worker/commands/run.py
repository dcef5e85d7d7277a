"""``crmsync run``: worker and beat in one process, for a single machine."""

from __future__ import annotations

import argparse
import time

from worker.app import BEAT_SCHEDULER
from worker.commands.bootstrap import service_runtime
from worker.commands.preflight import check_org
from worker.commands.worker import add_metrics_arguments, operations
from worker.state.keys import QUEUE


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("run", help="worker + beat in one command (single machine)")
    parser.add_argument("--concurrency", type=int, default=None)
    parser.add_argument("--loglevel", default=None, help="default: CRMSYNC_LOG_LEVEL")
    add_metrics_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    with service_runtime() as rt, operations(rt, args):
        check_org(rt)  # a mapped field the org refuses stops the start, in one line
        try:
            rt.app.worker_main(
                [
                    "worker",
                    "--beat",
                    f"--scheduler={BEAT_SCHEDULER}",
                    f"--loglevel={args.loglevel or rt.settings.log_level}",
                    f"--concurrency={args.concurrency or rt.settings.concurrency}",
                    f"--queues={QUEUE}",
                    "--task-events",
                    "--without-gossip",  # see worker.py
                    "--without-mingle",
                ]
            )
        finally:
            wait_for_beat()
    return 0


def wait_for_beat(timeout_s: float = 15.0) -> None:
    """Return only once beat's process has ended. Celery runs the embedded beat as a child
    process and does not wait for it when the worker stops; after Ctrl-C (which reaches the
    child too) beat still writes its schedule and releases its lock in Redis. Leaving first
    orphaned it and, with the embedded Redis this process stops on the way out, ended beat in
    a connection-refused traceback (seen on a loaded machine)."""
    from billiard.process import active_children

    deadline = time.monotonic() + timeout_s
    for child in active_children():
        child.join(max(0.0, deadline - time.monotonic()))
