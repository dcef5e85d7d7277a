"""A Metronome API emulator on 127.0.0.1: the spec's endpoints, rules and failure modes."""

from worker.sandbox.metronome.emulator import MetronomeEmulator
from worker.sandbox.metronome.faults import MetronomeFaults

__all__ = ["MetronomeEmulator", "MetronomeFaults"]
