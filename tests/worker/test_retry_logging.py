"""stamina's retries log through crmsync's handler with the reason, never a bare line."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import stamina

from worker.logs import configure_logging


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    out = io.StringIO()
    handler = configure_logging("json", logging.INFO, out)
    try:
        yield out
    finally:
        logging.getLogger().removeHandler(handler)


def test_a_retry_is_one_json_line_with_the_reason(stream: io.StringIO) -> None:
    failures = iter([ConnectionError("Metronome listKeys: no answer"), None])
    for attempt in stamina.retry_context(on=ConnectionError, attempts=2, wait_initial=0.0):
        with attempt:
            failure = next(failures)
            if failure is not None:
                raise failure
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    [retry] = [line for line in lines if line["logger"] == "crmsync.retry"]
    assert retry["level"] == "info"
    assert "retry 1 of" in retry["message"]
    assert "ConnectionError: Metronome listKeys: no answer" in retry["message"]
    assert "stamina.retry_scheduled" not in stream.getvalue()
