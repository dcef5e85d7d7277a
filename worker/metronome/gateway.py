"""The one way the worker talks to Metronome: the official SDK, our errors, our retries.

The gateway is assembled from three parts, each with one job:

- ``transport.py`` -- the request core: the pooled httpx client, the circuit breaker's gate,
  the rate governor's turn, stamina retries of only what is safe to resend, and the
  translation of every failure into the error tree of ``errors.py``;
- ``customer_calls.py`` -- customers, custom fields, billing provider configurations;
- ``contract_calls.py`` -- contracts and the catalog (products, rate cards, packages);
- ``contract_edits.py`` -- one contract read back, and edits (expansions);

with ``answers.py`` reading each answer into our state values. Create one gateway per worker
process: its client is shared by the threads of a batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from worker.metronome.contract_calls import ContractCalls
from worker.metronome.contract_edits import ContractEditCalls
from worker.metronome.customer_calls import CustomerCalls
from worker.metronome.errors import PermanentError, TokenRefusedError
from worker.metronome.governor import Governor

if TYPE_CHECKING:
    from worker.settings import Settings


class MetronomeGateway(CustomerCalls, ContractCalls, ContractEditCalls):
    """Typed Metronome calls returning our state values and raising our errors."""

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        governor: Governor | None = None,
        gate: Callable[[], None] | None = None,
        on_refused: Callable[[TokenRefusedError], None] | None = None,
    ) -> MetronomeGateway:
        """``governor``: the deployment's shared one (worker.context builds it on Redis);
        without it the gateway is Ungoverned and says so. ``gate``: the token gate's and the
        circuit breaker's; ``on_refused``: the token gate's record of a refused token."""
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
            on_refused=on_refused,
        )
