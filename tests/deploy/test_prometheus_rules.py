"""The alert rules: valid for Prometheus, and every alert fires on a series that should fire it
and stays quiet on one that should not (``promtool test rules``). promtool comes from Debian's
``prometheus`` package (.ci/run installs it); without it these tests skip and say so."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from tests.support.deploy_files import RULE_TESTS, RULES, dashboard_exprs, rules

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool not installed (apt-get install prometheus): alert rules NOT checked",
)


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args],
        cwd=RULES.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    tests = [case for path in RULE_TESTS for case in yaml.safe_load(path.read_text())["tests"]]
    cases: dict[str, list[int]] = {}
    for case in tests:
        for check in case["alert_rule_test"]:
            cases.setdefault(check["alertname"], []).append(len(check["exp_alerts"]))
    alerts = {rule["alert"] for rule in rules()}
    assert set(cases) == alerts
    for alert, expected in cases.items():
        assert 0 in expected and any(expected), f"{alert} needs a quiet and a firing case"


def test_every_alert_says_what_to_do() -> None:
    for rule in rules():
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}
        assert rule["annotations"]["summary"] and rule["annotations"]["action"], rule["alert"]


@needs_promtool
def test_promtool_accepts_the_rules() -> None:
    result = promtool("check", "rules", RULES.name)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_rule_unit_tests_pass() -> None:
    result = promtool("test", "rules", *(path.name for path in RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


@needs_promtool
def test_every_dashboard_query_is_valid_promql(tmp_path: object) -> None:
    """promtool has no "check expression": each query becomes a recording rule."""
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    recorded = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"crmsync:dashboard_query_{n}", "expr": expr}
                    for n, expr in enumerate(dashboard_exprs())
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump(recorded))
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
