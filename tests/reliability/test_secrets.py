"""Secrets never leave the process that needs them: not in logs, task arguments, Redis, dead
letters or exception messages, even on a run full of faults and failures.

Every credential gets a recognisable value; the pipeline runs with Metronome faults, an
expired Salesforce session, records that dead-letter and messages that are not ours; then
every output is searched: the worker's log, every Redis key of every type (queued messages
decoded from kombu's base64 bodies), the dead letters, and the text of the exceptions raised.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tasks.poll import run_poll
from tasks.resync import run_resync
from tests.support.prewarmed import start_service
from worker.app import app
from worker.metronome import MetronomeGateway
from worker.ops.progress import terminal_total, wait_for_syncs
from worker.sandbox.metronome import MetronomeFaults
from worker.sandbox.salesforce import SandboxCredentials
from worker.sandbox.stack import SandboxStack
from worker.settings import load_settings

pytestmark = pytest.mark.integration

SECRETS = {
    "salesforce_password": "SfPass-7c1e-LEAKCHECK",
    "salesforce_token": "SfTok-93ab-LEAKCHECK",
    "metronome_token": "MtTok-51d2-LEAKCHECK",
    "flower_password": "FlPass-0e44-LEAKCHECK",
    "private_key": "PrivKey-aa10-LEAKCHECK",
}
MARKER = re.compile(r"LEAKCHECK")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxStack]:
    base = tmp_path_factory.mktemp("secrets")
    credentials = SandboxCredentials(
        username="leakcheck@crmsync.local",
        password=SECRETS["salesforce_password"],
        security_token=SECRETS["salesforce_token"],
    )
    running = SandboxStack(
        data_dir=base / "data",
        launcher=start_service,
        credentials=credentials,
        metronome_token=SECRETS["metronome_token"],
        metronome_faults=MetronomeFaults(
            server_error_rate=0.2, too_many_requests_rate=0.1, commit_then_drop_rate=0.05, seed=7
        ),
        extra_env={
            "FLOWER_USER": "ops",
            "FLOWER_PASSWORD": SECRETS["flower_password"],
            "CRMSYNC_VISIBILITY_TIMEOUT_S": "30",
            # The faults are here to put errors in logs and dead letters, not to time backoffs.
            "CRMSYNC_RETRY_IMMEDIATELY": "1",
        },
    )
    with running:
        assert running.salesforce is not None
        running.salesforce.seed(25, seed=3)
        running.start_worker(base / "worker.log", concurrency=2)
        running.wait_for_worker()
        yield running


def every_redis_value(url: str) -> Iterator[str]:
    """Every key and value in Redis, as text; kombu's base64 message bodies decoded too."""
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        for key in client.scan_iter(count=1000):
            yield key
            kind = client.type(key)
            values: list[Any]
            if kind == "string":
                values = [client.get(key)]
            elif kind == "hash":
                values = [f"{k!s}={v!s}" for k, v in client.hgetall(key).items()]
            elif kind == "list":
                values = client.lrange(key, 0, -1)
            elif kind == "set":
                values = list(client.smembers(key))
            elif kind == "zset":
                values = client.zrange(key, 0, -1)
            elif kind == "stream":
                values = [json.dumps(fields) for _id, fields in client.xrange(key) or []]
            else:
                values = []
            for value in values:
                text = value if isinstance(value, str) else repr(value)
                yield text
                yield from decoded_bodies(text)
    finally:
        client.close()


def decoded_bodies(text: str) -> Iterator[str]:
    """kombu stores a message as JSON with a base64 ``body`` (the task arguments)."""
    try:
        data = json.loads(text)
    except ValueError:
        return
    stack: list[Any] = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            body = item.get("body")
            if isinstance(body, str):
                with contextlib.suppress(ValueError):
                    yield "BODY:" + base64.b64decode(body).decode("utf-8", "replace")
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def assert_no_secret(where: str, text: str) -> None:
    for name, secret in SECRETS.items():
        assert secret not in text, f"{name} found in {where}"
    assert not MARKER.search(text), f"a secret's marker found in {where}"


def test_a_faulty_run_leaks_no_secret_anywhere(stack: SandboxStack, tmp_path: Path) -> None:
    assert stack.salesforce is not None
    ctx = stack.context()
    try:
        # A run with faults, a session expiry in the middle, and records that dead-letter.
        baseline = terminal_total(ctx.store)
        first = run_poll(ctx)
        assert first["status"] == "ok" and first["enqueued"] > 0
        assert wait_for_syncs(ctx.store, baseline, first["enqueued"], timeout_s=120)
        stack.salesforce.expire_sessions()
        # Messages that are not ours: wrong arguments, an unknown task name.
        baseline = terminal_total(ctx.store)
        app.send_task("crmsync.sync_account", args=["only-one-argument"])
        app.send_task("crmsync.no_such_task", args=["x"])
        # A re-sync of everything after the session expired (forces a re-login).
        resync = run_resync(ctx, all_accounts=True)
        assert wait_for_syncs(ctx.store, baseline, resync["enqueued"] + 2, timeout_s=120)
        # Now queue work with no worker running, to search messages as they sit in Redis.
        stack.stop_workers()
        run_resync(ctx, all_accounts=True)
        letters = ctx.store.dead_letters()
        kinds = {d.kind for d in letters}
        assert {"malformed_message", "unknown_task"} <= kinds, kinds
    finally:
        ctx.close()

    bodies = 0
    for text in every_redis_value(stack.redis_url):
        assert_no_secret("redis", text)
        bodies += text.startswith("BODY:") and "AccountId" in text
    assert bodies > 0, "no queued sync message was searched"  # the search saw the arguments
    for letter in letters:
        assert_no_secret("dead letter", json.dumps(dataclasses.asdict(letter), default=str))
    logs = "\n".join(p.read_text(errors="replace") for p in stack.data_dir.parent.glob("*.log"))
    assert "dead-lettered" in logs  # the log did record the failures
    assert_no_secret("worker log", logs)


def test_exceptions_and_reprs_do_not_carry_secrets(stack: SandboxStack) -> None:
    settings = load_settings(
        salesforce_username="leakcheck@crmsync.local",
        salesforce_consumer_key="client-id",
        salesforce_private_key=SECRETS["private_key"],
        metronome_bearer_token=SECRETS["metronome_token"],
        flower_password=SECRETS["flower_password"],
    )
    assert_no_secret("settings repr", repr(settings) + str(settings))
    texts: list[str] = []
    # A refused token (401) and an unreachable server: the errors name the call, not the token.
    assert stack.metronome is not None
    for url, token in (
        (stack.metronome.url, SECRETS["metronome_token"] + "x"),
        ("http://127.0.0.1:9", SECRETS["metronome_token"]),
    ):
        gateway = MetronomeGateway(token, url, timeout_s=1, max_attempts=1, retry_immediately=True)
        try:
            gateway.list_customers(ingest_alias="x")
        except Exception as exc:  # the point: look at whatever it raised
            texts.append(f"{type(exc).__name__}: {exc} {exc!r} {exc.__cause__!r}")
        finally:
            gateway.close()
    assert len(texts) == 2
    assert_no_secret("exceptions", "\n".join(texts))
