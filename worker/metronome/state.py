"""The former name of :mod:`worker.metronome.actual`, kept for importers outside the
metronome package until they switch (bench/chaos_verify.py, worker/contracts/step.py)."""

from worker.metronome.actual import (
    BillingConfigurationState,
    CatalogEntry,
    ContractState,
    CustomerState,
    ProductState,
    canonical_json,
)

__all__ = [
    "BillingConfigurationState",
    "CatalogEntry",
    "ContractState",
    "CustomerState",
    "ProductState",
    "canonical_json",
]
