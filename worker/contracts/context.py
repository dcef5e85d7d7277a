"""What the contract step uses of a worker process's objects, named apart from the step so
the step's helpers (lifecycle, describe) can depend on it without depending on each other."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from mappings import Mapping
    from worker.contracts.engine import ContractEngine
    from worker.metronome import MetronomeGateway
    from worker.state.opportunities import ContractStore
    from worker.state.store import SyncStore


class ContractContext(Protocol):
    """What the contract step uses of a worker process's objects (the worker context has
    them all): named here so the step depends on these five, not on the context module that
    builds them from the settings."""

    @property
    def mapping(self) -> Mapping: ...

    @property
    def store(self) -> SyncStore: ...

    @property
    def contract_store(self) -> ContractStore: ...

    @property
    def contracts(self) -> ContractEngine: ...

    @property
    def gateway(self) -> MetronomeGateway: ...
