"""HTTP routes of the Salesforce emulator: login, SOQL with paging, sObjects, limits, faults.

Every data response carries ``Sforce-Limit-Info: api-usage=used/max`` because the worker's
quota brake reads it; a request past the daily quota gets 403 ``REQUEST_LIMIT_EXCEEDED`` and an
unknown or expired token 401 ``INVALID_SESSION_ID``, both as Salesforce's JSON error *list*
(simple-salesforce reads ``body[0]["errorCode"]`` to decide whether to re-login).
Query results are paged with a ``nextRecordsUrl`` that is an absolute path, 2,000 rows by
default or ``Sforce-Query-Options: batchSize=N`` (200-2,000), like the real API.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import Any

from worker.sandbox.httpserver import Request, Response
from worker.sandbox.salesforce.auth import (
    INSTANCE_URL,
    SandboxCredentials,
    SessionRegistry,
    oauth_token,
    soap_login,
)
from worker.sandbox.salesforce.describe import describe
from worker.sandbox.salesforce.schema import sobject_type
from worker.sandbox.salesforce.soql_eval import CompiledQuery, execute, full_record_plan, render
from worker.sandbox.salesforce.soql_parser import SoqlError, parse
from worker.sandbox.salesforce.store import Record, RecordStore, StoreError

DEFAULT_BATCH = 2000
MIN_BATCH = 200
#: A parent row's child records served inline; past this the child set pages through its
#: own ``nextRecordsUrl``.
CHILD_BATCH = 200
MAX_LOCATORS = 200  # open query cursors kept; older ones answer INVALID_QUERY_LOCATOR

_DATA = re.compile(r"^/services/data/v(\d+\.\d)/(.*?)/?$")
_SOAP = re.compile(r"^/services/Soap/u/(\d+\.\d)/?$")


@dataclass(frozen=True, slots=True)
class SalesforceFaults:
    """Injected trouble: a share of 5xx answers and added latency per data call; every
    session refused (logins succeed, REST and Pub/Sub refuse the session); every login refused."""

    server_error_rate: float = 0.0
    latency_s: float = 0.0
    seed: int = 0
    refuse_sessions: bool = False
    refuse_logins: bool = False
    #: ``Object.Field`` names the integration user cannot read: describe leaves them out, as
    #: field-level security does in an org.
    hidden_fields: tuple[str, ...] = ()


@dataclass(slots=True)
class _Cursor:
    compiled: CompiledQuery
    version: str
    batch: int
    endpoint: str


def _errors(status: int, code: str, message: str, **headers: str) -> Response:
    body = json.dumps([{"message": message, "errorCode": code}]).encode()
    return Response(status, body, [(k.replace("_", "-"), v) for k, v in headers.items()])


class SalesforceApp:
    """State and request handler; runs only on the HTTP server's loop thread (no locks)."""

    def __init__(
        self,
        credentials: SandboxCredentials,
        *,
        daily_quota: int,
        session_ttl_s: float | None,
        faults: SalesforceFaults | None,
        store: RecordStore,
    ) -> None:
        self.credentials = credentials
        self.store = store
        self.sessions = SessionRegistry(session_ttl_s)
        self.quota_used = 0
        self.quota_max = daily_quota
        self.api_calls = 0
        self.counts: Counter[str] = Counter()
        self.faults = faults or SalesforceFaults()
        self.sessions.refuse_sessions = self.faults.refuse_sessions
        self.sessions.refuse_logins = self.faults.refuse_logins
        self._rng = random.Random(self.faults.seed)  # noqa: S311 -- reproducible faults/data, not security
        self._cursors: OrderedDict[str, _Cursor] = OrderedDict()
        self._locator_serial = 0

    def set_faults(self, faults: SalesforceFaults) -> None:
        self.faults = faults
        self.sessions.refuse_sessions = faults.refuse_sessions
        self.sessions.refuse_logins = faults.refuse_logins
        self._rng = random.Random(faults.seed)  # noqa: S311 -- reproducible faults/data, not security

    def reset_counters(self) -> None:
        self.counts.clear()
        self.api_calls = 0
        self.quota_used = 0

    # -- entry point ----------------------------------------------------------------------
    async def handle(self, request: Request) -> Response:
        name, response = await self._route(request)
        self.counts[f"{name} {response.status}"] += 1
        return response

    async def _route(self, request: Request) -> tuple[str, Response]:
        path = request.path
        if request.method == "POST" and (match := _SOAP.match(path)):
            result = soap_login(request.body, self.credentials, self.sessions, match.group(1))
            return "soap_login", Response(
                result.status, result.body, [("Content-Type", result.content_type)]
            )
        if request.method == "POST" and path.rstrip("/") == "/services/oauth2/token":
            result = oauth_token(
                request.body, request.headers.get("authorization"), self.credentials, self.sessions
            )
            return "oauth_token", Response(
                result.status, result.body, [("Content-Type", result.content_type)]
            )
        if match := _DATA.match(path):
            return await self._data(request, match.group(1), match.group(2))
        return "unknown", _errors(404, "NOT_FOUND", "The requested resource does not exist")

    async def _data(self, request: Request, version: str, rest: str) -> tuple[str, Response]:
        name = _endpoint_name(request.method, rest)
        if self.faults.latency_s > 0:
            await asyncio.sleep(self.faults.latency_s)
        token = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not self.sessions.valid(token):
            return name, _errors(401, "INVALID_SESSION_ID", "Session expired or invalid")
        if self.quota_used >= self.quota_max:
            return name, self._limited(
                _errors(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
            )
        self.quota_used += 1
        self.api_calls += 1
        if self.faults.server_error_rate > 0 and self._rng.random() < self.faults.server_error_rate:
            return name, self._limited(
                _errors(503, "SERVER_UNAVAILABLE", "Injected fault: server unavailable")
            )
        try:
            response = self._dispatch(request, version, rest, name)
        except SoqlError as exc:
            response = _errors(400, exc.code, exc.message)
        except StoreError as exc:
            response = _errors(exc.status, exc.code, exc.message)
        return name, self._limited(response)

    def _limited(self, response: Response) -> Response:
        response.headers.append(
            ("Sforce-Limit-Info", f"api-usage={self.quota_used}/{self.quota_max}")
        )
        return response

    def _dispatch(self, request: Request, version: str, rest: str, name: str) -> Response:
        parts = rest.split("/")
        if parts[0] in ("query", "queryAll") and request.method == "GET":
            include_deleted = parts[0] == "queryAll"
            if len(parts) == 1:
                return self._query(request, version, parts[0], include_deleted)
            if len(parts) == 2:
                return self._query_more(parts[1])
        if parts[0] == "limits" and len(parts) == 1 and request.method == "GET":
            daily = {"Max": self.quota_max, "Remaining": max(0, self.quota_max - self.quota_used)}
            return Response(200, json.dumps({"DailyApiRequests": daily}).encode())
        if parts[0] == "sobjects" and len(parts) == 3 and parts[2] == "describe":
            return self._describe(request, parts[1])
        if parts[0] == "sobjects" and len(parts) in (2, 3):
            return self._sobject(request, version, parts[1], parts[2] if len(parts) == 3 else None)
        return _errors(404, "NOT_FOUND", "The requested resource does not exist")

    # -- SOQL -----------------------------------------------------------------------------
    def _query(
        self, request: Request, version: str, endpoint: str, include_deleted: bool
    ) -> Response:
        text = request.query_value("q")
        if not text:
            return _errors(400, "MALFORMED_QUERY", "A query string has to be specified")
        compiled = execute(parse(text), self.store, include_deleted=include_deleted)
        cursor = _Cursor(compiled, version, _batch_size(request), endpoint)
        return self._page(self._register(cursor), cursor, 0)

    def _register(self, cursor: _Cursor) -> str:
        self._locator_serial += 1
        locator = f"01gHp{self._locator_serial:010d}AAA"
        self._cursors[locator] = cursor
        while len(self._cursors) > MAX_LOCATORS:
            self._cursors.popitem(last=False)
        return locator

    def _row(self, row: Record, cursor: _Cursor) -> dict[str, Any]:
        """One result row, with each subquery's child records nested under its name:
        ``null`` without children, else ``{totalSize, done, records}`` and, past
        CHILD_BATCH, a ``nextRecordsUrl`` of its own."""
        out = render(row, cursor.compiled.render_plan, self.store, cursor.version)
        for child in cursor.compiled.children:
            rows = child.rows_by_parent.get(row["Id"])
            if not rows:
                out[child.key] = None
                continue
            compiled = CompiledQuery(child.sobject, rows, child.render_plan)
            sub = _Cursor(compiled, cursor.version, CHILD_BATCH, cursor.endpoint)
            locator = self._register(sub) if len(rows) > CHILD_BATCH else ""
            out[child.key] = self._payload(locator, sub, 0)
        return out

    def _query_more(self, token: str) -> Response:
        locator, _, offset_text = token.rpartition("-")
        cursor = self._cursors.get(locator)
        if cursor is None or not offset_text.isdigit():
            return _errors(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        return self._page(locator, cursor, int(offset_text))

    def _page(self, locator: str, cursor: _Cursor, offset: int) -> Response:
        payload = self._payload(locator, cursor, offset)
        return Response(200, json.dumps(payload, ensure_ascii=False).encode())

    def _payload(self, locator: str, cursor: _Cursor, offset: int) -> dict[str, Any]:
        rows = cursor.compiled.rows
        end = min(offset + cursor.batch, len(rows))
        records = [self._row(row, cursor) for row in rows[offset:end]]
        payload: dict[str, Any] = {"totalSize": len(rows), "done": end >= len(rows)}
        if end < len(rows):
            payload["nextRecordsUrl"] = (
                f"/services/data/v{cursor.version}/{cursor.endpoint}/{locator}-{end}"
            )
        else:
            self._cursors.pop(locator, None)
        payload["records"] = records
        return payload

    # -- sObjects -------------------------------------------------------------------------
    def _sobject(
        self, request: Request, version: str, sobject: str, record_id: str | None
    ) -> Response:
        if record_id is None:
            if request.method != "POST":
                return _errors(405, "METHOD_NOT_ALLOWED", "HTTP method not allowed")
            new_id = self.store.insert(sobject, _json_object(request.body))
            body = json.dumps({"id": new_id, "success": True, "errors": []}).encode()
            return Response(201, body)
        if request.method == "GET":
            record = self.store.get(sobject, record_id)
            if record["IsDeleted"]:
                return _errors(404, "ENTITY_IS_DELETED", "entity is deleted")
            rendered = render(record, full_record_plan(record), self.store, version)
            return Response(200, json.dumps(rendered, ensure_ascii=False).encode())
        if request.method == "PATCH":
            self.store.update(sobject, record_id, _json_object(request.body))
            return Response(204)
        if request.method == "DELETE":
            self.store.delete(sobject, record_id)
            return Response(204)
        return _errors(405, "METHOD_NOT_ALLOWED", "HTTP method not allowed")

    def _describe(self, request: Request, name: str) -> Response:
        sobject = sobject_type(name)
        if request.method != "GET":
            return _errors(405, "METHOD_NOT_ALLOWED", "HTTP method not allowed")
        if sobject is None:
            return _errors(404, "NOT_FOUND", f"The requested resource does not exist: {name}")
        answer = describe(sobject, self.faults.hidden_fields)
        return Response(200, json.dumps(answer).encode())

    def instance_url(self) -> str:
        return INSTANCE_URL


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body or b"{}")
    except ValueError:
        raise StoreError("JSON_PARSER_ERROR", "the request body is not valid JSON") from None
    if not isinstance(value, dict):
        raise StoreError("JSON_PARSER_ERROR", "expected a JSON object")
    return value


def _batch_size(request: Request) -> int:
    options = request.headers.get("sforce-query-options", "")
    match = re.search(r"batchSize\s*=\s*(\d+)", options)
    if match is None:
        return DEFAULT_BATCH
    return max(MIN_BATCH, min(DEFAULT_BATCH, int(match.group(1))))


def _endpoint_name(method: str, rest: str) -> str:
    parts = rest.split("/")
    if parts[0] in ("query", "queryAll"):
        return parts[0] if len(parts) == 1 else "query_more"
    if parts[0] == "limits":
        return "limits"
    if parts[0] == "sobjects":
        if len(parts) == 2:
            return "sobject_create"
        if len(parts) == 3 and parts[2] == "describe":
            return "describe"
        return {"GET": "sobject_get", "PATCH": "sobject_update", "DELETE": "sobject_delete"}.get(
            method, "sobject_other"
        )
    return "data_other"
