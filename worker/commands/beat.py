"""``crmsync beat``: the scheduler that sends ``crmsync.poll_closed_won`` every interval.

Safe to run twice: see worker/scheduler.py for the lock and how it heals after Redis loses
its data.
"""

from __future__ import annotations

import argparse

from worker.app import BEAT_SCHEDULER
from worker.commands.bootstrap import service_runtime


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "beat", help="run the scheduler (safe to run two: one waits on a Redis lock)"
    )
    parser.add_argument("--loglevel", default=None, help="default: CRMSYNC_LOG_LEVEL")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from celery.apps.beat import Beat

    # Beat only sends messages: it needs Redis, not the Salesforce or Metronome credentials;
    # but every poll it sends would fail on a bad mapping, so the mapping is checked first.
    with service_runtime(needs_credentials=False) as rt:
        loglevel = args.loglevel or rt.settings.log_level
        Beat(app=rt.app, loglevel=loglevel, scheduler=BEAT_SCHEDULER).run()
    return 0
