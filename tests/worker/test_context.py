"""The worker context: what building its engines asks of Metronome."""

from __future__ import annotations

import fakeredis
import pytest

from mappings import load_default_mapping
from worker.context import WorkerContext
from worker.sandbox.metronome import MetronomeEmulator
from worker.settings import load_settings
from worker.state.keys import Keys
from worker.state.store import SyncStore


def _key_writes(emulator: MetronomeEmulator) -> int:
    return sum(n for route, n in emulator.request_counts().items() if "addKey" in route)


@pytest.mark.parametrize(("read_only", "writes"), [(True, 0), (False, 2)])
def test_only_a_context_that_may_write_registers_the_custom_field_keys(
    read_only: bool, writes: int
) -> None:
    """``crmsync plan`` (read-only) on a fresh deployment must not register the customer's
    and the contract's custom field keys: that is a write, and a dry run makes none."""
    with MetronomeEmulator(token="t") as emulator:
        settings = load_settings(metronome_bearer_token="t", metronome_base_url=emulator.url)
        store = SyncStore(fakeredis.FakeRedis(decode_responses=True), Keys("u"))
        mapping = load_default_mapping()
        ctx = WorkerContext(settings=settings, store=store, mapping=mapping, read_only=read_only)
        try:
            assert ctx.engine is not None and ctx.contracts is not None
            assert _key_writes(emulator) == writes, emulator.request_counts()
        finally:
            ctx.close()
