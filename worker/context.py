"""The per-process objects a task needs, built once per worker process and reused.

HTTP pools, the Salesforce session and the parsed mapping are expensive to build and safe to
share between the tasks of one process, so they are created lazily on first use after the
fork (a pool inherited across ``fork`` would share sockets with the parent) and kept. A batch
syncs on several threads, so the first uses are serialised by a lock: one gateway, one
engine (one bootstrap) per process.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mappings import Mapping, load_default_mapping, load_mapping
from worker.settings import NotConfigured, Settings, load_settings
from worker.state.opportunities import ContractStore
from worker.state.store import SyncStore

if TYPE_CHECKING:
    from simple_salesforce.api import Salesforce

    from worker.contracts.engine import ContractEngine
    from worker.metronome import MetronomeGateway, UpsertEngine
    from worker.outages.metronome import MetronomeBreaker
    from worker.outages.parking import Parking
    from worker.outages.salesforce import SalesforcePause
    from worker.outages.token import MetronomeToken
    from worker.salesforce import ClosedWonSource
    from worker.salesforce.logins import LoginGate


@dataclass
class WorkerContext:
    settings: Settings
    store: SyncStore
    mapping: Mapping
    #: A dry run (``crmsync plan``): the engines register no custom field key, which is a
    #: write; only a create needs the keys, and a dry run makes none.
    read_only: bool = False
    _gateway: MetronomeGateway | None = field(default=None, repr=False)
    _engine: UpsertEngine | None = field(default=None, repr=False)
    _contracts: ContractEngine | None = field(default=None, repr=False)
    _contract_store: ContractStore | None = field(default=None, repr=False)
    _source: ClosedWonSource | None = field(default=None, repr=False)
    _breaker: MetronomeBreaker | None = field(default=None, repr=False)
    _parking: Parking | None = field(default=None, repr=False)
    _pause: SalesforcePause | None = field(default=None, repr=False)
    _token: MetronomeToken | None = field(default=None, repr=False)
    _login_gate: LoginGate | None = field(default=None, repr=False)
    _building: threading.RLock = field(default_factory=threading.RLock, repr=False)

    @property
    def gateway(self) -> MetronomeGateway:
        if self._gateway is None:
            with self._building:
                if self._gateway is None:
                    self._gateway = self._build_gateway()
        return self._gateway

    def _build_gateway(self) -> MetronomeGateway:
        from worker.metronome import MetronomeGateway
        from worker.metronome.governor import RateGovernor

        if not self.settings.metronome_configured:
            raise NotConfigured(
                "METRONOME_BEARER_TOKEN is not set (run `crmsync demo` to try crmsync "
                "without credentials)"
            )
        # Every request of every process passes the token gate and the one circuit breaker,
        # and takes its turn from the one governor in Redis; a refused token is shared.
        governor = RateGovernor.from_settings(self.settings, self.store.client, self.store.keys)
        token, breaker = self.metronome_token, self.metronome_breaker

        def gate() -> None:
            token.gate()
            breaker.gate()

        return MetronomeGateway.from_settings(
            self.settings, governor=governor, gate=gate, on_refused=token.refused
        )

    @property
    def metronome_token(self) -> MetronomeToken:
        """Whether Metronome refuses the token, shared in Redis (one per process: its cache)."""
        if self._token is None:
            with self._building:
                if self._token is None:
                    from worker.outages.token import MetronomeToken

                    self._token = MetronomeToken.from_settings(
                        self.settings, self.store.client, self.store.keys
                    )
        return self._token

    @property
    def metronome_breaker(self) -> MetronomeBreaker:
        """Metronome's circuit breaker, shared in Redis (one per process: its cache)."""
        if self._breaker is None:
            with self._building:
                if self._breaker is None:
                    from worker.outages.metronome import MetronomeBreaker

                    self._breaker = MetronomeBreaker.from_settings(
                        self.settings, self.store.client, self.store.keys
                    )
        return self._breaker

    @property
    def salesforce_pause(self) -> SalesforcePause:
        """Salesforce's circuit breaker, as the poll uses it (stateless here: Redis holds it)."""
        if self._pause is None:
            from worker.outages.salesforce import SalesforcePause

            self._pause = SalesforcePause.from_settings(
                self.settings, self.store.client, self.store.keys
            )
        return self._pause

    @property
    def login_gate(self) -> LoginGate:
        """The gate every Salesforce login of this process passes (shared refusals in Redis)."""
        if self._login_gate is None:
            with self._building:
                if self._login_gate is None:
                    from worker.salesforce.logins import LoginGate
                    from worker.state.logins import LoginBackoff

                    backoff = LoginBackoff(
                        self.store.client,
                        self.store.keys,
                        max_wait_s=self.settings.login_backoff_max_s,
                    )
                    self._login_gate = LoginGate(self.settings, backoff)
        return self._login_gate

    @property
    def parking(self) -> Parking:
        """The parked syncs (stateless here: Redis holds them)."""
        if self._parking is None:
            from worker.outages.parking import Parking

            self._parking = Parking.from_settings(self.settings, self.store.client, self.store.keys)
        return self._parking

    @property
    def engine(self) -> UpsertEngine:
        if self._engine is None:
            with self._building:
                if self._engine is None:
                    self._engine = self._build_engine()
        return self._engine

    def _build_engine(self) -> UpsertEngine:
        from worker.metronome import UpsertEngine

        engine = UpsertEngine(self.gateway, self.store)
        # Custom field keys must be registered before the first create (unregistered keys
        # fail with 400). Bootstrap is idempotent; the Redis flag only saves the listKeys
        # call on every process start, and expires daily to re-check.
        if not self.read_only and not self.store.client.get(self.store.keys.bootstrap_done):
            engine.bootstrap()
            self.store.client.set(self.store.keys.bootstrap_done, "1", ex=86_400)
        return engine

    @property
    def contracts(self) -> ContractEngine:
        """The contract engine; registers the contract custom field keys on first use (the
        Redis flag, like the customer one, only saves a listKeys call per process start)."""
        if self._contracts is None:
            with self._building:
                if self._contracts is None:
                    self._contracts = self._build_contracts()
        return self._contracts

    def _build_contracts(self) -> ContractEngine:
        from worker.contracts.engine import ContractEngine

        engine = ContractEngine(self.gateway, self.store)
        rule = self.mapping.contract
        flag = self.store.keys.contract_bootstrap_done
        if rule is not None and not self.read_only and not self.store.client.get(flag):
            engine.bootstrap(rule.custom_field_keys())
            self.store.client.set(flag, "1", ex=86_400)
        return engine

    @property
    def contract_store(self) -> ContractStore:
        if self._contract_store is None:  # stateless: two threads building one is harmless
            self._contract_store = ContractStore(self.store.client, self.store.keys)
        return self._contract_store

    @property
    def source(self) -> ClosedWonSource:
        if self._source is None:
            self._source = build_source(self.settings, self.mapping, self.login_gate)
        return self._source

    def close(self) -> None:
        if self._gateway is not None:
            self._gateway.close()
        self.store.client.close()


def build_source(
    settings: Settings, mapping: Mapping, gate: LoginGate | None = None
) -> ClosedWonSource:
    from worker.salesforce import ClosedWonSource

    return ClosedWonSource(
        salesforce_client(settings, gate),
        mapping.opportunity_fields(),
        overlap_s=settings.overlap_s,
        quota_fraction=settings.salesforce_quota_fraction,
        line_item_fields=mapping.line_item_fields(),
    )


def salesforce_client(settings: Settings, gate: LoginGate | None = None) -> Salesforce:
    """A logged-in client for the configured org (or the loopback emulator it names); with a
    ``gate``, its logins (and simple-salesforce's re-logins) wait while Salesforce refuses them."""
    from worker.salesforce import build_salesforce

    if not settings.salesforce_configured:
        raise NotConfigured(
            "no Salesforce login is configured: set SALESFORCE_USERNAME, SALESFORCE_PASSWORD "
            "and SALESFORCE_SECURITY_TOKEN (or another mode, see README) or run `crmsync demo`"
        )
    session = None
    if settings.salesforce_emulator_url:
        # A process the sandbox started: the generic loopback transport, never the emulator.
        from worker.salesforce.loopback import loopback_session

        session = loopback_session(settings.salesforce_emulator_url, settings.salesforce_timeout_s)
    if gate is None:
        return build_salesforce(settings, session)
    return gate.login(lambda: build_salesforce(settings, session))


def load_configured_mapping(settings: Settings) -> Mapping:
    if settings.mapping_file is not None:
        return load_mapping(settings.mapping_file)
    return load_default_mapping()


def build_context(
    settings: Settings | None = None, redis_url: str | None = None, *, read_only: bool = False
) -> WorkerContext:
    settings = settings or load_settings()
    url = redis_url or settings.redis_url or os.environ.get("REDIS_URL")
    if not url:
        from worker.state.server import find_embedded

        url = find_embedded(settings.data_dir)
    if not url:
        raise NotConfigured("REDIS_URL is not set and no embedded Redis is running")
    store = SyncStore.from_url(url, settings.redis_prefix, settings.ledger_max_entries)
    mapping = load_configured_mapping(settings)
    return WorkerContext(settings=settings, store=store, mapping=mapping, read_only=read_only)


_context: WorkerContext | None = None
_context_pid: int | None = None


def get_context() -> WorkerContext:
    """This process's context (rebuilt after a fork, never shared across one)."""
    global _context, _context_pid  # noqa: PLW0603 - one context per process is the point
    if _context is None or _context_pid != os.getpid():
        _context = build_context()
        _context_pid = os.getpid()
    return _context


def reset_context() -> None:
    """Forget the process context (tests and `crmsync demo` re-point the process)."""
    global _context, _context_pid  # noqa: PLW0603
    if _context is not None and _context_pid == os.getpid():
        _context.close()
    _context = None
    _context_pid = None
