"""``make lint``'s dependency audit: pip-audit over the installed environment, offline-tolerant.

A known vulnerability in a dependency fails the build. An audit that cannot reach the
vulnerability database (an offline machine, a sandbox, an outage) must not: it prints that it
was skipped and why, and passes. Telling the two apart matters, so the decision is made on
pip-audit's JSON report, not on its exit status alone (it exits 1 in both cases).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import Any

#: What pip-audit (requests/urllib3 underneath) prints when the service is out of reach.
UNREACHABLE = re.compile(
    r"ConnectionError|ConnectTimeout|ReadTimeout|Max retries exceeded|NameResolution|"
    r"Temporary failure in name resolution|ProxyError|timed out|Network is unreachable|"
    r"Connection refused|SSLError",
    re.IGNORECASE,
)


def verdict(returncode: int, stdout: str, stderr: str) -> tuple[int, str]:
    """(exit status, message) for one pip-audit run; pure, so it is unit-tested."""
    report: dict[str, Any] | None
    try:
        loaded = json.loads(stdout) if stdout.strip() else None
        report = loaded if isinstance(loaded, dict) else None
    except ValueError:
        report = None
    if report is not None:
        dependencies = report.get("dependencies") or []
        vulnerable = [
            f"{d.get('name')} {d.get('version')}: "
            + ", ".join(str(v.get("id")) for v in d.get("vulns") or [])
            for d in dependencies
            if d.get("vulns")
        ]
        if vulnerable:
            return 1, "dependency audit: known vulnerabilities:\n  " + "\n  ".join(vulnerable)
        if returncode == 0:
            return 0, f"dependency audit: no known vulnerability in {len(dependencies)} packages"
    if returncode == 0:
        return 0, "dependency audit: no known vulnerability"
    if UNREACHABLE.search(stderr):
        reason = next((line for line in stderr.splitlines() if UNREACHABLE.search(line)), "")
        return 0, (
            "dependency audit SKIPPED: the vulnerability database is unreachable from this "
            f"machine ({reason.strip()[:200]}); run `make lint` where it is reachable (CI)"
        )
    return returncode, "dependency audit failed:\n" + stderr.strip()[-2000:]


def main() -> int:
    command = [
        sys.executable,
        "-m",
        "pip_audit",
        "--skip-editable",
        "--progress-spinner",
        "off",
        "--format",
        "json",
        "--timeout",
        "15",
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    except subprocess.TimeoutExpired:
        print("dependency audit SKIPPED: pip-audit did not finish within 600 s")
        return 0
    if "No module named pip_audit" in done.stderr:
        print("dependency audit failed: pip-audit is not installed (make re-installs .[dev])")
        return 1
    status, message = verdict(done.returncode, done.stdout, done.stderr)
    print(message)
    return status


if __name__ == "__main__":
    sys.exit(main())
