"""The Salesforce emulator: a local org that simple-salesforce talks to over real HTTP.

State lives on the HTTP server's event-loop thread; every public method below hops onto that
thread (``HttpServer.call_in_loop``), so a test can write records or flip faults while a
client is mid-query without locks. The same controls are served under ``/_sandbox/`` for
processes that only have the URL (``crmsync sandbox``, the benchmark, the chaos runner).

With ``pubsub_port`` set, the org also serves the Pub/Sub API (``pubsub.py``): every change
the store commits, through REST or the methods below, becomes a change event on its bus.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, Self

from worker.sandbox.httpserver import Request, Response
from worker.sandbox.salesforce.app import SalesforceApp, SalesforceFaults
from worker.sandbox.salesforce.auth import INSTANCE_URL, SandboxCredentials
from worker.sandbox.salesforce.change_events import RETENTION_S, ChangeEventEncoder, EventBus
from worker.sandbox.salesforce.pubsub import (
    KEEPALIVE_S,
    Channel,
    PubSubFaults,
    PubSubServer,
    PubSubService,
)
from worker.sandbox.salesforce.schema import ACCOUNT, OPPORTUNITY
from worker.sandbox.salesforce.seed import seed_store
from worker.sandbox.salesforce.store import Record, RecordStore, StoreError
from worker.sandbox.served import ServedEmulator


class SalesforceEmulator(ServedEmulator):
    def __init__(
        self,
        credentials: SandboxCredentials | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        daily_quota: int = 1_000_000,
        session_ttl_s: float | None = None,
        faults: SalesforceFaults | None = None,
        stages: Mapping[str, tuple[bool, bool]] | None = None,
        pubsub_port: int | None = None,
        pubsub_keepalive_s: float = KEEPALIVE_S,
        event_retention_s: float = RETENTION_S,
    ) -> None:
        self.credentials = credentials or SandboxCredentials()
        store = RecordStore(stages)
        self._app = SalesforceApp(
            self.credentials,
            daily_quota=daily_quota,
            session_ttl_s=session_ttl_s,
            faults=faults,
            store=store,
        )
        super().__init__(self._handle, host, port)
        self._encoder = ChangeEventEncoder([ACCOUNT, OPPORTUNITY])
        self.events = EventBus(event_retention_s)
        self.pubsub = PubSubService(
            self.events,
            self._encoder,
            lambda token: self._on_loop(lambda: self._app.sessions.valid(token)),
            keepalive_s=pubsub_keepalive_s,
        )
        store.on_change = self._on_change
        self._pubsub_host = host
        self._pubsub_port = pubsub_port
        self._pubsub_server: PubSubServer | None = None

    # -- lifecycle (start, stop, wait, url, port: ServedEmulator) --------------------------
    def start(self) -> Self:
        super().start()
        if self._pubsub_port is not None:
            server = PubSubServer(self.pubsub, self._pubsub_host, self._pubsub_port)
            self._pubsub_server = server.start()
        return self

    def stop(self) -> None:
        if self._pubsub_server is not None:
            self._pubsub_server.stop()
            self._pubsub_server = None
        super().stop()

    @property
    def serves_pubsub(self) -> bool:
        return self._pubsub_server is not None

    @property
    def pubsub_address(self) -> str:
        """``127.0.0.1:PORT`` of the Pub/Sub API (``CRMSYNC_PUBSUB_EMULATOR_ADDRESS``)."""
        if self._pubsub_server is None:
            raise RuntimeError("the Pub/Sub API is not served (pass pubsub_port)")
        return self._pubsub_server.address

    @property
    def instance_url(self) -> str:
        """The https instance URL login answers carry (the transport maps it to ``url``)."""
        return INSTANCE_URL

    def seed(self, n_accounts: int, seed: int = 0, won_fraction: float = 1.0) -> None:
        """Seed records as history: they were written before anyone subscribed (no events)."""
        self._on_loop(lambda: self._seed_quietly(n_accounts, seed, won_fraction))

    def _seed_quietly(self, n_accounts: int, seed: int, won_fraction: float) -> None:
        store = self._app.store
        store.on_change = None
        try:
            seed_store(store, n_accounts, seed, won_fraction)
        finally:
            store.on_change = self._on_change

    def insert(
        self, sobject: str, fields: Mapping[str, Any], *, late_commit_at: datetime | None = None
    ) -> str:
        """Create a record; ``late_commit_at`` back-dates its stamp (see store docstring)."""
        return self._on_loop(
            lambda: self._app.store.insert(sobject, fields, late_commit_at=late_commit_at)
        )

    def update(
        self,
        sobject: str,
        record_id: str,
        fields: Mapping[str, Any],
        *,
        late_commit_at: datetime | None = None,
    ) -> None:
        self._on_loop(
            lambda: self._app.store.update(
                sobject, record_id, fields, late_commit_at=late_commit_at
            )
        )

    def delete(self, sobject: str, record_id: str) -> None:
        self._on_loop(lambda: self._app.store.delete(sobject, record_id))

    def get(self, sobject: str, record_id: str) -> dict[str, Any]:
        """A copy of the stored record (datetimes as ``datetime``), deleted ones included."""

        def read() -> dict[str, Any]:
            record = self._app.store.get(sobject, record_id)
            return {key: value for key, value in record.items() if key != "attributes_type"}

        return self._on_loop(read)

    def ids(self, sobject: str) -> list[str]:
        """Ids of every record of ``sobject`` in insertion order (deleted ones included)."""
        return self._on_loop(lambda: list(self._app.store.tables[sobject]))

    def merge_accounts(self, master_id: str, loser_id: str) -> None:
        self._on_loop(lambda: self._app.store.merge_accounts(master_id, loser_id))

    def undelete(self, sobject: str, record_id: str) -> None:
        self._on_loop(lambda: self._app.store.undelete(sobject, record_id))

    # -- change events (Pub/Sub) --------------------------------------------------------------
    def _on_change(
        self,
        entity: str,
        change_type: str,
        record_ids: Sequence[str],
        record: Record,
        changed: Sequence[str],
    ) -> None:
        """The store's change hook (loop thread): encode the change and put it on the bus."""
        if self.pubsub.take_suppression():
            return
        if change_type == "UPDATE":
            values = {name: record.get(name) for name in changed}
        elif change_type in ("CREATE", "UNDELETE"):
            values = {k: v for k, v in record.items() if v is not None}
        else:
            values = {}
        self._publish(entity, change_type, record_ids, values, changed=changed, record=record)

    def _publish(
        self,
        entity: str,
        change_type: str,
        record_ids: Sequence[str],
        values: Mapping[str, Any],
        *,
        changed: Sequence[str] = (),
        record: Mapping[str, Any] | None = None,
    ) -> None:
        committed = time.time()
        schema_id, payload = self._encoder.encode(
            entity, change_type, record_ids, values, changed=changed, committed_at=committed
        )
        delay = self.pubsub.faults.delivery_delay_s
        self.events.publish(
            entity, schema_id, payload, record or {}, committed_at=committed, delay_s=delay
        )

    def emit_gap(self, entity: str, change_type: str, record_ids: Sequence[str] = ()) -> None:
        """A GAP_* event (ids, no body) or GAP_OVERFLOW (no ids): what Salesforce sends when
        it could not capture a change's content."""
        if not change_type.startswith("GAP_"):
            raise ValueError("gap events are GAP_CREATE/UPDATE/DELETE/UNDELETE/OVERFLOW")
        ids = [] if change_type == "GAP_OVERFLOW" else list(record_ids)
        self._on_loop(lambda: self._publish(entity, change_type, ids, {}))

    def set_pubsub_faults(self, faults: PubSubFaults | None = None, **fields: Any) -> None:
        """Replace the Pub/Sub faults (a :class:`PubSubFaults` or its fields; others reset)."""
        self.pubsub.set_faults(faults or PubSubFaults(**fields))

    def suppress_events(self, count: int = 1) -> None:
        """The next ``count`` committed changes emit no event (the poll must find them)."""
        self.pubsub.set_faults(replace(self.pubsub.faults, suppress=count))

    def expire_replay(self) -> None:
        """Let the 72 h retention pass: every replay id issued so far becomes invalid."""
        self.events.expire_all()

    def break_streams(self) -> None:
        """End every open Subscribe stream with UNAVAILABLE (a server restart, a network cut)."""
        self.pubsub.break_streams()

    def evolve_schema(self, entity: str, field_name: str) -> str:
        """Add a field to ``entity``'s change events (a new schema id from now on)."""
        return self._on_loop(lambda: self._encoder.evolve(entity, field_name))

    def add_channel(
        self, name: str, entities: Sequence[str], where: Mapping[str, Any] | None = None
    ) -> None:
        """A custom channel (``/data/Name__chn``) carrying ``entities``, filtered by ``where``."""
        self.pubsub.channels[name] = Channel(frozenset(entities), dict(where or {}))

    def pubsub_counts(self) -> dict[str, int]:
        """RPCs served, events delivered and keepalives sent since start."""
        return dict(self.pubsub.counts)

    # -- sessions, limits, faults, inspection ---------------------------------------------
    def issue_session(self) -> str:
        """A session id as if issued elsewhere (the pre-issued ``SALESFORCE_SESSION_ID`` mode)."""
        return self._on_loop(self._app.sessions.issue)

    def expire_sessions(self) -> None:
        self._on_loop(self._app.sessions.expire_all)

    def set_faults(
        self,
        faults: SalesforceFaults | None = None,
        *,
        server_error_rate: float = 0.0,
        latency_s: float = 0.0,
        seed: int = 0,
        refuse_sessions: bool = False,
        refuse_logins: bool = False,
        hidden_fields: tuple[str, ...] = (),
    ) -> None:
        """Replace the injected faults: pass a :class:`SalesforceFaults` or its fields."""
        chosen = faults or SalesforceFaults(
            server_error_rate, latency_s, seed, refuse_sessions, refuse_logins, hidden_fields
        )
        self._on_loop(lambda: self._app.set_faults(chosen))

    def set_quota(self, used: int, max: int) -> None:
        def apply() -> None:
            self._app.quota_used = used
            self._app.quota_max = max

        self._on_loop(apply)

    def quota(self) -> tuple[int, int]:
        return self._on_loop(lambda: (self._app.quota_used, self._app.quota_max))

    def request_counts(self) -> dict[str, int]:
        """``"<endpoint> <status>" -> count`` since the last reset, e.g. ``"query 200"``."""
        return self._on_loop(lambda: dict(self._app.counts))

    def api_calls(self) -> int:
        """Data API calls counted against the daily quota since the last reset."""
        return self._on_loop(lambda: self._app.api_calls)

    def reset(self) -> None:
        """Zero the request counts, the API-call count and the quota usage (records stay)."""
        self._on_loop(self._app.reset_counters)

    # -- plumbing -------------------------------------------------------------------------
    async def _handle(self, request: Request) -> Response:
        if request.path.startswith("/_sandbox/"):
            return self._control(request)
        return await self._app.handle(request)

    def _control(self, request: Request) -> Response:
        """``/_sandbox/*``: the methods above for out-of-process callers (JSON in, JSON out)."""
        app = self._app
        action = request.path.removeprefix("/_sandbox/").strip("/")
        try:
            body: dict[str, Any] = json.loads(request.body) if request.body else {}
            result: Any = None
            if action == "requests" and request.method == "GET":
                result = {"counts": dict(app.counts), "api_calls": app.api_calls,
                          "quota": {"used": app.quota_used, "max": app.quota_max}}  # fmt: skip
            elif action == "reset" and request.method == "POST":
                app.reset_counters()
            elif action == "expire-sessions" and request.method == "POST":
                app.sessions.expire_all()
            elif action == "session" and request.method == "POST":
                result = {"session_id": app.sessions.issue(), "instance_url": INSTANCE_URL}
            elif action == "quota" and request.method == "POST":
                app.quota_used = int(body.get("used", app.quota_used))
                app.quota_max = int(body.get("max", app.quota_max))
            elif action == "faults" and request.method == "POST":
                app.set_faults(
                    SalesforceFaults(
                        float(body.get("server_error_rate", 0.0)),
                        float(body.get("latency_s", 0.0)),
                        int(body.get("seed", 0)),
                        bool(body.get("refuse_sessions", False)),
                        bool(body.get("refuse_logins", False)),
                        tuple(str(name) for name in body.get("hidden_fields", ())),
                    )
                )
            elif action == "merge" and request.method == "POST":
                app.store.merge_accounts(str(body["master_id"]), str(body["loser_id"]))
            elif action == "pubsub/faults" and request.method == "POST":
                self.pubsub.set_faults(PubSubFaults(**body))
            elif action == "pubsub/expire-replay" and request.method == "POST":
                self.events.expire_all()
            elif action == "pubsub/break-streams" and request.method == "POST":
                self.pubsub.break_streams()
            elif action == "pubsub/gap" and request.method == "POST":
                kind = str(body["change_type"])
                ids = [] if kind == "GAP_OVERFLOW" else [str(i) for i in body.get("record_ids", [])]
                self._publish(str(body["entity"]), kind, ids, {})
            elif action == "pubsub/counts" and request.method == "GET":
                result = dict(self.pubsub.counts)
            elif action == "seed" and request.method == "POST":
                self._seed_quietly(
                    int(body["n_accounts"]),
                    int(body.get("seed", 0)),
                    float(body.get("won_fraction", 1.0)),
                )
            else:
                return Response(404, b'{"error":"unknown sandbox action"}')
        except StoreError as exc:
            return Response(
                exc.status, json.dumps({"error": exc.code, "message": exc.message}).encode()
            )
        except (ValueError, KeyError, TypeError) as exc:
            return Response(400, json.dumps({"error": f"bad request: {exc}"}).encode())
        return Response(200, json.dumps(result if result is not None else {"ok": True}).encode())
