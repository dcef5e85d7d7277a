"""The Metronome emulator fixtures (tests/support/metronome_emulator.py) for the contract step."""

from tests.support.metronome_emulator import (  # noqa: F401 (fixtures, found by name)
    emulator,
    gateway,
    running_emulator,
)
