"""``crmsync listen``: change events in, syncs out, one active listener per org.

Threads of one listener process (never a Celery child: grpcio does not survive ``fork``):

* the **main thread** holds the Redis lease (``state.py``): it waits while another listener
  holds it, renews it while active, and stops everything the moment it is lost. It also
  watches the streams: one silent past CRMSYNC_LISTENER_KEEPALIVE_TIMEOUT_S is torn down and
  resubscribed, and while the delivery allocation is exhausted it asks for a poll every
  CRMSYNC_POLL_INTERVAL_S (polling only);
* one **stream thread per topic** (``stream.py``) puts every event and keepalive, in order,
  into one queue;
* the **processor thread** takes what arrived within CRMSYNC_LISTENER_COALESCE_S, drops what
  cannot change a customer (``relevance.py`` and the won/known sets in Redis), reads the rest
  from Salesforce in one query and enqueues the syncs (``dispatch.py``), and only then stores
  each topic's newest replay id. A crash between the two replays those events on restart:
  their syncs run again and stop at the dedupe hash (no Metronome call, no duplicate).
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import threading
import time
from typing import TYPE_CHECKING

from worker.listener.dispatch import Dispatcher
from worker.listener.stream import Delivery, TopicStream
from worker.salesforce.events.auth import Authenticator
from worker.salesforce.events.client import PubSubClient, PubSubError, open_channel
from worker.salesforce.events.relevance import Interest, Verdict
from worker.salesforce.events.schemas import SchemaCache
from worker.salesforce.trouble import diagnose
from worker.state.listener import ListenerLease, ListenerState

if TYPE_CHECKING:
    from worker.context import WorkerContext
    from worker.settings import Settings
    from worker.telemetry.alerts import WebhookSender

log = logging.getLogger(__name__)

#: At most this many deliveries are handled as one burst (one query per 200 ids of a kind).
MAX_BURST = 1_000
MAX_RETRY_WAIT_S = 30.0
LIMIT_ALERT_REPEAT_S = 3_600


def pubsub_channel_for(settings: Settings) -> PubSubClient:
    if settings.pubsub_emulator_address:
        return PubSubClient(open_channel(settings.pubsub_emulator_address, plaintext=True))
    return PubSubClient(open_channel(settings.pubsub_endpoint))


class Listener:
    def __init__(
        self,
        ctx: WorkerContext,
        state: ListenerState,
        *,
        client: PubSubClient | None = None,
        auth: Authenticator | None = None,
        dispatcher: Dispatcher | None = None,
        alerts: WebhookSender | None = None,
    ) -> None:
        from worker.context import build_source

        self.ctx = ctx
        self.settings = ctx.settings
        self.state = state
        self.topics = self.settings.listener_topic_list
        self.client = client or pubsub_channel_for(self.settings)
        self.auth = auth or Authenticator(
            lambda: build_source(self.settings, ctx.mapping, ctx.login_gate).sf,
            self.settings.salesforce_org_id,
            gate=ctx.login_gate,
        )
        self.dispatcher = dispatcher or Dispatcher(ctx)
        self.interest = Interest.from_mapping(ctx.mapping)
        self.schemas = SchemaCache(
            lambda schema_id: self.client.get_schema(schema_id, self.auth.current())
        )
        self._alerts = alerts
        self._queue: queue.Queue[Delivery] = queue.Queue()
        self._stopping = threading.Event()
        self._halt = threading.Event()
        self._lost = threading.Event()
        self._lease: ListenerLease | None = None
        self._streams: list[TopicStream] = []
        self._last_fallback_poll = 0.0
        self.active = threading.Event()

    # --- lifecycle -----------------------------------------------------------------------
    def stop(self) -> None:
        self._stopping.set()
        self._halt.set()

    def run(self) -> None:
        """Wait for the lease, work while holding it, wait again if it is lost; until stop()."""
        lease_s = self.settings.listener_lease_s
        announced = False
        while not self._stopping.is_set():
            try:
                lease = self.state.try_acquire(lease_s)
            except Exception as exc:
                log.warning("listener: Redis unavailable (%s); retrying", type(exc).__name__)
                self._stopping.wait(lease_s / 3)
                continue
            if lease is None:
                if not announced:
                    log.info("listener: another listener is active; standing by")
                    announced = True
                self._stopping.wait(min(1.0, lease_s / 3))
                continue
            announced = False
            log.info("listener: active (fencing number %d)", lease.fence)
            try:
                self._run_active(lease)
            finally:
                self.active.clear()
                try:
                    self.state.release(lease)
                except Exception as exc:
                    log.warning("listener: lease not released (%s)", type(exc).__name__)
        self.client.close()

    def _run_active(self, lease: ListenerLease) -> None:
        self._lease = lease
        self._halt = halt = threading.Event()
        self._lost.clear()
        if self._stopping.is_set():
            halt.set()
        self._queue = queue.Queue()
        processor = threading.Thread(
            target=self._process, args=(halt,), name="processor", daemon=True
        )
        self._streams = [TopicStream(topic, self, halt) for topic in self.topics]
        processor.start()
        for stream in self._streams:
            stream.start()
        self.active.set()
        lease_s = self.settings.listener_lease_s
        renewed = time.monotonic()
        try:
            while not (halt.is_set() or self._lost.is_set() or self._stopping.is_set()):
                try:
                    if not self.state.renew(lease, lease_s):
                        log.warning("listener: lease lost; standing by")
                        break
                    renewed = time.monotonic()
                except Exception as exc:
                    if time.monotonic() - renewed > lease_s:
                        log.warning("listener: lease not renewable (%s); standing by", exc)
                        break
                self._watch_streams()
                halt.wait(min(1.0, lease_s / 3))
        finally:
            halt.set()
            for stream in self._streams:
                stream.stop()
            for stream in self._streams:
                stream.join(timeout=10)
            processor.join(timeout=MAX_RETRY_WAIT_S + 10)
            self._streams = []

    def _watch_streams(self) -> None:
        timeout = self.settings.listener_keepalive_timeout_s
        now = time.monotonic()
        limited = False
        for stream in self._streams:
            silent = stream.silent_for()
            if silent > timeout:
                stream.restart(f"no event or keepalive for {silent:.0f}s")
            if stream.limited_until > now:
                limited = True
        if limited and now - self._last_fallback_poll >= self.settings.poll_interval_s:
            self.request_poll("delivery allocation exhausted: polling only")

    # --- called by the stream threads --------------------------------------------------------
    def deliver(self, delivery: Delivery) -> None:
        self._queue.put(delivery)

    def forget_replay_id(self, topic: str) -> None:
        if self._lease is not None:
            self.state.forget_replay_id(self._lease, topic)

    def request_poll(self, why: str) -> None:
        self._last_fallback_poll = time.monotonic()
        try:
            self.dispatcher.poll_now(why)
        except Exception as exc:  # the beat's polls still run: log and go on
            log.warning("listener: could not request a poll (%s): %s", why, exc)

    def on_limit_exceeded(self, topic: str, backoff_s: float) -> None:
        log.error(
            "listener: %s: the org's daily event delivery allocation is exhausted; polling "
            "only, resubscribing in %.0fs",
            topic,
            backoff_s,
        )
        self.request_poll("delivery allocation exhausted")
        if self._alerts is None:
            return
        from worker.telemetry.alerts import claim

        store = self.ctx.store
        if claim(store.client, store.keys.prefix, "listener-limit", LIMIT_ALERT_REPEAT_S):
            self._alerts.send(
                {
                    "service": "crmsync",
                    "event": "listener_limit_exceeded",
                    "topic": topic,
                    "resubscribe_in_s": backoff_s,
                    "action": "polls carry the sync meanwhile; check the org's event delivery "
                    "allocation (Setup → Platform Event Usage) and other subscribers",
                }
            )

    # --- the processor thread ------------------------------------------------------------------
    def _process(self, halt: threading.Event) -> None:
        coalesce = self.settings.listener_coalesce_s
        while not halt.is_set():
            try:
                first = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            burst = [first]
            deadline = time.monotonic() + (coalesce if first.triage is not None else 0.0)
            while len(burst) < MAX_BURST:
                remaining = deadline - time.monotonic()
                try:
                    burst.append(
                        self._queue.get(timeout=remaining)
                        if remaining > 0
                        else self._queue.get_nowait()
                    )
                except queue.Empty:
                    break
            if not self._handle(burst, halt):
                return

    def _handle(self, burst: list[Delivery], halt: threading.Event) -> bool:
        """Enqueue what the burst needs, then store its replay ids. False: stop (halted or
        fenced out) without storing anything."""
        opportunities: list[str] = []
        accounts: list[str] = []
        maybe_opportunities: list[str] = []
        maybe_accounts: list[str] = []
        polls: list[str] = []
        for delivery in burst:
            verdict = delivery.triage
            if verdict is None:
                continue
            if verdict.verdict is Verdict.POLL:
                polls.append(verdict.why)
            elif verdict.verdict is Verdict.OPPORTUNITY:
                (maybe_opportunities if verdict.if_known else opportunities).extend(verdict.ids)
            elif verdict.verdict is Verdict.ACCOUNT:
                (maybe_accounts if verdict.if_known else accounts).extend(verdict.ids)
        wait = 1.0
        while True:
            try:
                known_opps = self.state.known_won(maybe_opportunities)
                known_accounts = self.state.known_accounts(maybe_accounts)
                wanted_opps = [*opportunities, *(i for i in maybe_opportunities if i in known_opps)]
                wanted_accounts = [*accounts, *(i for i in maybe_accounts if i in known_accounts)]
                if wanted_opps or wanted_accounts:
                    result = self.dispatcher.sync(wanted_opps, wanted_accounts)
                    log.info(
                        "listener: %d event(s) -> %d account(s) enqueued (%d query)",
                        len(burst),
                        result.accounts,
                        result.salesforce_queries,
                    )
                if polls:  # one poll covers every reason in the burst
                    self.dispatcher.poll_now("; ".join(dict.fromkeys(polls)))
                break
            except Exception as exc:  # Salesforce or Redis trouble: keep the events, retry
                trouble = diagnose(exc)
                log.warning(
                    "listener: enqueue failed (%s); retrying in %.0fs",
                    trouble.line if trouble else f"{type(exc).__name__}: {str(exc)[:300]}",
                    wait,
                )
                if halt.wait(wait):
                    return False
                wait = min(MAX_RETRY_WAIT_S, wait * 2)
        if self.settings.listener_crash_after_enqueue and (opportunities or accounts):
            log.warning("listener: CRMSYNC_LISTENER_CRASH_AFTER_ENQUEUE: killing myself now")
            os.kill(os.getpid(), signal.SIGKILL)
        newest: dict[str, bytes] = {}
        skipped: dict[str, int] = {}
        for delivery in burst:
            if delivery.replay_id:
                newest[delivery.topic] = delivery.replay_id
            if delivery.triage is not None and delivery.triage.verdict is Verdict.SKIP:
                skipped[delivery.topic] = skipped.get(delivery.topic, 0) + 1
        lease = self._lease
        if lease is None or not self._store_replay_ids(lease, newest, halt):
            return False
        try:
            for topic, count in skipped.items():
                self.state.count(topic, "skipped", count)
        except Exception as exc:  # stats only
            log.debug("listener stats not written: %s", exc)
        return True

    def _store_replay_ids(
        self, lease: ListenerLease, newest: dict[str, bytes], halt: threading.Event
    ) -> bool:
        wait = 1.0
        while True:
            try:
                if self.state.store_replay_ids(lease, newest):
                    return True
                log.warning("listener: fenced out (another listener holds the lease)")
                self._lost.set()
                return False
            except Exception as exc:
                log.warning("listener: replay id not stored (%s); retrying", type(exc).__name__)
                if halt.wait(wait):
                    return False
                wait = min(MAX_RETRY_WAIT_S, wait * 2)


def check_topics(client: PubSubClient, auth: Authenticator, topics: list[str]) -> list[str]:
    """Problems with the topics (empty: every one can be subscribed), via GetTopic."""
    problems = []
    for topic in topics:
        try:
            info = client.get_topic(topic, auth.current())
        except PubSubError as exc:
            problems.append(f"{topic}: {exc}")
            continue
        if not info.can_subscribe:
            problems.append(f"{topic}: this user cannot subscribe (View All on the object?)")
    return problems
