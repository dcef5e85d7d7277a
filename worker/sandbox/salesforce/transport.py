"""Run the real simple-salesforce against the emulator: ``https://<any host>`` -> emulator.

The transport itself is the worker's generic loopback one (``worker/salesforce/loopback.py``,
which ``CRMSYNC_SALESFORCE_EMULATOR_URL`` also uses); these are its sandbox names. For tests,
``crmsync demo`` and ``crmsync sandbox`` clients only; never used when real credentials are
configured.
"""

from __future__ import annotations

from worker.salesforce.loopback import LoopbackAdapter
from worker.salesforce.loopback import loopback_session as emulator_session

EmulatorAdapter = LoopbackAdapter

__all__ = ["EmulatorAdapter", "emulator_session"]
