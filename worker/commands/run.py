"""``crmsync run``: worker and beat in one process, for a single machine."""

from __future__ import annotations

import argparse

from worker.app import QUEUE
from worker.runtime import runtime


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("run", help="worker + beat in one command (single machine)")
    parser.add_argument("--concurrency", type=int, default=None)
    parser.add_argument("--loglevel", default="INFO")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    with runtime() as rt:
        rt.app.worker_main(
            [
                "worker",
                "--beat",
                "--scheduler=redbeat.RedBeatScheduler",
                f"--loglevel={args.loglevel}",
                f"--concurrency={args.concurrency or rt.settings.concurrency}",
                f"--queues={QUEUE}",
                "--task-events",
            ]
        )
    return 0
