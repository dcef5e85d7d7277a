"""``crmsync listen``: subscribe to Salesforce change events and enqueue their syncs.

A long-running process of its own (its own compose service), never a Celery child: grpcio
does not survive ``fork``. Run two for availability: one holds the Redis lease and listens,
the other waits and takes over within CRMSYNC_LISTENER_LEASE_S when the first dies. SIGTERM
stops it cleanly (the lease is released at once, so a standby takes over without waiting).
"""

from __future__ import annotations

import argparse
import signal
from types import FrameType

from worker.commands.bootstrap import service_runtime
from worker.commands.preflight import check_org
from worker.context import build_context
from worker.logs import configure_logging


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "listen",
        help="turn Salesforce change events into syncs (one active per org; others stand by)",
    )
    parser.add_argument("--loglevel", default=None, help="default: CRMSYNC_LOG_LEVEL")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from worker.listener.process import Listener
    from worker.state.listener import ListenerState
    from worker.telemetry.alerts import WebhookSender

    # A long-lived service: the mapping is validated before anything starts, the embedded
    # Redis is started or joined (and announced), an external one waited for.
    with service_runtime() as rt:
        configure_logging(rt.settings.log_format, args.loglevel or rt.settings.log_level)
        check_org(rt)  # a mapped field the org refuses stops the start, in one line
        ctx = build_context(rt.settings, rt.redis.url)
        state = ListenerState.from_url(rt.redis.url, rt.settings.redis_prefix)
        webhook = rt.settings.alert_webhook_url
        alerts = WebhookSender(webhook) if webhook else None
        listener = Listener(ctx, state, alerts=alerts)

        def stop(signum: int, frame: FrameType | None) -> None:
            listener.stop()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        try:
            listener.run()
        finally:
            if alerts is not None:
                alerts.close()
            state.close()
            ctx.close()
    return 0
