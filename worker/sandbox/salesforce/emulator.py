"""The Salesforce emulator: a local org that simple-salesforce talks to over real HTTP.

State lives on the HTTP server's event-loop thread; every public method below hops onto that
thread (``HttpServer.call_in_loop``), so a test can write records or flip faults while a
client is mid-query without locks. The same controls are served under ``/_sandbox/`` for
processes that only have the URL (``crmsync sandbox``, the benchmark, the chaos runner).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from worker.sandbox.httpserver import Request, Response
from worker.sandbox.salesforce.app import SalesforceApp, SalesforceFaults
from worker.sandbox.salesforce.auth import INSTANCE_URL, SandboxCredentials
from worker.sandbox.salesforce.seed import seed_store
from worker.sandbox.salesforce.store import RecordStore, StoreError
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
    ) -> None:
        self.credentials = credentials or SandboxCredentials()
        self._app = SalesforceApp(
            self.credentials,
            daily_quota=daily_quota,
            session_ttl_s=session_ttl_s,
            faults=faults,
            store=RecordStore(stages),
        )
        super().__init__(self._handle, host, port)

    # -- lifecycle (start, stop, wait, url, port: ServedEmulator) --------------------------
    @property
    def instance_url(self) -> str:
        """The https instance URL login answers carry (the transport maps it to ``url``)."""
        return INSTANCE_URL

    def seed(self, n_accounts: int, seed: int = 0, won_fraction: float = 1.0) -> None:
        self._on_loop(lambda: seed_store(self._app.store, n_accounts, seed, won_fraction))

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
    ) -> None:
        """Replace the injected faults: pass a :class:`SalesforceFaults` or its fields."""
        chosen = faults or SalesforceFaults(server_error_rate, latency_s, seed)
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
                    )
                )
            elif action == "merge" and request.method == "POST":
                app.store.merge_accounts(str(body["master_id"]), str(body["loser_id"]))
            elif action == "seed" and request.method == "POST":
                seed_store(
                    app.store,
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
