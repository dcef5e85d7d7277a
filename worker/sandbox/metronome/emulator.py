"""The Metronome emulator: the stores and routes behind bearer auth, faults and idempotency.

The order of checks on an API request (``/v1``, ``/v2``) is the order the failures they
model happen in:

1. bearer auth (401 otherwise);
2. rate limit / injected 429 -- refused before any work, so never cached under a key;
3. ``Idempotency-Key`` replay: same key and body replays the stored answer (a 5xx included,
   as Metronome does for at least 24 h); same key and another body is a 409;
4. latency, then an injected 5xx (stored under the key, like a real one);
5. the write itself, whose answer is stored under the key;
6. "commit then drop" (POSTs only: it models the lost answer to a write): the write stays,
   the connection is aborted without an answer, and a retry with the same key gets the
   stored answer.

Faults (2, 4, 6) apply to the routes ``MetronomeFaults.routes`` names, or to all of them.

Every request body a route accepted (answered below 400, dropped answers included) is kept,
per "METHOD /template", so a test can check what a client really sent -- e.g. validate each
contract create against the spec's ``CreateContractPayload`` (:meth:`accepted_bodies`).

The catalog (rate cards, products, packages) is seeded on start and on every reset:
:func:`~worker.sandbox.metronome.catalog.default_catalog` unless one is passed.

``/_sandbox/`` serves inspection and control (no auth, no faults): customers, billing
configurations, contracts, accepted request bodies, request counts per
"METHOD /template STATUS", faults, reset.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
from collections import Counter, OrderedDict, deque
from dataclasses import asdict, dataclass
from typing import Any

from worker.sandbox.httpserver import Request, Response
from worker.sandbox.metronome import routes
from worker.sandbox.metronome.catalog import Catalog, default_catalog
from worker.sandbox.metronome.contracts import ContractStore
from worker.sandbox.metronome.faults import FaultInjector, MetronomeFaults
from worker.sandbox.metronome.rules import ApiError
from worker.sandbox.metronome.store import MetronomeStore
from worker.sandbox.served import ServedEmulator

#: Stored idempotent answers; oldest evicted first (Metronome keeps them >= 24 h; a bound keeps
#: a long benchmark from growing the emulator without limit).
IDEMPOTENCY_CACHE_MAX = 200_000
#: Accepted request bodies kept per route, newest last: plenty for any test, and bounded so
#: a 100k-account benchmark does not keep every customer create it sent.
ACCEPTED_BODIES_MAX = 5_000
DROPPED = "DROP"


@dataclass(frozen=True, slots=True)
class _Stored:
    fingerprint: str
    status: int
    body: bytes


def _json(status: int, payload: Any, headers: list[tuple[str, str]] | None = None) -> Response:
    body = b"" if payload is None else json.dumps(payload).encode()
    return Response(status, body, headers or [])


class MetronomeEmulator(ServedEmulator):
    """An in-process Metronome API on 127.0.0.1 for tests, the demo and the benchmark."""

    def __init__(
        self,
        token: str = "sandbox-token",  # noqa: S107 - the emulator's public default
        host: str = "127.0.0.1",
        port: int = 0,
        faults: MetronomeFaults | None = None,
        catalog: Catalog | None = None,
    ) -> None:
        super().__init__(self._handle, host, port)
        self._token = token
        self._seed_catalog = catalog if catalog is not None else default_catalog()
        self._backend = _backend(self._seed_catalog)
        self._faults = FaultInjector(faults or MetronomeFaults())
        self._idempotent: OrderedDict[str, _Stored] = OrderedDict()
        self._counts: Counter[str] = Counter()
        #: Raw bodies (parsed only when asked for: the benchmark's hot path pays a deque append).
        self._accepted: dict[str, deque[bytes]] = {}

    # -- inspection and control (thread-safe: run on the server loop) ----------------------

    def set_faults(self, faults: MetronomeFaults) -> None:
        injector = FaultInjector(faults)
        self._on_loop(lambda: setattr(self, "_faults", injector))

    def set_token(self, token: str) -> None:
        """The bearer token accepted from now on (Metronome revoking or re-enabling one)."""
        self._on_loop(lambda: setattr(self, "_token", token))

    def set_editing_enabled(self, enabled: bool) -> None:
        """Whether ``v2/contracts/edit`` is enabled for the client (Metronome enables it per
        client on request); a reset turns it back on."""
        self._on_loop(lambda: setattr(self._backend.contracts, "editing_enabled", enabled))

    def set_full_write_answers(self, enabled: bool) -> None:
        """Whether a contract create's and an edit's answers carry what was written
        (``data.contract``, ``data.edit``: optional in the spec) or ``data.id`` alone; a reset
        turns it back on."""
        self._on_loop(lambda: setattr(self._backend.contracts, "full_write_answers", enabled))

    def reset(self, catalog: Catalog | None = None) -> None:
        """Forget all customers, keys, configurations, contracts, stored answers, accepted
        bodies, counts and faults; seed ``catalog``, else the one the emulator started with."""
        self._on_loop(lambda: self._clear(catalog))

    def _clear(self, catalog: Catalog | None = None) -> None:
        self._backend = _backend(catalog if catalog is not None else self._seed_catalog)
        self._idempotent.clear()
        self._counts.clear()
        self._accepted.clear()
        self._faults = FaultInjector(MetronomeFaults())

    @property
    def catalog(self) -> Catalog:
        """The rate cards, products and packages served now (immutable: safe to read from
        any thread), e.g. ``emulator.catalog.product_named("Prepaid commit").id``."""
        return self._backend.contracts.catalog

    def customers(self) -> list[dict[str, Any]]:
        return self._on_loop(lambda: [c.detail() for c in self._store.customers.values()])

    def billing_configurations(self) -> list[dict[str, Any]]:
        return self._on_loop(lambda: [c.detail() for c in self._store.billing])

    def custom_field_keys(self) -> list[dict[str, Any]]:
        return self._on_loop(lambda: [asdict(k) for k in self._store.keys.values()])

    def contracts(self, *, with_request: bool = False) -> list[dict[str, Any]]:
        """Every contract, archived ones included, in the ContractV2 shape, oldest first;
        ``with_request`` adds ``"request"``: the create body it was made from, as sent."""
        return self._on_loop(lambda: self._contract_list(with_request))

    def contract_edits(self) -> list[dict[str, Any]]:
        """Every edit applied, oldest first per contract: the ContractEdit record plus the
        ``contract_id`` and ``customer_id`` it changed."""
        return self._on_loop(self._edit_list)

    def _edit_list(self) -> list[dict[str, Any]]:
        return [
            {"contract_id": c.id, "customer_id": c.customer_id, **copy.deepcopy(e)}
            for c in self._backend.contracts.contracts.values()
            for e in c.edits
        ]

    def accepted_bodies(self, route: str) -> list[dict[str, Any]]:
        """The JSON bodies the POST ``route`` ("METHOD /template", e.g.
        "POST /v1/contracts/create") accepted, oldest first, at most the last
        ACCEPTED_BODIES_MAX. An idempotent replay is not accepted again; a dropped answer's
        body is (its write happened)."""
        return self._on_loop(lambda: self._accepted_bodies(route))

    def request_counts(self) -> dict[str, int]:
        return self._on_loop(lambda: dict(self._counts))

    def total_requests(self) -> int:
        return self._on_loop(lambda: sum(self._counts.values()))

    def faults_injected(self) -> dict[str, int]:
        return self._on_loop(lambda: dict(self._faults.injected))

    @property
    def _store(self) -> MetronomeStore:
        return self._backend.customers

    def _accepted_bodies(self, route: str) -> list[dict[str, Any]]:
        return [json.loads(raw) if raw.strip() else {} for raw in self._accepted.get(route, ())]

    def _contract_list(self, with_request: bool = False) -> list[dict[str, Any]]:
        book = self._backend.contracts
        shown = [book.v2(c) for c in book.contracts.values()]
        if with_request:
            for contract, given in zip(shown, book.contracts.values(), strict=True):
                contract["request"] = copy.deepcopy(given.given)
        return shown

    # -- HTTP ------------------------------------------------------------------------------

    async def _handle(self, request: Request) -> Response:
        if request.path.startswith("/_sandbox/"):
            return self._sandbox(request)
        found = routes.match(request.method, request.path)
        template = found[0].template if found else request.path
        response = await self._api(request, found, template)
        status = DROPPED if response.drop_connection else str(response.status)
        self._counts[f"{request.method} {template} {status}"] += 1
        return response

    async def _api(
        self, request: Request, found: tuple[routes.Route, dict[str, str]] | None, template: str
    ) -> Response:
        if request.headers.get("authorization", "") != f"Bearer {self._token}":
            return _json(401, {"message": "Unauthorized"})
        faults = self._faults
        faulty = faults.faults.applies_to(f"{request.method} {template}")
        throttle = faults.throttle() if faulty else None
        if throttle is not None:
            return _json(429, {"message": "Too many requests"}, throttle.headers())
        if found is None:
            return _json(404, {"message": f"no route for {request.method} {request.path}"})
        route, params = found
        key = request.headers.get("idempotency-key") if request.method == "POST" else None
        fingerprint = hashlib.sha256(
            f"{request.method} {request.path}\n".encode() + request.body
        ).hexdigest()
        if key is not None and (stored := self._idempotent.get(key)) is not None:
            if stored.fingerprint != fingerprint:
                return _json(409, {"message": "Idempotency-Key was used with another request"})
            return Response(stored.status, stored.body)
        if faulty and (delay := faults.latency()) > 0:
            await asyncio.sleep(delay)
        if faulty and faults.server_error():
            response = _json(500, {"message": "Internal server error (injected)"})
        else:
            response = self._dispatch(route, params, request)
        if key is not None:
            self._remember(key, _Stored(fingerprint, response.status, response.body))
        if (
            faulty
            and request.method == "POST"
            and response.status < 400
            and faults.commit_then_drop()
        ):
            return Response(response.status, drop_connection=True)
        return response

    def _dispatch(self, route: routes.Route, params: dict[str, str], request: Request) -> Response:
        try:
            body = json.loads(request.body) if request.body.strip() else {}
        except ValueError:
            return _json(400, {"message": "request body is not valid JSON"})
        if not isinstance(body, dict):
            return _json(400, {"message": "request body must be a JSON object"})
        query = {name: values[-1] for name, values in request.query.items()}
        try:
            answer = route.handler(self._backend, params, body, query)
        except ApiError as exc:
            return _json(exc.status, exc.body())
        if route.method == "POST":
            accepted = self._accepted.setdefault(
                f"{route.method} {route.template}", deque(maxlen=ACCEPTED_BODIES_MAX)
            )
            accepted.append(request.body)
        return _json(200, answer)

    def _remember(self, key: str, stored: _Stored) -> None:
        self._idempotent[key] = stored
        if len(self._idempotent) > IDEMPOTENCY_CACHE_MAX:
            self._idempotent.popitem(last=False)

    def _sandbox(self, request: Request) -> Response:
        path, method = request.path.rstrip("/"), request.method
        if method == "GET" and path == "/_sandbox/customers":
            return _json(200, {"data": [c.detail() for c in self._store.customers.values()]})
        if method == "GET" and path == "/_sandbox/billing-configurations":
            return _json(200, {"data": [c.detail() for c in self._store.billing]})
        if method == "GET" and path == "/_sandbox/contracts":
            return _json(200, {"data": self._contract_list()})
        if method == "GET" and path == "/_sandbox/contract-edits":
            return _json(200, {"data": self._edit_list()})
        if method == "POST" and path == "/_sandbox/editing":
            enabled = json.loads(request.body or b"{}").get("enabled")
            if not isinstance(enabled, bool):
                return _json(400, {"message": "give {enabled: true|false}"})
            self._backend.contracts.editing_enabled = enabled
            return _json(200, {"enabled": enabled})
        if method == "GET" and path == "/_sandbox/accepted-bodies":
            route = request.query_value("route") or ""
            return _json(200, {"route": route, "data": self._accepted_bodies(route)})
        if method == "GET" and path == "/_sandbox/requests":
            return _json(
                200,
                {
                    "counts": dict(self._counts),
                    "total": sum(self._counts.values()),
                    "faults_injected": dict(self._faults.injected),
                },
            )
        if method == "POST" and path == "/_sandbox/reset":
            self._clear()
            return _json(200, {"ok": True})
        if method == "POST" and path == "/_sandbox/faults":
            try:
                faults = MetronomeFaults.from_json(json.loads(request.body or b"{}"))
            except (ValueError, TypeError) as exc:
                return _json(400, {"message": f"bad faults: {exc}"})
            self._faults = FaultInjector(faults)
            return _json(200, {"faults": asdict(faults)})
        return _json(404, {"message": f"no sandbox route for {method} {path}"})


def _backend(catalog: Catalog) -> routes.Backend:
    customers = MetronomeStore()
    return routes.Backend(customers, ContractStore(customers, catalog))
