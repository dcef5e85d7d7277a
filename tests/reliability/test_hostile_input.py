"""Records and mapping files written by someone careless or hostile.

A record with missing, overlong, wrongly typed or hostile values either becomes a valid
customer or dead-letters with the problem named; it never crashes the worker and never stops
the next record. A mapping file cannot execute code. Hypothesis drives the sync with arbitrary
JSON as the record, and arbitrary bytes as Metronome's answer to the create.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fakeredis
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mappings import MappingFileError, load_default_mapping, parse_mapping
from tasks.resync import ResyncRequestError, run_resync
from tasks.sync import Done, Retry, run_sync
from worker.context import WorkerContext
from worker.sandbox.httpserver import HttpServer, Request, Response
from worker.sandbox.metronome import MetronomeEmulator
from worker.settings import load_settings
from worker.state.keys import Keys
from worker.state.store import SyncStore

TOKEN = "hostile-token"
ACCOUNT = "001000000000003AAA"
GOOD = "001000000000004AAA"


def record(account: str = ACCOUNT, **fields: Any) -> dict[str, Any]:
    return {
        "Id": "006000000000003AAA",
        "AccountId": account,
        "SystemModstamp": "2026-11-20T10:00:00.000+0000",
        "Account": {
            "Id": account,
            "Name": "Hostile Inc",
            "Billing_Email__c": "ap@hostile.example",
            "Billing_Provider__c": "netsuite",
            "NetSuite_Customer_Id__c": "NS-1",
            "Parent": None,
            **fields,
        },
    }


@pytest.fixture(scope="module")
def emulator() -> Iterator[MetronomeEmulator]:
    with MetronomeEmulator(token=TOKEN) as running:
        yield running


def context(url: str) -> WorkerContext:
    store = SyncStore(fakeredis.FakeRedis(decode_responses=True), Keys("hostile"))
    return WorkerContext(
        settings=load_settings(
            metronome_bearer_token=TOKEN,
            metronome_base_url=url,
            retry_immediately=True,
            max_task_retries=1,
            metronome_max_attempts=1,
        ),
        store=store,
        mapping=load_default_mapping(),
    )


HOSTILE_VALUES: list[tuple[str, dict[str, Any]]] = [
    ("soql metacharacters", {"Name": "x' OR Name != '' --\\'%_"}),
    (
        "control characters",
        {"Name": "Tab\tNew\nline\x00nul\x1b[31m", "Billing_Email__c": "a\x07@b"},
    ),
    ("10 kB name", {"Name": "N" * 10_240}),
    ("10 kB alias", {"Billing_Email__c": "a" * 10_240 + "@x.example"}),
    ("name missing", {"Name": None}),
    ("name a number", {"Name": 12345}),
    ("name a list", {"Name": ["a", "b"]}),
    ("name an object", {"Name": {"$gt": ""}}),
    ("email an object", {"Billing_Email__c": {"nested": True}}),
    ("provider id a float", {"NetSuite_Customer_Id__c": 1.5e308}),
    ("provider unknown", {"Billing_Provider__c": "<script>alert(1)</script>"}),
    ("template braces", {"Name": "{account_id}{0.__class__}{{}}"}),
    ("lone surrogate-ish", {"Name": "\ud7ff\ue000\U0010ffff"}),
    ("parent loop", {"Parent": {"Id": ACCOUNT, "Parent": {"Id": ACCOUNT}}}),
]


@pytest.mark.parametrize(("label", "fields"), HOSTILE_VALUES, ids=[h[0] for h in HOSTILE_VALUES])
def test_a_hostile_record_syncs_cleanly_or_dead_letters_and_the_next_record_still_syncs(
    emulator: MetronomeEmulator, label: str, fields: dict[str, Any]
) -> None:
    emulator.reset()
    ctx = context(emulator.url)
    try:
        result = run_sync(ctx, ACCOUNT, record(**fields), task_id=f"h-{label}")
        assert isinstance(result, Done), (label, result)
        letters = ctx.store.dead_letters()
        if result.outcome == "dead_lettered":
            [letter] = letters
            assert letter.kind in ("mapping", "permanent"), letter
            assert len(letter.reason) > 10  # names the problem
        else:
            assert result.outcome == "created" and letters == []
            [made] = emulator.customers()
            assert len(made["name"]) <= 160
            # Control characters never reach a display name (each became a space).
            assert not any(ord(c) < 32 or 127 <= ord(c) < 160 for c in made["name"]), made
        good = record(GOOD, Name="Good Neighbour", Billing_Email__c="ap@good.example")
        after = run_sync(ctx, GOOD, good, task_id=f"good-{label}")
    finally:
        ctx.close()
    assert isinstance(after, Done) and after.outcome == "created", after


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=300),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=20), inner, max_size=4)
    ),
    max_leaves=12,
)
ACCOUNT_FIELDS = [
    "Name",
    "Billing_Email__c",
    "Billing_Provider__c",
    "NetSuite_Customer_Id__c",
    "AWS_Region__c",
    "Stripe_Customer_Id__c",
    "Parent",
    "Id",
]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    overrides=st.dictionaries(st.sampled_from(ACCOUNT_FIELDS), JSONISH, max_size=5),
    top=st.dictionaries(st.sampled_from(["AccountId", "Account", "Id"]), JSONISH, max_size=2),
)
def test_fuzzed_records_never_escape_the_sync_as_an_exception(
    emulator: MetronomeEmulator, overrides: dict[str, Any], top: dict[str, Any]
) -> None:
    payload = record(**overrides)
    payload.update(top)
    ctx = context(emulator.url)
    try:
        result = run_sync(ctx, ACCOUNT, copy.deepcopy(payload), task_id="fuzz")
    finally:
        ctx.close()
    assert isinstance(result, Done | Retry)
    if isinstance(result, Done) and result.outcome == "dead_lettered":
        assert result.customer_id is None


class AnswerWith:
    """A Metronome that answers every call with the same (fuzzed) status and bytes.

    Every answer carries ``retry-after-ms: 1``: a 429 is re-sent MAX_REFUSALS times under the
    governor, each after the hold Metronome asks for (1 s when it names none), and the fuzz is
    about the bodies, not about waiting ten seconds per 429 example."""

    def __init__(self) -> None:
        self.status = 200
        self.body = b""
        self.server = HttpServer(self.handle).start()

    async def handle(self, request: Request) -> Response:
        headers = [("content-type", "application/json"), ("retry-after-ms", "1")]
        return Response(self.status, self.body, headers)


@pytest.fixture(scope="module")
def answering() -> Iterator[AnswerWith]:
    server = AnswerWith()
    yield server
    server.server.stop()


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    status=st.sampled_from([200, 201, 400, 404, 409, 429, 500, 502, 503]),
    body=st.binary(max_size=200)
    | JSONISH.map(lambda v: __import__("json").dumps(v).encode())
    | st.sampled_from(
        [b'{"data": {"id": 7}}', b'{"data": []}', b'{"data": null}', b'{"message": 5}']
    ),
)
def test_any_metronome_answer_ends_the_sync_as_retry_or_dead_letter_never_a_crash(
    answering: AnswerWith, status: int, body: bytes
) -> None:
    answering.status, answering.body = status, body
    ctx = context(answering.server.url)
    try:
        result = run_sync(ctx, ACCOUNT, record(), task_id="fuzz-answer")
    finally:
        ctx.close()
    assert isinstance(result, Done | Retry)
    assert not (isinstance(result, Done) and result.outcome == "created" and not result.customer_id)


@pytest.mark.parametrize(
    "text",
    [
        "!!python/object/apply:os.system ['touch {marker}']\n",
        "name: !!python/object/apply:os.system ['touch {marker}']\n",
        "name: !!python/name:os.system\n",
        "name: {{field: __class__.__mro__}}\n",
        "name: {{format: '{{Account.__class__.__init__.__globals__}}'}}\n",
        "name: {{eval: \"__import__('os').system('touch {marker}')\"}}\n",
        # A "billion laughs" alias bomb, small enough to be harmless if it did expand.
        "a: &a ['lol','lol']\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
        "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nname: [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n",
    ],
)
def test_a_mapping_file_cannot_execute_code(tmp_path: Path, text: str) -> None:
    marker = tmp_path / "pwned"
    with pytest.raises(MappingFileError) as caught:
        parse_mapping(text.format(marker=marker), "evil.yaml")
    assert "evil.yaml" in str(caught.value)
    assert not marker.exists()


@pytest.mark.parametrize(
    "bad", ["001' OR Name != '", "001000000000003AAA' --", "../../etc", "001\x00", "x" * 5000]
)
def test_resync_refuses_a_hostile_id_before_any_soql(bad: str) -> None:
    store = SyncStore(fakeredis.FakeRedis(decode_responses=True), Keys("ids"))
    ctx = WorkerContext(settings=load_settings(), store=store, mapping=load_default_mapping())
    # No Salesforce is configured at all: reaching a query would raise NotConfigured instead.
    with pytest.raises(ResyncRequestError):
        run_resync(ctx, account_ids=[bad])
