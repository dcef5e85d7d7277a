"""A 5xx on the very first custom-field registration must not block every create for 24 h.

Found by the chaos run (seed 11): bootstrap sent ``addKey`` under a fixed Idempotency-Key;
Metronome caches a 5xx under its key, so every later bootstrap was answered the same cached
500 and no customer was created at all (103 closes dead-lettered as transient_exhausted).
"""

from __future__ import annotations

import pytest

from worker.metronome import InMemoryGenerations, MetronomeGateway, UpsertEngine
from worker.metronome.errors import ServerError
from worker.sandbox.metronome import MetronomeEmulator, MetronomeFaults

TOKEN = "bootstrap-token"


def test_bootstrap_succeeds_on_the_next_attempt_after_an_injected_500() -> None:
    # Seed 10 at rate 0.5: listKeys passes, then addKey gets a 500 (cached under its key).
    faults = MetronomeFaults(server_error_rate=0.5, seed=10)
    with MetronomeEmulator(token=TOKEN, faults=faults) as emulator:
        gateway = MetronomeGateway(TOKEN, emulator.url, retry_immediately=True)
        engine = UpsertEngine(gateway, InMemoryGenerations())
        try:
            with pytest.raises(ServerError):
                engine.bootstrap()
            assert emulator.faults_injected() == {"server_error": 1}
            assert emulator.custom_field_keys() == []
            emulator.set_faults(MetronomeFaults())
            engine.bootstrap()
        finally:
            gateway.close()
        keys = emulator.custom_field_keys()
    assert [(k["key"], k["enforce_uniqueness"]) for k in keys] == [("sfdc_account_id", True)]
