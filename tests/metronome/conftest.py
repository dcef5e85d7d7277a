"""The Metronome emulator fixtures (tests/support/metronome_emulator.py) for the client's tests."""

from tests.support.metronome_emulator import (  # noqa: F401 (fixtures, found by name)
    desired_factory,
    emulator,
    engine,
    gateway,
    generations,
    running_emulator,
)
