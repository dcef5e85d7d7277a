"""Metronome: the gateway (SDK, errors, retries) and the upsert engine (find, plan, apply)."""

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
