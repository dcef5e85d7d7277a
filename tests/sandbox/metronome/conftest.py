"""The Metronome emulator fixtures (tests/support/metronome_emulator.py) for its own tests."""

from tests.support.metronome_emulator import (  # noqa: F401 (fixtures, found by name)
    emulator,
    running_emulator,
)
