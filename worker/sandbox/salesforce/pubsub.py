"""The emulated org's Pub/Sub API: ``eventbus.v1.PubSub`` over plaintext gRPC on 127.0.0.1.

Served from the same org as the REST emulator: the change events come from its record store
(``change_events.py``) and a call is authenticated against its sessions. What a subscriber
meets is what Salesforce documents for the Pub/Sub API and Change Data Capture:

* metadata ``accesstoken`` (a live session), ``instanceurl`` and ``tenantid`` (the org id) on
  every call, else ``UNAUTHENTICATED`` with trailer ``error-code: …service.auth.error``; a
  stream whose session expires meanwhile ends the same way;
* ``Subscribe``: the first FetchRequest names the topic and where to start (LATEST, EARLIEST,
  CUSTOM after a replay id); an unknown or expired replay id ends the stream with
  ``…subscription.fetch.replayid.corrupted``; events are sent only against credit
  (``num_requested``, at most 100 outstanding); with nothing to send, an empty FetchResponse
  carrying ``latest_replay_id`` goes out every ``keepalive_s`` (270 s by default);
* topics ``/data/<Object>ChangeEvent``, ``/data/ChangeEvents`` and custom channels
  (``add_channel``: ``/data/Name__chn`` with a member filter such as ``{"IsWon": True}``).

Faults (:class:`PubSubFaults`, flipped through the emulator or ``/_sandbox/pubsub/faults``):
the next calls ``unavailable``, open streams broken, a silent ``stall`` (no events, no
keepalives), ``limit_exceeded`` (the delivery allocation), a ``delivery_delay_s``, every event
sent twice (``duplicate``), and the next N changes ``suppress``-ed (committed, but no event:
the poll must find them).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent import futures
from dataclasses import dataclass, field, replace
from typing import Any

import grpc

from worker.salesforce.events import pubsub_pb2 as pb
from worker.salesforce.events import pubsub_pb2_grpc as pb_grpc
from worker.salesforce.events.client import (
    AUTH_ERROR,
    ERROR_CODE_TRAILER,
    LIMIT_EXCEEDED,
    MAX_CREDIT,
    REPLAY_CORRUPTED,
    UNAVAILABLE,
)
from worker.sandbox.salesforce.auth import INSTANCE_URL, ORG_ID
from worker.sandbox.salesforce.change_events import BusEvent, ChangeEventEncoder, EventBus

log = logging.getLogger(__name__)

#: Salesforce sends a keepalive at least every 270 s when there is nothing to deliver.
KEEPALIVE_S = 270.0
#: A stream with no credit left and no new request for this long is closed by the server.
IDLE_CREDIT_CLOSE_S = 60.0
TOPIC_NOT_FOUND = "sfdc.platform.eventbus.grpc.service.topic.not.found"


@dataclass(frozen=True, slots=True)
class PubSubFaults:
    #: The next this-many RPCs (any kind) fail with UNAVAILABLE.
    unavailable_calls: int = 0
    #: Streams send nothing at all (no events, no keepalives) while set.
    stall: bool = False
    #: The org's delivery allocation is used up: streams end, subscribes fail.
    limit_exceeded: bool = False
    #: Each event becomes deliverable this long after its commit.
    delivery_delay_s: float = 0.0
    #: The next this-many changes emit no event at all.
    suppress: int = 0
    #: Every event is sent twice (same replay id): at-least-once delivery seen from outside.
    duplicate: bool = False


@dataclass(slots=True)
class Channel:
    entities: frozenset[str]
    #: Field -> value the record must have after the change (a custom channel's filter).
    where: Mapping[str, Any] = field(default_factory=dict)

    def accepts(self, event: BusEvent) -> bool:
        if event.entity not in self.entities:
            return False
        return all(event.record.get(k) == v for k, v in self.where.items())


class _Abort(Exception):
    def __init__(self, status: grpc.StatusCode, code: str, details: str) -> None:
        super().__init__(details)
        self.status = status
        self.code = code
        self.details = details


class PubSubService(pb_grpc.PubSubServicer):  # type: ignore[misc]
    """The servicer. ``session_valid`` checks an access token against the REST emulator's
    sessions (on its loop thread)."""

    def __init__(
        self,
        bus: EventBus,
        encoder: ChangeEventEncoder,
        session_valid: Callable[[str], bool],
        *,
        keepalive_s: float = KEEPALIVE_S,
    ) -> None:
        self.bus = bus
        self.encoder = encoder
        self.session_valid = session_valid
        self.keepalive_s = keepalive_s
        self.channels: dict[str, Channel] = {
            "/data/OpportunityChangeEvent": Channel(frozenset({"Opportunity"})),
            "/data/AccountChangeEvent": Channel(frozenset({"Account"})),
            "/data/ChangeEvents": Channel(frozenset({"Account", "Opportunity"})),
        }
        self._faults = PubSubFaults()
        self._lock = threading.Lock()
        #: Bumped to break every open stream (UNAVAILABLE).
        self._generation = 0
        self.counts: dict[str, int] = {}
        self.open_streams = 0

    # --- faults ----------------------------------------------------------------------------
    @property
    def faults(self) -> PubSubFaults:
        with self._lock:
            return self._faults

    def set_faults(self, faults: PubSubFaults) -> None:
        with self._lock:
            self._faults = faults
        with self.bus.changed:
            self.bus.changed.notify_all()

    def take_suppression(self) -> bool:
        """True when the next change must emit no event (and uses one suppression up)."""
        with self._lock:
            if self._faults.suppress <= 0:
                return False
            self._faults = replace(self._faults, suppress=self._faults.suppress - 1)
            return True

    def break_streams(self) -> None:
        with self._lock:
            self._generation += 1
        with self.bus.changed:
            self.bus.changed.notify_all()

    def _count(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self.counts[name] = self.counts.get(name, 0) + amount

    # --- checks ----------------------------------------------------------------------------
    def _authenticate(self, context: grpc.ServicerContext) -> str:
        metadata = {key: value for key, value in context.invocation_metadata()}
        token = str(metadata.get("accesstoken", ""))
        with self._lock:
            if self._faults.unavailable_calls > 0:
                self._faults = replace(
                    self._faults, unavailable_calls=self._faults.unavailable_calls - 1
                )
                raise _Abort(grpc.StatusCode.UNAVAILABLE, UNAVAILABLE, "Injected: unavailable")
        tenant = str(metadata.get("tenantid", ""))
        if (
            not token
            or metadata.get("instanceurl") != INSTANCE_URL
            or tenant[:15] != ORG_ID[:15]
            or not self.session_valid(token)
        ):
            raise _Abort(grpc.StatusCode.UNAUTHENTICATED, AUTH_ERROR, "Invalid credentials")
        return token

    @staticmethod
    def _fail(context: grpc.ServicerContext, abort: _Abort) -> None:
        rpc_id = str(uuid.uuid4())
        context.set_trailing_metadata(((ERROR_CODE_TRAILER, abort.code), ("rpc-id", rpc_id)))
        context.abort(abort.status, f"{abort.details} rpcId: {rpc_id}")

    # --- RPCs ------------------------------------------------------------------------------
    def GetTopic(self, request: pb.TopicRequest, context: grpc.ServicerContext) -> pb.TopicInfo:
        self._count("GetTopic")
        try:
            self._authenticate(context)
            channel = self.channels.get(request.topic_name)
            if channel is None:
                raise _Abort(grpc.StatusCode.NOT_FOUND, TOPIC_NOT_FOUND, "Topic not found")
        except _Abort as abort:
            self._fail(context, abort)
            raise  # unreachable: abort raises
        entity = sorted(channel.entities)[0]
        return pb.TopicInfo(
            topic_name=request.topic_name,
            tenant_guid=ORG_ID,
            can_publish=False,
            can_subscribe=True,
            schema_id=self.encoder.current(entity).schema_id,
            rpc_id=str(uuid.uuid4()),
        )

    def GetSchema(self, request: pb.SchemaRequest, context: grpc.ServicerContext) -> pb.SchemaInfo:
        self._count("GetSchema")
        try:
            self._authenticate(context)
            schema = self.encoder.schema(request.schema_id)
            if schema is None:
                raise _Abort(grpc.StatusCode.NOT_FOUND, TOPIC_NOT_FOUND, "Schema not found")
        except _Abort as abort:
            self._fail(context, abort)
            raise
        return pb.SchemaInfo(
            schema_json=json.dumps(schema.raw),
            schema_id=schema.schema_id,
            rpc_id=str(uuid.uuid4()),
        )

    def Subscribe(
        self, request_iterator: Iterator[pb.FetchRequest], context: grpc.ServicerContext
    ) -> Iterator[pb.FetchResponse]:
        self._count("Subscribe")
        with self._lock:
            self.open_streams += 1
        try:
            yield from self._stream(request_iterator, context)
        except _Abort as abort:
            self._fail(context, abort)
        finally:
            with self._lock:
                self.open_streams -= 1

    def _stream(
        self, requests: Iterator[pb.FetchRequest], context: grpc.ServicerContext
    ) -> Iterator[pb.FetchResponse]:
        token = self._authenticate(context)
        first = next(requests, None)
        if first is None:
            return
        channel = self.channels.get(first.topic_name)
        if channel is None:
            raise _Abort(grpc.StatusCode.NOT_FOUND, TOPIC_NOT_FOUND, "Topic not found")
        if self.faults.limit_exceeded:
            raise _Abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED, LIMIT_EXCEEDED, "Delivery allocation exceeded"
            )
        position = self._start(first)
        credit = [min(MAX_CREDIT, max(0, first.num_requested))]
        credit_at = [time.monotonic()]
        credit_lock = threading.Lock()

        def read_requests() -> None:
            try:
                for request in requests:
                    with credit_lock:
                        credit[0] = min(MAX_CREDIT, credit[0] + max(0, request.num_requested))
                        credit_at[0] = time.monotonic()
                    with self.bus.changed:
                        self.bus.changed.notify_all()
            except Exception:  # the client went away
                return

        threading.Thread(target=read_requests, name="pubsub-requests", daemon=True).start()
        with self._lock:
            generation = self._generation
        last_sent = time.monotonic()
        last_auth_check = time.monotonic()
        while context.is_active():
            faults = self.faults
            with self._lock:
                broken = self._generation != generation
            if broken:
                raise _Abort(grpc.StatusCode.UNAVAILABLE, UNAVAILABLE, "Injected: stream broken")
            if faults.limit_exceeded:
                raise _Abort(
                    grpc.StatusCode.RESOURCE_EXHAUSTED, LIMIT_EXCEEDED, "Delivery allocation used"
                )
            now = time.monotonic()
            if now - last_auth_check >= 0.5:
                last_auth_check = now
                if not self.session_valid(token):
                    raise _Abort(grpc.StatusCode.UNAUTHENTICATED, AUTH_ERROR, "Session expired")
            if faults.stall:
                self._wait(0.1)
                last_sent = time.monotonic()  # a stall also sends no keepalive
                continue
            with credit_lock:
                available = credit[0]
                idle_since = credit_at[0]
            events, through = self.bus.after(position, channel.accepts, max(available, 1))
            if events and available > 0:
                with credit_lock:
                    credit[0] -= len(events)
                    pending = credit[0]
                position = events[-1].seq
                self._count("events_delivered", len(events))
                last_sent = time.monotonic()
                consumer_events = [self._consumer_event(e) for e in events]
                if faults.duplicate:
                    consumer_events += consumer_events
                yield pb.FetchResponse(
                    events=consumer_events,
                    latest_replay_id=self.bus.replay_id(position),
                    rpc_id=str(uuid.uuid4()),
                    pending_num_requested=pending,
                )
                continue
            if events and now - idle_since > IDLE_CREDIT_CLOSE_S:
                return  # events waiting, no credit asked for a minute: the server hangs up
            if not events:
                position = max(position, through)
            if now - last_sent >= self.keepalive_s:
                last_sent = now
                self._count("keepalives")
                with credit_lock:
                    pending = credit[0]
                yield pb.FetchResponse(
                    latest_replay_id=self.bus.replay_id(position),
                    rpc_id=str(uuid.uuid4()),
                    pending_num_requested=pending,
                )
                continue
            self._wait(min(0.25, max(0.01, self.keepalive_s - (now - last_sent))))

    def _wait(self, seconds: float) -> None:
        with self.bus.changed:
            self.bus.changed.wait(seconds)

    def _start(self, first: pb.FetchRequest) -> int:
        if first.replay_preset == pb.EARLIEST:
            return self.bus.earliest_seq
        if first.replay_preset == pb.CUSTOM:
            seq = self.bus.seq_of(bytes(first.replay_id))
            if seq is None:
                raise _Abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    REPLAY_CORRUPTED,
                    "The Replay ID validation failed: it is invalid or outside the retention "
                    "window",
                )
            return seq
        return self.bus.latest_seq

    def _consumer_event(self, event: BusEvent) -> pb.ConsumerEvent:
        return pb.ConsumerEvent(
            event=pb.ProducerEvent(
                id=event.event_id, schema_id=event.schema_id, payload=event.payload
            ),
            replay_id=self.bus.replay_id(event.seq),
        )


class PubSubServer:
    """A gRPC server for :class:`PubSubService` on a loopback port (0: any free one)."""

    def __init__(self, service: PubSubService, host: str = "127.0.0.1", port: int = 0) -> None:
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("the Pub/Sub emulator serves plaintext gRPC on loopback only")
        self.service = service
        self._host = host
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=32, thread_name_prefix="pubsub"),
            options=[("grpc.so_reuseport", 0)],
        )
        pb_grpc.add_PubSubServicer_to_server(service, self._server)
        self.port = self._server.add_insecure_port(f"{host}:{port}")
        if self.port == 0:
            raise OSError(f"cannot bind the Pub/Sub emulator to {host}:{port}")

    @property
    def address(self) -> str:
        return f"{self._host}:{self.port}"

    def start(self) -> PubSubServer:
        self._server.start()
        return self

    def stop(self) -> None:
        self.service.break_streams()
        self._server.stop(grace=1).wait(5)
