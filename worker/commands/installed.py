"""crmsync's installed version, read the cheap way.

``importlib.metadata`` costs ~0.1 s of imports (email, zipfile, csv ...), paid by
``crmsync --version`` and by the quick health check's stamp key. The version is one line of
the ``crmsync-*.dist-info/METADATA`` file on ``sys.path``, found in the same order
``importlib.metadata`` searches it.
"""

from __future__ import annotations

import os
import sys

NOT_INSTALLED = "unknown (not installed)"


def installed_version() -> str:
    """The ``Version:`` of the first crmsync distribution on ``sys.path``."""
    for entry in sys.path:
        directory = entry or "."
        try:
            names = sorted(os.listdir(directory))
        except OSError:
            continue
        for name in names:
            if name.startswith("crmsync-") and name.endswith(".dist-info"):
                found = _metadata_version(os.path.join(directory, name, "METADATA"))
                if found is not None:
                    return found
    return NOT_INSTALLED  # run from a source tree that was never installed


def _metadata_version(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as metadata:
            for line in metadata:
                if line.startswith("Version:"):
                    return line.partition(":")[2].strip()
                if not line.strip():  # the headers end at the first empty line
                    break
    except OSError:
        return None
    return None
