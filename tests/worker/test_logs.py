"""Log lines: one JSON object per line with the ids, readable on a TTY, never a secret."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from celery import Celery

from tasks.inflight import run_in_flight
from worker.app import _redact_arguments
from worker.logs import (
    ConsoleFormatter,
    JsonFormatter,
    choose_format,
    configure_logging,
    scrub,
)


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    handler = configure_logging("json", "INFO", stream)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def parsed(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_each_line_is_one_json_object_with_the_ids(captured: io.StringIO) -> None:
    logging.getLogger("tasks.sync").info(
        "synced account %s: %s",
        "001A",
        "created",
        extra={"account_id": "001A", "customer_id": "c-1", "task_id": "t-1"},
    )
    [line] = parsed(captured)
    assert line["message"] == "synced account 001A: created"
    assert (line["account_id"], line["customer_id"], line["task_id"]) == ("001A", "c-1", "t-1")
    assert line["level"] == "info" and line["logger"] == "tasks.sync"


def test_the_task_id_comes_from_the_running_celery_task(captured: io.StringIO) -> None:
    app = Celery("logs-test", set_as_current=False)

    def body() -> None:
        logging.getLogger("kombu.example").warning("a library line inside a task")

    logs_something = app.task(name="crmsync.test_logging")(body)

    logs_something.apply(task_id="task-42")
    [line] = [x for x in parsed(captured) if x["logger"] == "kombu.example"]
    assert line["task_id"] == "task-42"
    assert line["task_name"] == "crmsync.test_logging"


def test_lines_of_a_batch_thread_name_the_batch_task(captured: io.StringIO) -> None:
    app = Celery("logs-test", set_as_current=False)

    def work(index: int) -> bool:
        logging.getLogger("kombu.example").warning("line from sync thread %d", index)
        return False

    def body() -> None:
        run_in_flight(3, work, threads=3, deadline=float("inf"))

    batch = app.task(name="crmsync.test_batch_logging")(body)
    batch.apply(task_id="batch-7")
    lines = [x for x in parsed(captured) if x["logger"] == "kombu.example"]
    assert len(lines) == 3
    assert {(x["task_id"], x["task_name"]) for x in lines} == {
        ("batch-7", "crmsync.test_batch_logging")
    }


def test_secrets_never_reach_a_line(captured: io.StringIO) -> None:
    log = logging.getLogger("simple_salesforce.example")
    log.error("login failed: password=hunter2 token: abc123secret")
    log.error("sent Authorization: Bearer sk_live_0123456789abcdef")
    try:
        raise RuntimeError("<sessionId>00D000SESSION!xyz</sessionId>")
    except RuntimeError:
        log.exception("soap said")
    text = captured.getvalue()
    for secret in ("hunter2", "abc123secret", "sk_live_0123456789abcdef", "00D000SESSION"):
        assert secret not in text
    assert len(parsed(captured)) == 3
    assert "RuntimeError" in str(parsed(captured)[2]["exception"])


def test_scrub_leaves_ordinary_text_alone() -> None:
    text = "synced account 001Hp00052vHyiBIAS: created (2 calls) alias team@widgets.example"
    assert scrub(text) == text


def test_auto_is_json_in_a_container_and_readable_on_a_tty() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert choose_format("auto", io.StringIO()) == "json"
    assert choose_format("auto", Tty()) == "console"
    assert choose_format("json", Tty()) == "json"
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello %s", ("you",), None)
    record.account_id = "001A"
    line = ConsoleFormatter().format(record)
    assert "hello you" in line and "account_id=001A" in line
    assert json.loads(JsonFormatter().format(record))["account_id"] == "001A"


def test_configure_replaces_only_its_own_handler() -> None:
    root = logging.getLogger()
    other = logging.StreamHandler(io.StringIO())
    root.addHandler(other)
    level = root.level
    try:
        first = configure_logging("json", "INFO", io.StringIO())
        second = configure_logging("console", "DEBUG", io.StringIO())
        assert first not in root.handlers and second in root.handlers and other in root.handlers
    finally:
        root.removeHandler(second)
        root.removeHandler(other)
        root.setLevel(level)


def test_task_arguments_shown_by_events_are_scrubbed() -> None:
    headers = {
        "argsrepr": "['001A', {'Name': 'Acme', 'api_key': 'k-123456789'}]",
        "kwargsrepr": "{'password': 'hunter2', 'force': True}",
    }
    _redact_arguments(headers=headers)
    assert "k-123456789" not in headers["argsrepr"] and "'Acme'" in headers["argsrepr"]
    assert "hunter2" not in headers["kwargsrepr"] and "'force': True" in headers["kwargsrepr"]
