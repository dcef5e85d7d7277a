"""The Salesforce emulator's Pub/Sub API, through our client, as Salesforce documents it:
auth by metadata, credit, keepalives, replay, retention, faults and gap events."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from simple_salesforce.api import Salesforce

from worker.salesforce.events import pubsub_pb2 as pb
from worker.salesforce.events.auth import credentials_of
from worker.salesforce.events.changes import ChangeEvent, ChangeType
from worker.salesforce.events.client import (
    AUTH_ERROR,
    LIMIT_EXCEEDED,
    REPLAY_CORRUPTED,
    Credentials,
    PubSubClient,
    PubSubError,
    Subscription,
    open_channel,
)
from worker.salesforce.events.schemas import SchemaCache
from worker.sandbox.salesforce import SalesforceEmulator
from worker.sandbox.salesforce.client import build_sandbox_salesforce

TOPIC = "/data/OpportunityChangeEvent"
pytestmark = pytest.mark.timeout(60)  # a stream that never answers must not hang the suite


@pytest.fixture
def emulator() -> Iterator[SalesforceEmulator]:
    with SalesforceEmulator(pubsub_port=0, pubsub_keepalive_s=0.2) as running:
        yield running


@pytest.fixture
def sf(emulator: SalesforceEmulator) -> Salesforce:
    return build_sandbox_salesforce(emulator.url)


@pytest.fixture
def client(emulator: SalesforceEmulator) -> Iterator[PubSubClient]:
    pubsub = PubSubClient(open_channel(emulator.pubsub_address, plaintext=True), timeout_s=10)
    yield pubsub
    pubsub.close()


def open_deal(sf: Salesforce, stage: str = "Prospecting") -> str:
    account = sf.Account.create({"Name": "Acme"})  # type: ignore[operator]
    deal = sf.Opportunity.create(  # type: ignore[operator]
        {"AccountId": account["id"], "Name": "d", "StageName": stage, "CloseDate": "2026-11-30"}
    )
    return str(deal["id"])


def read(sub: Subscription, count: int, *, keepalives_too: bool = False) -> list[pb.FetchResponse]:
    """The responses carrying the next ``count`` events (or the next ``count`` responses of
    any kind, keepalives included, with ``keepalives_too``). Counting events, not responses:
    events published together may arrive in one response (the server sends what it has)."""
    out: list[pb.FetchResponse] = []
    seen = 0
    for response in sub.responses():
        if response.events or keepalives_too:
            out.append(response)
            seen += 1 if keepalives_too else len(response.events)
        if seen >= count:
            break
    return out


def decode(
    client: PubSubClient, creds: Credentials, responses: list[pb.FetchResponse]
) -> list[ChangeEvent]:
    cache = SchemaCache(lambda schema_id: client.get_schema(schema_id, creds))
    return [cache.decode(e.event.schema_id, e.event.payload) for r in responses for e in r.events]


def test_calls_need_a_live_session_and_the_org(
    emulator: SalesforceEmulator, sf: Salesforce, client: PubSubClient
) -> None:
    good = credentials_of(sf)
    assert client.get_topic(TOPIC, good).can_subscribe
    for bad in (
        Credentials("00DHp00000CrmSy!nope", good.instance_url, good.tenant_id),
        Credentials(good.access_token, good.instance_url, "00D000000000000AAA"),
    ):
        with pytest.raises(PubSubError) as refused:
            client.get_topic(TOPIC, bad)
        assert (refused.value.status, refused.value.code) == ("UNAUTHENTICATED", AUTH_ERROR)
    emulator.expire_sessions()
    with pytest.raises(PubSubError) as expired:
        client.get_topic(TOPIC, good)
    assert expired.value.code == AUTH_ERROR


def test_rest_writes_arrive_as_change_events_in_commit_order(
    sf: Salesforce, client: PubSubClient
) -> None:
    creds = credentials_of(sf)
    sub = client.subscribe(TOPIC, creds, replay_id=None)
    try:
        read(sub, 1, keepalives_too=True)  # the first keepalive: the stream is live (LATEST)
        deal = open_deal(sf)
        sf.Opportunity.update(deal, {"StageName": "Closed Won"})  # type: ignore[operator]
        created, updated = decode(client, creds, read(sub, 2))
    finally:
        sub.cancel()
    assert created.change_type is ChangeType.CREATE and created.values == {"IsWon": False}
    assert updated.change_type is ChangeType.UPDATE
    assert created.record_ids == updated.record_ids
    assert {"StageName", "IsWon", "IsClosed", "LastModifiedDate"} <= updated.changed_fields
    assert "Name" not in updated.changed_fields


def test_events_go_out_only_against_credit(
    emulator: SalesforceEmulator, sf: Salesforce, client: PubSubClient
) -> None:
    creds = credentials_of(sf)
    for _ in range(3):
        open_deal(sf)
    first = emulator.events.replay_id(1)
    sub = client.subscribe(TOPIC, creds, replay_id=first, credit=1)
    try:
        [one] = read(sub, 1)
        assert len(one.events) == 1 and one.pending_num_requested == 0
        # No credit left: only keepalives until we ask for more.
        [idle] = read(sub, 1, keepalives_too=True)
        assert not idle.events
        sub.request(5)
        [rest] = read(sub, 1)
        # The second and third deals' CREATEs (Account events are another topic's).
        assert len(rest.events) == 2 and rest.pending_num_requested == 3
    finally:
        sub.cancel()


def test_keepalives_carry_the_latest_replay_id_and_custom_replay_resumes_after_it(
    emulator: SalesforceEmulator, sf: Salesforce, client: PubSubClient
) -> None:
    creds = credentials_of(sf)
    open_deal(sf)  # an Account and an Opportunity event: the topic sees one of them
    sub = client.subscribe(TOPIC, creds, replay_id=None)
    try:
        [keepalive] = read(sub, 1, keepalives_too=True)
    finally:
        sub.cancel()
    assert not keepalive.events and keepalive.latest_replay_id
    later = open_deal(sf)
    resumed = client.subscribe(TOPIC, creds, replay_id=bytes(keepalive.latest_replay_id))
    try:
        [event] = decode(client, creds, read(resumed, 1))
    finally:
        resumed.cancel()
    assert event.record_ids == (sf.Opportunity.get(later)["Id"],)  # type: ignore[operator]


def test_an_expired_or_foreign_replay_id_is_refused(
    emulator: SalesforceEmulator, sf: Salesforce, client: PubSubClient
) -> None:
    creds = credentials_of(sf)
    open_deal(sf)
    kept = emulator.events.replay_id(emulator.events.latest_seq)
    emulator.expire_replay()
    for replay_id in (kept, b"\x00" * 10, b"junk"):
        sub = client.subscribe(TOPIC, creds, replay_id=replay_id)
        with pytest.raises(PubSubError) as refused:
            read(sub, 1)
        assert refused.value.code == REPLAY_CORRUPTED


def test_faults_stall_limit_and_suppression(
    emulator: SalesforceEmulator, sf: Salesforce, client: PubSubClient
) -> None:
    creds = credentials_of(sf)
    emulator.set_pubsub_faults(limit_exceeded=True)
    with pytest.raises(PubSubError) as limited:
        read(client.subscribe(TOPIC, creds, replay_id=None), 1)
    assert (limited.value.status, limited.value.code) == ("RESOURCE_EXHAUSTED", LIMIT_EXCEEDED)

    emulator.set_pubsub_faults(stall=True)
    sub = client.subscribe(TOPIC, creds, replay_id=None)
    got: list[pb.FetchResponse] = []
    reader = threading.Thread(target=lambda: got.extend(read(sub, 1, keepalives_too=True)))
    reader.start()
    reader.join(timeout=1.0)  # a stall sends nothing, not even keepalives
    assert reader.is_alive() and not got
    emulator.set_pubsub_faults()
    reader.join(timeout=30)
    assert got and not got[0].events
    sub.cancel()

    sub = client.subscribe("/data/ChangeEvents", creds, replay_id=None)
    try:
        read(sub, 1, keepalives_too=True)  # live
        emulator.suppress_events(1)
        deal = open_deal(sf)  # its Account's CREATE is suppressed; the deal's is not
        ids = [e.record_ids for e in decode(client, creds, read(sub, 1))]
    finally:
        sub.cancel()
    assert ids == [(sf.Opportunity.get(deal)["Id"],)]  # type: ignore[operator]


def test_gap_events_and_a_schema_change(
    emulator: SalesforceEmulator, sf: Salesforce, client: PubSubClient
) -> None:
    creds = credentials_of(sf)
    sub = client.subscribe(TOPIC, creds, replay_id=None)
    try:
        read(sub, 1, keepalives_too=True)  # subscribed
        old_schema = client.get_topic(TOPIC, creds).schema_id
        new_schema = emulator.evolve_schema("Opportunity", "Renewal_Term__c")
        assert new_schema != old_schema
        emulator.emit_gap("Opportunity", "GAP_UPDATE", ["006Hp00000AAAAAAAA"])
        emulator.emit_gap("Opportunity", "GAP_OVERFLOW")
        responses = read(sub, 2)
    finally:
        sub.cancel()
    gap, overflow = decode(client, creds, responses)[:2]
    assert (gap.change_type, gap.record_ids) == (ChangeType.GAP_UPDATE, ("006Hp00000AAAAAAAA",))
    assert (overflow.change_type, overflow.record_ids) == (ChangeType.GAP_OVERFLOW, ())
    assert {e.event.schema_id for r in responses for e in r.events} == {new_schema}
