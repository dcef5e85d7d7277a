"""How ``crmsync check`` reports: one line per finding, or one JSON object (``--json``).

Its own module so the quick health check (worker/commands/quick_check.py) prints exactly
what the full check prints, without importing the full check's dependencies.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import NamedTuple


class CheckResult(NamedTuple):
    """One finding (a NamedTuple: ``dataclasses`` would cost the quick check an import of
    ``inspect``)."""

    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'} {self.name}: {self.detail}"


def report(results: Sequence[CheckResult], as_json: bool) -> int:
    """Print ``results``; the exit code: 0 when every check passed, else 1."""
    ok = all(r.ok for r in results)
    if as_json:
        checks = [{"name": r.name, "ok": r.ok, "detail": r.detail} for r in results]
        print(json.dumps({"ok": ok, "checks": checks}, sort_keys=True))
        return 0 if ok else 1
    for result in results:
        print(result.line())
    return 0 if ok else 1
