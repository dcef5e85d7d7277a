"""Our thin Pub/Sub API client: one gRPC channel, three RPCs, errors by their trailer code.

Built on the stubs generated from our own ``pubsub.proto`` (``generate.py``). Every call carries
the org's credentials as metadata (``accesstoken``, ``instanceurl``, ``tenantid``, as the Pub/Sub
API documents them); the access token is any OAuth access token or session id, so every login mode
crmsync supports works here too (``auth.py``).

Production talks TLS to ``api.pubsub.salesforce.com:7443``, verified against the system's root
certificates. Plaintext is only possible to a loopback address, and only when the operator
names one (``CRMSYNC_PUBSUB_EMULATOR_ADDRESS``), exactly as the REST client reaches its emulator.

Errors. A failed RPC raises :class:`PubSubError`, whose ``code`` is the ``error-code`` trailer
Salesforce adds (``sfdc.platform.eventbus.grpc.…``) and whose ``status`` is the gRPC status:
the listener decides what to do from the trailer, because one gRPC status (INVALID_ARGUMENT)
covers both a bad topic and an expired replay id.
"""

from __future__ import annotations

import logging
import queue
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc

from worker.salesforce.events import pubsub_pb2 as pb
from worker.salesforce.events import pubsub_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

PUBSUB_ENDPOINT = "api.pubsub.salesforce.com:7443"
ERROR_CODE_TRAILER = "error-code"
_PREFIX = "sfdc.platform.eventbus.grpc."
AUTH_ERROR = _PREFIX + "service.auth.error"
REPLAY_CORRUPTED = _PREFIX + "subscription.fetch.replayid.corrupted"
LIMIT_EXCEEDED = _PREFIX + "subscription.limit.exceeded"
UNAVAILABLE = _PREFIX + "service.unavailable"
#: At most this many events may be requested (outstanding) on one stream.
MAX_CREDIT = 100
#: Events are up to 1 MB each and a response may carry many: gRPC's 4 MB default is too small.
MAX_MESSAGE_BYTES = 128 * 1024 * 1024
_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")


@dataclass(frozen=True, slots=True)
class Credentials:
    """What every call sends as metadata. The repr hides the token (it is a session)."""

    access_token: str
    instance_url: str
    tenant_id: str

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (
            ("accesstoken", self.access_token),
            ("instanceurl", self.instance_url),
            ("tenantid", self.tenant_id),
        )

    def __repr__(self) -> str:
        return f"Credentials(instance_url={self.instance_url!r}, tenant_id={self.tenant_id!r})"


class PubSubError(Exception):
    """An RPC failed. ``code``: the ``error-code`` trailer (None if absent); ``status``: the
    gRPC status name (``UNAVAILABLE``, ``CANCELLED``...)."""

    def __init__(self, status: str, code: str | None, details: str) -> None:
        super().__init__(f"{status} {code or ''}: {details}".strip())
        self.status = status
        self.code = code
        self.details = details

    @classmethod
    def from_rpc(cls, exc: grpc.RpcError) -> PubSubError:
        status = "UNKNOWN"
        details = str(exc)
        code: str | None = None
        if isinstance(exc, grpc.Call):
            status = exc.code().name if exc.code() is not None else "UNKNOWN"
            details = exc.details() or ""
            for key, value in exc.trailing_metadata() or ():
                if key == ERROR_CODE_TRAILER:
                    code = value.decode() if isinstance(value, bytes) else str(value)
        return cls(status, code, details)


def is_loopback(address: str) -> bool:
    host = address.rsplit(":", 1)[0]
    return host in _LOOPBACK_HOSTS


def open_channel(endpoint: str, *, plaintext: bool = False) -> grpc.Channel:
    """A channel to ``endpoint`` (``host:port``): TLS with system roots, or plaintext to a
    loopback emulator (refused for anything else, so a typo can never send a session id in
    clear over a network)."""
    options = [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ]
    if plaintext:
        if not is_loopback(endpoint):
            raise ValueError(f"plaintext gRPC is only allowed to a loopback address: {endpoint}")
        return grpc.insecure_channel(endpoint, options=options)
    return grpc.secure_channel(endpoint, grpc.ssl_channel_credentials(_system_roots()), options)


def _system_roots() -> bytes | None:
    """The operating system's CA bundle (None: gRPC falls back to its bundled roots)."""
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.openssl_cafile):
        if candidate and Path(candidate).is_file():
            return Path(candidate).read_bytes()
    return None


class PubSubClient:
    """The three RPCs the listener uses. Thread-safe: gRPC channels are."""

    def __init__(self, channel: grpc.Channel, *, timeout_s: float = 30.0) -> None:
        self._channel = channel
        self._stub = pb_grpc.PubSubStub(channel)
        self._timeout_s = timeout_s

    def close(self) -> None:
        self._channel.close()

    def get_topic(self, topic: str, credentials: Credentials) -> pb.TopicInfo:
        try:
            info: pb.TopicInfo = self._stub.GetTopic(
                pb.TopicRequest(topic_name=topic),
                metadata=credentials.metadata(),
                timeout=self._timeout_s,
            )
        except grpc.RpcError as exc:
            raise PubSubError.from_rpc(exc) from None
        return info

    def get_schema(self, schema_id: str, credentials: Credentials) -> str:
        try:
            info: pb.SchemaInfo = self._stub.GetSchema(
                pb.SchemaRequest(schema_id=schema_id),
                metadata=credentials.metadata(),
                timeout=self._timeout_s,
            )
        except grpc.RpcError as exc:
            raise PubSubError.from_rpc(exc) from None
        return info.schema_json

    def subscribe(
        self,
        topic: str,
        credentials: Credentials,
        *,
        replay_id: bytes | None,
        credit: int = MAX_CREDIT,
    ) -> Subscription:
        """Open a stream on ``topic``: after ``replay_id`` (CUSTOM), or from now (LATEST)."""
        first = pb.FetchRequest(
            topic_name=topic,
            replay_preset=pb.CUSTOM if replay_id else pb.LATEST,
            replay_id=replay_id or b"",
            num_requested=min(credit, MAX_CREDIT),
        )
        return Subscription(self._stub, first, credentials)


class Subscription:
    """One Subscribe stream: read :meth:`responses`, add credit with :meth:`request`.

    The request side is a queue the gRPC runtime drains from its own thread, so credit can be
    added from the reading thread *before* it works on what it just received (the server may
    then send the next events while we query Salesforce for these).
    """

    def __init__(self, stub: object, first: pb.FetchRequest, credentials: Credentials) -> None:
        self.topic = first.topic_name
        self._requests: queue.Queue[pb.FetchRequest | None] = queue.Queue()
        self._requests.put(first)
        self._closed = threading.Event()
        self._call = stub.Subscribe(  # type: ignore[attr-defined]
            self._request_stream(), metadata=credentials.metadata()
        )

    def _request_stream(self) -> Iterator[pb.FetchRequest]:
        while not self._closed.is_set():
            try:
                request = self._requests.get(timeout=1.0)
            except queue.Empty:
                continue
            if request is None:
                return
            yield request

    def request(self, count: int) -> None:
        """Ask for ``count`` more events (the caller keeps the total at most MAX_CREDIT)."""
        if count > 0 and not self._closed.is_set():
            self._requests.put(pb.FetchRequest(topic_name=self.topic, num_requested=count))

    def responses(self) -> Iterator[pb.FetchResponse]:
        """Responses until the stream ends; a failure raises :class:`PubSubError`.

        A caller that stops iterating keeps the stream (and its credit) open: it may read on
        with another call. The request side is closed only when the stream itself ended.
        """
        try:
            yield from self._call
        except grpc.RpcError as exc:
            self.close()
            raise PubSubError.from_rpc(exc) from None
        self.close()

    def cancel(self) -> None:
        """End the stream from another thread (a stall, a lost lease, shutdown)."""
        self.close()
        self._call.cancel()

    def close(self) -> None:
        if not self._closed.is_set():
            self._closed.set()
            self._requests.put(None)
