"""``crmsync worker``: a Celery worker consuming crmsync's queue.

``--metrics-port`` serves Prometheus metrics from this (the main) process. Tasks run in prefork
children, so counts go through prometheus-client's multiprocess directory, which this command
creates empty before the pool forks and removes when the worker stops (worker/telemetry/metrics.py).
With CRMSYNC_ALERT_WEBHOOK_URL set, this process also watches for dead letters and cursor lag
(worker/ops/watcher.py).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from worker.commands.bootstrap import Runtime, service_runtime
from worker.commands.preflight import check_org
from worker.ops import consuming, redelivery
from worker.ops.scrape import RedisStateCollector
from worker.ops.watcher import start_watcher
from worker.state.keys import QUEUE, Keys
from worker.state.store import SyncStore
from worker.telemetry import metrics


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("worker", help="run a Celery worker (foreground)")
    parser.add_argument(
        "--concurrency", type=int, default=None, help="child processes (CRMSYNC_CONCURRENCY)"
    )
    parser.add_argument(
        "--pool", default="prefork", choices=["prefork", "solo", "threads"], help="worker pool"
    )
    parser.add_argument("--loglevel", default=None, help="default: CRMSYNC_LOG_LEVEL")
    parser.add_argument("--hostname", default=None, help="Celery node name (default: celery@host)")
    add_metrics_arguments(parser)
    parser.set_defaults(func=run)


def add_metrics_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--metrics-port", type=int, default=None, help="serve Prometheus /metrics on this port"
    )
    parser.add_argument(
        "--metrics-address",
        default="127.0.0.1",
        help="interface for /metrics (0.0.0.0 in a container, for the scraper)",
    )


@contextlib.contextmanager
def operations(rt: Runtime, args: argparse.Namespace) -> Iterator[None]:
    """Metrics endpoint and alert watcher around a worker's lifetime (the main process)."""

    def store() -> SyncStore:
        return SyncStore.from_url(rt.redis.url, rt.settings.redis_prefix)

    created: Path | None = None
    if args.metrics_port is not None:
        directory = rt.settings.metrics_dir
        if directory is None:
            directory = created = Path(tempfile.mkdtemp(prefix="crmsync-metrics-"))
        metrics.prepare_directory(directory)
        metrics.serve(args.metrics_port, args.metrics_address, RedisStateCollector(store, QUEUE))
    watcher = start_watcher(rt.settings, store)
    try:
        yield
    finally:
        if watcher is not None:
            watcher.stop()
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)


def preload_metronome_sdk() -> None:
    """Import the SDK's resources and response types here, in the parent: every prefork
    child then inherits them instead of spending about half a CPU second on its first sync
    (measured with py-spy in ``python -m bench.backfill --profile``)."""
    for module in ("metronome.resources.v1", "metronome.types.v1"):
        importlib.import_module(module)


def run(args: argparse.Namespace) -> int:
    with service_runtime() as rt, operations(rt, args):
        check_org(rt)  # a mapped field the org refuses stops the start, in one line
        argv = [
            "worker",
            f"--loglevel={args.loglevel or rt.settings.log_level}",
            f"--concurrency={args.concurrency or rt.settings.concurrency}",
            f"--pool={args.pool}",
            f"--queues={QUEUE}",
            "--task-events",
            # Gossip and mingle make every worker consume the others' broadcasts over Redis
            # pub/sub; we use neither, and a pub/sub connection was seen hanging a worker in
            # recv() after a Redis restart (chaos run). Remote control (Flower, inspect ping)
            # and task events are unaffected.
            "--without-gossip",
            "--without-mingle",
        ]
        if args.hostname:
            argv.append(f"--hostname={args.hostname}")
        preload_metronome_sdk()
        consuming.install(rt.app, rt.redis.url, Keys(rt.settings.redis_prefix))
        redelivery.install(rt.app)
        rt.app.worker_main(argv)
    return 0
