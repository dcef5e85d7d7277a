"""Metronome: the gateway (SDK, errors, retries) and the upsert engine (find, plan, apply).

Importing the package imports none of its modules (PEP 562, names resolved on first use):
every command imports ``worker.metronome.errors``, and that must not load the SDK, httpx and the
engine into a process that only reads Redis.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from worker.metronome.actual import BillingConfigurationState, CustomerState
    from worker.metronome.engine import SyncOutcome, UpsertEngine
    from worker.metronome.gateway import MetronomeGateway
    from worker.metronome.idempotency import IdempotencyGenerations, InMemoryGenerations
    from worker.metronome.plan import SyncPlan, plan_sync

__all__ = [
    "BillingConfigurationState",
    "CustomerState",
    "IdempotencyGenerations",
    "InMemoryGenerations",
    "MetronomeGateway",
    "SyncOutcome",
    "SyncPlan",
    "UpsertEngine",
    "plan_sync",
]

#: Each public name and the module that defines it.
_DEFINED_IN = {
    "BillingConfigurationState": "worker.metronome.actual",
    "CustomerState": "worker.metronome.actual",
    "SyncOutcome": "worker.metronome.engine",
    "UpsertEngine": "worker.metronome.engine",
    "MetronomeGateway": "worker.metronome.gateway",
    "IdempotencyGenerations": "worker.metronome.idempotency",
    "InMemoryGenerations": "worker.metronome.idempotency",
    "SyncPlan": "worker.metronome.plan",
    "plan_sync": "worker.metronome.plan",
}


def __getattr__(name: str) -> Any:
    try:
        module = _DEFINED_IN[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    return getattr(import_module(module), name)
