"""``crmsync flower``: Flower on our broker, never open without credentials.

Credentials come from FLOWER_USER / FLOWER_PASSWORD and reach Flower through its own
``FLOWER_BASIC_AUTH`` environment option, not the command line, where ``ps`` would show them.
Flower splits that option on commas, so a password must not contain one (refused here).
Workers send task events (``worker_send_task_events``) so Flower sees every task; the
arguments it shows are the publish-time ``argsrepr`` that worker.app scrubs of secrets.
``/healthcheck`` and ``/metrics`` stay open by Flower's design (for probes and scrapers).
"""

from __future__ import annotations

import argparse
import os
import sys

from worker.commands.bootstrap import runtime
from worker.logs import configure_logging
from worker.settings import load_settings


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("flower", help="start the Flower dashboard (basic auth)")
    parser.add_argument("--address", default="127.0.0.1", help="interface to bind")
    parser.add_argument("--port", type=int, default=5555)
    parser.add_argument(
        "--insecure-local",
        action="store_true",
        help="allow no credentials, binding to 127.0.0.1 only (for a developer's machine)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    if settings.flower_password and "," in settings.flower_password.get_secret_value():
        print("crmsync flower: FLOWER_PASSWORD must not contain a comma", file=sys.stderr)
        return 2
    if settings.flower_user and settings.flower_password:
        os.environ["FLOWER_BASIC_AUTH"] = (
            f"{settings.flower_user}:{settings.flower_password.get_secret_value()}"
        )
    elif args.insecure_local:
        os.environ.pop("FLOWER_BASIC_AUTH", None)
        args.address = "127.0.0.1"
    else:
        print(
            "crmsync flower: set FLOWER_USER and FLOWER_PASSWORD (basic auth), or pass "
            "--insecure-local to serve without auth on 127.0.0.1 only",
            file=sys.stderr,
        )
        return 2
    configure_logging(settings.log_format)
    # Flower reads Redis only: a running crmsync's, never one started for it.
    with runtime(
        settings,
        needs_credentials=False,
        needs_mapping=False,
        wait_for_redis_s=settings.redis_wait_s,
    ) as rt:
        rt.app.start(["flower", f"--address={args.address}", f"--port={args.port}"])
    return 0
