"""One topic's subscription, kept alive: subscribe, top up credit, decode, triage, hand over.

A :class:`TopicStream` is a thread. It owns nothing but its stream: every event (and every
keepalive) goes, in order, into the listener's queue as a :class:`Delivery`; the listener's
processor enqueues the syncs and only then stores the replay id. What the stream decides alone
is *where to resubscribe from* after the stream ends:

=============================================  ==============================================
the stream ended with                          resubscribe
=============================================  ==============================================
``…replayid.corrupted`` (expired, unknown id)  LATEST, and a poll at once
no stored replay id, or silent past             LATEST, and a poll at once
``CRMSYNC_LISTENER_MAX_OUTAGE_S``
``…auth.error``                                 from the stored id, after a new login (which
                                               waits while logins back off: CRMSYNC_LOGIN_
                                               BACKOFF_MAX_S, shared by every process)
``…subscription.limit.exceeded``               after ``CRMSYNC_LISTENER_LIMIT_BACKOFF_S``
                                               (the listener polls and alerts meanwhile)
a stall (no keepalive in time), unavailable,    from the stored id, with backoff for errors
any other error, a clean end
=============================================  ==============================================
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from worker.salesforce.events.auth import CannotRenew
from worker.salesforce.events.changes import MalformedEvent
from worker.salesforce.events.client import (
    AUTH_ERROR,
    LIMIT_EXCEEDED,
    MAX_CREDIT,
    REPLAY_CORRUPTED,
    Credentials,
    PubSubError,
    Subscription,
)
from worker.salesforce.events.relevance import Triage, Verdict, triage
from worker.salesforce.logins import LoginDeferred, LoginRefused

if TYPE_CHECKING:
    from worker.salesforce.events import pubsub_pb2 as pb
    from worker.salesforce.events.auth import Authenticator
    from worker.salesforce.events.client import PubSubClient
    from worker.salesforce.events.relevance import Interest
    from worker.salesforce.events.schemas import SchemaCache
    from worker.settings import Settings
    from worker.state.listener import ListenerState

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 60.0


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event or keepalive, in stream order. ``triage`` is None for a keepalive (its only
    job is to move the stored replay id forward)."""

    topic: str
    replay_id: bytes
    triage: Triage | None
    received_at: float = field(default_factory=time.time)


class StreamOwner(Protocol):
    """What a stream needs from the process that runs it (the listener, or a test's fake).

    The stream reads the owner's clients and state, and calls back three hooks, all from the
    stream's own thread: ``deliver`` (every event and keepalive, in order),
    ``forget_replay_id`` (the server refused the stored one) and ``on_limit_exceeded`` (the
    org's delivery allocation ran out). Declared here, so the stream never imports the
    listener that owns it.
    """

    @property
    def settings(self) -> Settings: ...
    @property
    def state(self) -> ListenerState: ...
    @property
    def auth(self) -> Authenticator: ...
    @property
    def client(self) -> PubSubClient: ...
    @property
    def schemas(self) -> SchemaCache: ...
    @property
    def interest(self) -> Interest: ...

    def deliver(self, delivery: Delivery) -> None: ...
    def forget_replay_id(self, topic: str) -> None: ...
    def on_limit_exceeded(self, topic: str, backoff_s: float) -> None: ...


class TopicStream(threading.Thread):
    def __init__(self, topic: str, listener: StreamOwner, halt: threading.Event) -> None:
        super().__init__(name=f"stream {topic}", daemon=True)
        self.topic = topic
        self._listener = listener
        self._halt = halt
        self._sub: Subscription | None = None
        self._sub_lock = threading.Lock()
        self._force_latest = False
        self._subscriptions = 0
        self._stalled = False
        self._credentials: Credentials | None = None
        #: monotonic time of the last response (or of the subscribe): the stall watchdog's clock.
        self.last_message = time.monotonic()
        #: while set (monotonic), the topic is backing off after the delivery allocation ran out.
        self.limited_until = 0.0

    # --- called from the listener's thread ------------------------------------------------
    def silent_for(self) -> float:
        return time.monotonic() - self.last_message if self._sub is not None else 0.0

    def restart(self, why: str) -> None:
        """Tear the stream down (it is resubscribed from the stored replay id)."""
        with self._sub_lock:
            sub = self._sub
        if sub is not None:
            log.warning("listener: %s: %s; resubscribing", self.topic, why)
            self._stalled = True
            sub.cancel()

    def stop(self) -> None:
        with self._sub_lock:
            sub = self._sub
        if sub is not None:
            sub.cancel()

    # --- the thread ----------------------------------------------------------------------
    def run(self) -> None:
        backoff = 1.0
        while not self._halt.is_set():
            started = time.monotonic()
            try:
                self._subscribe_once()
                wait = 1.0  # the server ended the stream cleanly: come back
            except PubSubError as exc:
                wait = self._after_error(exc, backoff)
            except CannotRenew as exc:
                log.error("listener: %s: %s", self.topic, exc)
                self._record(state="auth refused", last_error=str(exc)[:300])
                wait = MAX_BACKOFF_S
            except (LoginDeferred, LoginRefused) as exc:  # logins back off: wait our turn
                wait = self._login_waits(exc)
            except Exception as exc:  # Redis or Salesforce trouble while setting up
                log.warning("listener: %s: %s: %s", self.topic, type(exc).__name__, exc)
                self._record(state="retrying", last_error=f"{type(exc).__name__}: {exc}"[:300])
                wait = backoff
            finally:
                with self._sub_lock:
                    self._sub = None
            if time.monotonic() - started > 60:
                backoff = 1.0  # it ran a while: the next error starts a new backoff
            elif wait == backoff:
                backoff = min(MAX_BACKOFF_S, backoff * 2)
            self._halt.wait(wait * random.uniform(0.8, 1.2) if wait > 0 else 0)  # noqa: S311 - jitter

    def _after_error(self, exc: PubSubError, backoff: float) -> float:
        listener = self._listener
        if self._halt.is_set():
            return 0.0
        if exc.status == "CANCELLED" and self._stalled:
            self._stalled = False
            return 0.0
        self._record(last_error=str(exc)[:300])
        if exc.code == REPLAY_CORRUPTED:
            log.warning("listener: %s: replay id refused (expired or corrupted)", self.topic)
            listener.forget_replay_id(self.topic)
            self._force_latest = True
            return 0.0
        if exc.code == AUTH_ERROR:
            log.info("listener: %s: session refused; logging in again", self.topic)
            try:
                if self._credentials is not None:
                    listener.auth.renew(self._credentials)
            except CannotRenew as renew_error:
                log.error("listener: %s: %s", self.topic, renew_error)
                self._record(state="auth refused", last_error=str(renew_error)[:300])
                return MAX_BACKOFF_S
            except (LoginDeferred, LoginRefused) as login_error:
                return self._login_waits(login_error)
            except Exception as login_error:  # the login itself failed: try again later
                log.warning("listener: %s: login failed: %s", self.topic, login_error)
                return backoff
            return 0.0
        if exc.code == LIMIT_EXCEEDED:
            wait = listener.settings.listener_limit_backoff_s
            self.limited_until = time.monotonic() + wait
            self._record(state="delivery allocation exhausted: polling only")
            listener.on_limit_exceeded(self.topic, wait)
            return wait
        log.warning(
            "listener: %s: stream failed (%s); retrying in ~%.0fs", self.topic, exc, backoff
        )
        self._record(state="retrying")
        return backoff

    def _login_waits(self, exc: LoginDeferred | LoginRefused) -> float:
        """Salesforce keeps refusing: resubscribe only once a login may be tried again."""
        log.warning("listener: %s: %s", self.topic, exc)
        self._record(state="login refused", last_error=str(exc)[:300])
        return max(1.0, exc.wait_s * 1.25 + 0.1)  # run() jitters by ±20 %: wake after the turn

    def _record(self, **fields: str | int | float) -> None:
        try:
            self._listener.state.record(self.topic, **fields)
        except Exception as exc:  # stats only: never let Redis trouble kill the stream
            log.debug("listener stats not written: %s", exc)

    def _subscribe_once(self) -> None:
        listener = self._listener
        state = listener.state
        self.limited_until = 0.0
        replay_id = None if self._force_latest else state.replay_id(self.topic)
        poll_reason: str | None = None
        if self._force_latest:
            poll_reason = "the stored replay id was refused (expired or corrupted)"
        elif replay_id is None:
            poll_reason = "no stored replay id"
        else:
            last = state.last_contact(self.topic)
            outage = time.time() - last if last is not None else None
            if outage is None or outage > listener.settings.listener_max_outage_s:
                poll_reason = "silent for longer than CRMSYNC_LISTENER_MAX_OUTAGE_S"
                replay_id = None
        credentials = self._credentials = listener.auth.current()
        sub = listener.client.subscribe(self.topic, credentials, replay_id=replay_id)
        with self._sub_lock:
            self._sub = sub
        self._force_latest = False
        self._subscriptions += 1
        if self._subscriptions > 1:
            state.count(self.topic, "reconnects")
        self.last_message = time.monotonic()
        self._record(
            state="subscribed",
            subscribed_at=f"{time.time():.3f}",
            subscribed_from="CUSTOM" if replay_id else "LATEST",
        )
        log.info(
            "listener: subscribed to %s from %s",
            self.topic,
            "the stored replay id" if replay_id else "LATEST",
        )
        if poll_reason is not None:
            # After the subscription was requested: the poll's overlap window covers anything
            # committed before the stream went live. Through the queue, so the topics that
            # start together ask for one poll, not one each.
            listener.deliver(
                Delivery(self.topic, b"", Triage(Verdict.POLL, why=f"{self.topic}: {poll_reason}"))
            )
        self._read(sub)

    def _read(self, sub: Subscription) -> None:
        outstanding = MAX_CREDIT
        accepted = False
        for response in sub.responses():
            self.last_message = time.monotonic()
            if not accepted:  # the server took the session: the login refusals are over
                accepted = True
                self._listener.auth.accepted()
            received = time.time()
            events = list(response.events)
            # Credit first: the server may send the next events while these are worked on.
            outstanding = max(0, outstanding - len(events))
            sub.request(MAX_CREDIT - outstanding)
            outstanding = MAX_CREDIT
            if not events:
                if response.latest_replay_id:
                    self._listener.deliver(
                        Delivery(self.topic, bytes(response.latest_replay_id), None, received)
                    )
                self._record(last_keepalive_at=f"{received:.3f}")
                continue
            self._handle_events(events, received)

    def _handle_events(self, events: list[pb.ConsumerEvent], received: float) -> None:
        listener = self._listener
        newest_commit_ms = 0
        for consumer_event in events:
            try:
                change = listener.schemas.decode(
                    consumer_event.event.schema_id, consumer_event.event.payload
                )
                verdict = triage(change, listener.interest)
                newest_commit_ms = max(newest_commit_ms, change.commit_timestamp_ms)
            except MalformedEvent as exc:
                # We cannot tell what changed: let the poll find it rather than drop it.
                log.warning("listener: %s: undecodable event: %s", self.topic, exc)
                verdict = Triage(Verdict.POLL, why="an event that could not be decoded")
            listener.deliver(
                Delivery(self.topic, bytes(consumer_event.replay_id), verdict, received)
            )
        fields: dict[str, str | int | float] = {"last_event_at": f"{received:.3f}"}
        if newest_commit_ms:
            fields["last_lag_s"] = round(max(0.0, received - newest_commit_ms / 1000), 3)
            fields["last_commit_at"] = f"{newest_commit_ms / 1000:.3f}"
        self._record(**fields)
        try:
            listener.state.count(self.topic, "events", len(events))
        except Exception as exc:
            log.debug("listener stats not written: %s", exc)
