"""The one way the worker talks to Metronome: the official SDK, our errors, our retries.

Why not the SDK's own retries: they include 409 (an alias taken, which must lead to a re-read,
never a resend) and they resend a 5xx'd POST under the same Idempotency-Key, which Metronome
answers with the cached 5xx. So the SDK client has ``max_retries=0`` and this module retries
with ``stamina`` (bounded, exponential, jittered) only what is safe:

- GETs: connection failures, 408, 5xx;
- POSTs: connection failures and 408 with the same Idempotency-Key (a write that did happen
  is replayed by Metronome), but never a 5xx: that goes back to the engine, which bumps the
  key generation and re-reads first.

Every request first passes Metronome's circuit breaker (``breaker.py``: while it is open only
the probe's requests go out; the others raise ``BreakerOpenError`` at once and their sync
parks), then takes its turn from the rate governor (``governor.py``: one budget in Redis for
the whole deployment). A 429 is not an error for the caller: the governor lowers
the shared rate and holds everyone back, and the same request (same Idempotency-Key: a 429
is refused before any work, so nothing was done) is sent again on its next turn, up to
MAX_REFUSALS times. So a 429 costs an account one more request, never a re-read or a
retried sync.

Every HTTP attempt is counted (an httpx request hook), so a sync can report "calls made".
One pooled ``httpx.Client`` per gateway, shared by the threads of a batch (httpx's client is
thread-safe); create one gateway per worker process.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast

import httpx
import metronome
import stamina
from pydantic import SecretStr

from worker.metronome.errors import (
    ConflictError,
    ConnectionFailedError,
    MetronomeError,
    PermanentError,
    RateLimitedError,
    ServerError,
    UnexpectedAnswerError,
)
from worker.metronome.governor import Governor, Ungoverned
from worker.metronome.state import (
    BillingConfigurationState,
    CatalogEntry,
    ContractState,
    CustomerState,
    ProductState,
)
from worker.telemetry.metrics import record_metronome_no_answer, record_metronome_response

if TYPE_CHECKING:
    from worker.settings import Settings

_T = TypeVar("_T")
LIST_PAGE_SIZE = 100
#: 429s one call absorbs (each waited out under the governor) before the sync is told: far
#: more than a governed deployment meets, few enough that a call never waits for minutes.
MAX_REFUSALS = 10
CUSTOM_FIELD_ENTITY: Literal["customer"] = "customer"
CustomFieldEntity = Literal["customer", "contract"]


class _CountingTransport(httpx.HTTPTransport):
    """Counts the requests that got no answer at all in the per-endpoint metric (a response
    hook never sees them), then lets the error through unchanged."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return super().handle_request(request)
        except httpx.TransportError:
            record_metronome_no_answer(request)
            raise


class MetronomeGateway:
    """Typed Metronome calls returning our state values and raising our errors."""

    def __init__(
        self,
        token: str | SecretStr,
        base_url: str,
        *,
        timeout_s: float = 20.0,
        max_attempts: int = 5,
        retry_immediately: bool = False,
        governor: Governor | None = None,
        max_connections: int = 20,
        gate: Callable[[], None] | None = None,
    ) -> None:
        secret = token.get_secret_value() if isinstance(token, SecretStr) else token
        #: Calls are counted per thread: a batch syncs several accounts at once through this
        #: gateway, and each sync reports its own calls.
        self._local = threading.local()
        self._max_attempts = max(1, max_attempts)
        self._retry_immediately = retry_immediately
        self._governor: Governor = governor or Ungoverned(immediate=retry_immediately)
        #: The circuit breaker's gate: raises BreakerOpenError while it is open (None: no
        #: breaker, e.g. ``crmsync check``, which must tell what Metronome answers now).
        self._gate = gate
        self._http = httpx.Client(
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0)),
            transport=_CountingTransport(
                limits=httpx.Limits(
                    max_connections=max_connections, max_keepalive_connections=max_connections
                )
            ),
            event_hooks={"request": [self._count], "response": [record_metronome_response]},
        )
        self._client = metronome.Metronome(
            bearer_token=secret, base_url=base_url, max_retries=0, http_client=self._http
        )

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        governor: Governor | None = None,
        gate: Callable[[], None] | None = None,
    ) -> MetronomeGateway:
        """``governor``: the deployment's shared one (worker.context builds it on Redis);
        without it the gateway is Ungoverned and says so. ``gate``: the circuit breaker's."""
        token = settings.metronome_bearer_token
        if token is None:
            raise PermanentError("METRONOME_BEARER_TOKEN is not set")
        return cls(
            token,
            settings.metronome_base_url,
            timeout_s=settings.metronome_timeout_s,
            max_attempts=settings.metronome_max_attempts,
            retry_immediately=settings.retry_immediately,
            governor=governor,
            # One connection per sync thread, and spare ones for the poll's finds.
            max_connections=max(20, settings.sync_threads + 4),
            gate=gate,
        )

    @property
    def calls(self) -> int:
        """HTTP requests this thread sent so far, retries included (monotonic)."""
        return int(getattr(self._local, "calls", 0))

    def close(self) -> None:
        self._http.close()

    def _count(self, _request: httpx.Request) -> None:
        # httpx runs request hooks in the thread that sends: the count is that thread's.
        self._local.calls = getattr(self._local, "calls", 0) + 1

    # -- customers -------------------------------------------------------------------------

    def ping(self) -> None:
        """One cheap read (GET /v1/customers, one page of one): the drain's probe when no
        parked sync is left to probe with."""
        self._call("ping", lambda: self._client.v1.customers.list(limit=1))

    def retrieve_customer(self, customer_id: str) -> CustomerState | None:
        """GET /v1/customers/{id}; None when it does not exist (a stale cached id)."""
        try:
            answer = self._call(
                "retrieve", lambda: self._client.v1.customers.retrieve(customer_id=customer_id)
            )
        except PermanentError as exc:
            if exc.status in (400, 404):
                return None
            raise
        return _read("retrieve", lambda: _customer(answer.data))

    def list_customers(
        self,
        *,
        ingest_alias: str | None = None,
        salesforce_account_ids: Sequence[str] | None = None,
        only_archived: bool = False,
    ) -> list[CustomerState]:
        """GET /v1/customers with filters, every page read (``next_page`` cursor)."""
        query: dict[str, Any] = {"limit": LIST_PAGE_SIZE}
        if ingest_alias is not None:
            query["ingest_alias"] = ingest_alias
        if salesforce_account_ids is not None:
            query["salesforce_account_ids"] = list(salesforce_account_ids)
        if only_archived:
            query["only_archived"] = True
        found: list[CustomerState] = []
        cursor: str | None = None
        while True:
            page_query = dict(query, next_page=cursor) if cursor else query

            def fetch(q: dict[str, Any] = page_query) -> Any:
                return self._client.v1.customers.list(**q)

            page = self._call("list", fetch)
            found.extend(_read("list", partial(_page_customers, page)))
            cursor = _read("list", partial(_cursor, page))
            if not cursor:
                return found

    def create_customer(self, body: Mapping[str, Any], *, key: str) -> str:
        """POST /v1/customers; the new customer's id."""
        answer = self._call(
            "create",
            lambda: self._client.v1.customers.create(**cast(Any, body), extra_headers=_key(key)),
            post=True,
        )
        return _read("create", lambda: _text(answer.data.id))

    def set_name(self, customer_id: str, name: str, *, key: str) -> None:
        self._call(
            "setName",
            lambda: self._client.v1.customers.set_name(
                customer_id=customer_id, name=name, extra_headers=_key(key)
            ),
            post=True,
        )

    def set_ingest_aliases(self, customer_id: str, aliases: Sequence[str], *, key: str) -> None:
        """Replaces the whole set: callers pass the union to never drop an alias."""
        self._call(
            "setIngestAliases",
            lambda: self._client.v1.customers.set_ingest_aliases(
                customer_id=customer_id, ingest_aliases=list(aliases), extra_headers=_key(key)
            ),
            post=True,
        )

    def update_config(self, customer_id: str, salesforce_account_id: str, *, key: str) -> None:
        self._call(
            "updateConfig",
            lambda: self._client.v1.customers.update_config(
                customer_id=customer_id,
                salesforce_account_id=salesforce_account_id,
                extra_headers=_key(key),
            ),
            post=True,
        )

    # -- custom fields ---------------------------------------------------------------------

    def list_custom_field_keys(
        self, entity: CustomFieldEntity = CUSTOM_FIELD_ENTITY
    ) -> list[tuple[str, bool]]:
        """(key, enforce_uniqueness) for the entity's keys, every page read."""
        found: list[tuple[str, bool]] = []
        cursor: str | None = None
        while True:
            extra: dict[str, Any] = {"next_page": cursor} if cursor else {}

            def fetch_keys(e: dict[str, Any] = extra) -> Any:
                return self._client.v1.custom_fields.list_keys(entities=[entity], **e)

            page = self._call("listKeys", fetch_keys)
            found.extend(_read("listKeys", partial(_page_keys, page, entity)))
            cursor = _read("listKeys", partial(_cursor, page))
            if not cursor:
                return found

    def add_custom_field_key(
        self,
        name: str,
        *,
        enforce_uniqueness: bool,
        key: str,
        entity: CustomFieldEntity = CUSTOM_FIELD_ENTITY,
    ) -> None:
        self._call(
            "addKey",
            lambda: self._client.v1.custom_fields.add_key(
                entity=entity,
                key=name,
                enforce_uniqueness=enforce_uniqueness,
                extra_headers=_key(key),
            ),
            post=True,
        )

    def set_custom_fields(self, customer_id: str, values: Mapping[str, str], *, key: str) -> None:
        """POST /v1/customFields/setValues merges by key: send the changed keys only."""
        self._call(
            "setValues",
            lambda: self._client.v1.custom_fields.set_values(
                entity=CUSTOM_FIELD_ENTITY,
                entity_id=customer_id,
                custom_fields=dict(values),
                extra_headers=_key(key),
            ),
            post=True,
        )

    # -- billing provider configurations ---------------------------------------------------

    def get_billing_configurations(
        self, customer_id: str, *, include_archived: bool = False
    ) -> tuple[BillingConfigurationState, ...]:
        answer = self._call(
            "getBillingConfigurations",
            lambda: self._client.v1.customers.retrieve_billing_configurations(
                customer_id=customer_id, include_archived=include_archived
            ),
        )
        return _read(
            "getBillingConfigurations",
            lambda: tuple(
                BillingConfigurationState(
                    id=_text(item.id),
                    billing_provider=_text(item.billing_provider),
                    delivery_method=_text(item.delivery_method),
                    configuration=dict(item.configuration),
                    archived=item.archived_at is not None,
                )
                for item in answer.data
            ),
        )

    def set_billing_configurations(
        self, customer_id: str, configurations: Sequence[Mapping[str, Any]], *, key: str
    ) -> None:
        """Appends: callers send only configurations the customer does not have yet."""
        data = [dict(c, customer_id=customer_id) for c in configurations]
        self._call(
            "setBillingConfigurations",
            lambda: self._client.v1.customers.set_billing_configurations(
                data=cast(Any, data), extra_headers=_key(key)
            ),
            post=True,
        )

    def archive_billing_configurations(
        self, customer_id: str, configuration_ids: Sequence[str], *, key: str
    ) -> None:
        self._call(
            "archiveBillingConfigurations",
            lambda: self._client.v1.customers.archive_billing_configurations(
                customer_id=customer_id,
                customer_billing_provider_configuration_ids=list(configuration_ids),
                extra_headers=_key(key),
            ),
            post=True,
        )

    # -- contracts (DESIGN.md "Contracts") -------------------------------------------------

    def create_contract(self, body: Mapping[str, Any], *, key: str) -> str:
        """POST /v1/contracts/create; the new contract's id (``data.id``).

        A 409 (the uniqueness key or a unique contract custom field is taken) comes back as a
        ConflictError, never retried here: the contract engine re-reads and adopts."""
        answer = self._call(
            "createContract",
            lambda: self._client.v1.contracts.create(**cast(Any, body), extra_headers=_key(key)),
            post=True,
        )
        return _read("createContract", lambda: _text(answer.data.id))

    def list_contracts(self, customer_id: str) -> list[ContractState]:
        """POST /v2/contracts/list with include_archived, every page (``cursor``, ≤ 20 each).

        There is no filter by uniqueness key: callers match it in what this returns."""
        found: list[ContractState] = []
        cursor: str | None = None
        while True:
            extra: dict[str, Any] = {"cursor": cursor} if cursor else {}

            def fetch(e: dict[str, Any] = extra) -> Any:
                return self._client.v2.contracts.list(
                    customer_id=customer_id, include_archived=True, **e
                )

            page = self._call("listContracts", fetch)
            found.extend(_read("listContracts", partial(_page_contracts, page)))
            cursor = _read("listContracts", partial(_body_cursor, page))
            if not cursor:
                return found

    def list_products(self) -> list[ProductState]:
        """POST /v1/contract-pricing/products/list, archived ones included, every page."""
        return self._paged_list(
            "listProducts",
            lambda e: self._client.v1.contracts.products.list(archive_filter="ALL", **e),
            _product,
        )

    def list_rate_cards(self) -> list[CatalogEntry]:
        """POST /v1/contract-pricing/rate-cards/list, every page: ids, names, aliases."""
        return self._paged_list(
            "listRateCards", lambda e: self._client.v1.contracts.rate_cards.list(**e), _catalog
        )

    def list_packages(self) -> list[CatalogEntry]:
        """POST /v1/packages/list, every page: ids, names, aliases."""
        return self._paged_list(
            "listPackages", lambda e: self._client.v1.packages.list(**e), _catalog
        )

    def _paged_list(
        self,
        operation: str,
        fetch: Callable[[dict[str, Any]], Any],
        convert: Callable[[Any], _T],
    ) -> list[_T]:
        found: list[_T] = []
        cursor: str | None = None
        while True:
            extra: dict[str, Any] = {"next_page": cursor} if cursor else {}
            page = self._call(operation, partial(fetch, extra))
            found.extend(_read(operation, partial(_convert_items, page, convert)))
            cursor = _read(operation, partial(_cursor, page))
            if not cursor:
                return found

    # -- retries and error translation -----------------------------------------------------

    def _call(self, operation: str, send: Callable[[], _T], *, post: bool = False) -> _T:
        immediate = self._retry_immediately
        for attempt in stamina.retry_context(
            on=self._retry_hook(post),
            attempts=self._max_attempts,
            timeout=None,
            wait_initial=0.0 if immediate else 0.2,
            wait_max=0.0 if immediate else 10.0,
            wait_jitter=0.0 if immediate else 0.5,
        ):
            with attempt:
                return self._governed(operation, send)
        raise AssertionError("unreachable: stamina re-raises the last error")

    def _governed(self, operation: str, send: Callable[[], _T]) -> _T:
        """``send`` on the governor's turn; a 429 is reported to the governor (which lowers
        the shared rate and holds everyone back) and the same request goes again on the
        next turn, up to MAX_REFUSALS times."""
        refusals = 0
        while True:
            if self._gate is not None:
                self._gate()  # an open breaker: no request, not even a turn from the governor
            grant = self._governor.acquire()
            try:
                return _translated(operation, send)
            except RateLimitedError as exc:
                self._governor.refused(grant, exc.retry_after_s, exc.limit_type)
                refusals += 1
                if refusals >= MAX_REFUSALS:
                    raise

    def _retry_hook(self, post: bool) -> Callable[[Exception], bool | float]:
        immediate = self._retry_immediately
        return lambda exc: retry_decision(exc, post=post, immediate=immediate)


def retry_decision(exc: Exception, *, post: bool, immediate: bool) -> bool | float:
    """stamina's ``on`` hook: retry or not.

    A 429 is not retried here: it reaches this hook only after MAX_REFUSALS governed resends
    (``_governed``), so it goes back to the sync. A POST's 5xx is not retried either:
    Metronome cached it under the Idempotency-Key, so only a new generation (the engine's job,
    after a re-read) can get a different answer.
    """
    if isinstance(exc, RateLimitedError):
        return False
    if isinstance(exc, ServerError):
        return not post
    return isinstance(exc, ConnectionFailedError)


def _key(key: str) -> dict[str, str]:
    return {"Idempotency-Key": key}


def _translated(operation: str, send: Callable[[], _T]) -> _T:
    try:
        return send()
    except metronome.APIConnectionError as exc:
        # Includes timeouts and dropped connections: the request may have been processed.
        raise ConnectionFailedError(
            f"Metronome {operation}: no answer ({type(exc).__name__})"
        ) from exc
    except metronome.APIStatusError as exc:
        raise _from_status(operation, exc) from exc
    except (AttributeError, TypeError) as exc:
        if not _raised_inside_sdk(exc):
            raise  # our own call is wrong: a bug, not an answer
        # The SDK choked while turning a 200 into its model (a paged list given an HTML page).
        raise _unexpected_answer(operation, exc) from exc


_SDK_DIR = os.path.dirname(metronome.__file__)


def _raised_inside_sdk(exc: BaseException) -> bool:
    """True when the innermost frame of ``exc`` is the SDK's own code: it failed on what it
    was given back. A TypeError from calling the SDK with wrong arguments is raised in the
    caller's frame, before any SDK code runs."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and tb.tb_frame.f_code.co_filename.startswith(_SDK_DIR)


def _from_status(operation: str, exc: metronome.APIStatusError) -> MetronomeError:
    status = exc.status_code
    body = exc.body if isinstance(exc.body, dict) else {}
    api_message = str(body.get("message") or exc.response.reason_phrase or "no message")
    message = f"Metronome {operation} answered {status}: {api_message}"
    if status == 408:
        return ConnectionFailedError(message, status=status)
    if status == 429:
        return RateLimitedError(
            message,
            retry_after_s=_retry_after(exc.response.headers),
            limit_type=exc.response.headers.get("x-metronome-rate-limit-type"),
        )
    if status >= 500:
        return ServerError(message, status=status)
    if status == 409:
        conflicting = body.get("conflicting_id")
        return ConflictError(
            message, conflicting_id=conflicting if isinstance(conflicting, str) else None
        )
    return PermanentError(message, status=status)


def _retry_after(headers: httpx.Headers) -> float | None:
    """``Retry-After-Ms`` (more precise, when sent) or ``Retry-After`` in seconds."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        raw = headers.get(name)
        if raw is None:
            continue
        try:
            return max(0.0, float(raw) * scale)
        except ValueError:
            continue  # an HTTP date: rare for 429, fall back to our own backoff
    return None


def _read(operation: str, read: Callable[[], _T]) -> _T:
    """Take an answer apart; a body of the wrong shape becomes an UnexpectedAnswerError.

    The SDK builds its models without validating them, so a 200 carrying something else (an
    HTML page served as JSON, a truncated object) surfaced as an AttributeError or TypeError
    deep in the engine and was dead-lettered under that name. Only the reading is guarded, not
    the call: a TypeError from calling the SDK wrongly is our bug and must stay one.
    """
    try:
        return read()
    except (AttributeError, TypeError, KeyError, ValueError) as exc:
        raise _unexpected_answer(operation, exc) from exc


def _unexpected_answer(operation: str, exc: Exception) -> UnexpectedAnswerError:
    return UnexpectedAnswerError(
        f"Metronome {operation} answered 200 with an unexpected body "
        f"({type(exc).__name__}: {str(exc)[:200]}); outcome unknown, the sync re-reads"
    )


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError(f"expected a non-empty string, got {type(value).__name__}")
    return value


def _cursor(page: Any) -> str | None:
    cursor = page.next_page
    if cursor is not None and not isinstance(cursor, str):
        raise TypeError(f"next_page is a {type(cursor).__name__}, not a string")
    return cursor or None


def _page_customers(page: Any) -> list[CustomerState]:
    return [_customer(item) for item in page.data]


def _page_keys(page: Any, entity: str = CUSTOM_FIELD_ENTITY) -> list[tuple[str, bool]]:
    return [
        (_text(item.key), bool(item.enforce_uniqueness))
        for item in page.data
        if item.entity == entity
    ]


def _customer(item: Any) -> CustomerState:
    config = getattr(item, "customer_config", None)
    return CustomerState(
        id=_text(item.id),
        name=_text(item.name),
        ingest_aliases=tuple(item.ingest_aliases or ()),
        custom_fields=dict(item.custom_fields or {}),
        salesforce_account_id=getattr(config, "salesforce_account_id", None),
        archived=getattr(item, "archived_at", None) is not None,
    )


def _convert_items(page: Any, convert: Callable[[Any], _T]) -> list[_T]:
    return [convert(item) for item in page.data]


def _body_cursor(page: Any) -> str | None:
    """v2 lists page with a ``cursor`` field in the body, not ``next_page``."""
    cursor = getattr(page, "cursor", None)
    if cursor is not None and not isinstance(cursor, str):
        raise TypeError(f"cursor is a {type(cursor).__name__}, not a string")
    return cursor or None


def _page_contracts(page: Any) -> list[ContractState]:
    return [_contract(item) for item in page.data]


def _contract(item: Any) -> ContractState:
    return ContractState(
        id=_text(item.id),
        uniqueness_key=getattr(item, "uniqueness_key", None),
        custom_fields=dict(getattr(item, "custom_fields", None) or {}),
        archived=getattr(item, "archived_at", None) is not None,
        starting_at=str(getattr(item, "starting_at", "") or ""),
        ending_before=(
            str(item.ending_before) if getattr(item, "ending_before", None) is not None else None
        ),
    )


def _product(item: Any) -> ProductState:
    current = getattr(item, "current", None)
    return ProductState(
        id=_text(item.id),
        name=str(getattr(current, "name", None) or getattr(item, "name", "") or ""),
        type=str(item.type),
        archived=getattr(item, "archived_at", None) is not None,
    )


def _catalog(item: Any) -> CatalogEntry:
    aliases = getattr(item, "aliases", None) or []
    return CatalogEntry(
        id=_text(item.id),
        name=str(getattr(item, "name", "") or ""),
        aliases=tuple(str(getattr(a, "name", a)) for a in aliases),
    )
