"""``crmsync beat``: the scheduler that sends ``crmsync.poll_closed_won`` every interval."""

from __future__ import annotations

import argparse

from worker.runtime import runtime


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "beat", help="run the scheduler (safe to run two: one waits on a Redis lock)"
    )
    parser.add_argument("--loglevel", default="INFO")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from celery.apps.beat import Beat

    with runtime() as rt:
        Beat(app=rt.app, loglevel=args.loglevel, scheduler="redbeat.RedBeatScheduler").run()
    return 0
