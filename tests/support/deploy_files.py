"""What the deploy/ files refer to: metric names in PromQL, and the files themselves."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from tests.support.processes import REPO_ROOT

DEPLOY = REPO_ROOT / "deploy"
RULES = DEPLOY / "prometheus" / "crmsync-rules.yml"
#: The alert rules' unit tests: the day-long alerts have a file of their own (a coarser
#: evaluation interval, see its header).
RULE_TESTS = (
    DEPLOY / "prometheus" / "crmsync-rules.test.yml",
    DEPLOY / "prometheus" / "crmsync-rules.daily.test.yml",
)
DASHBOARD = DEPLOY / "grafana" / "crmsync-dashboard.json"
KUBERNETES = DEPLOY / "kubernetes"

_METRIC = re.compile(r"\bcrmsync_[a-z_]+\b")


def metric_names(expr: str) -> set[str]:
    """The crmsync metric names a PromQL expression reads (a histogram's by its base name)."""
    names = set(_METRIC.findall(expr))
    return {re.sub(r"_(bucket|count|sum)$", "", n) if n.endswith("_bucket") else n for n in names}


def rules() -> list[dict[str, Any]]:
    loaded = yaml.safe_load(RULES.read_text())
    return [rule for group in loaded["groups"] for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    board = json.loads(DASHBOARD.read_text())
    return [t["expr"] for panel in board["panels"] for t in panel.get("targets", [])]


def names_used() -> set[str]:
    used: set[str] = set()
    for rule in rules():
        used |= metric_names(rule["expr"])
    for expr in dashboard_exprs():
        used |= metric_names(expr)
    return used


def manifests() -> list[tuple[Path, dict[str, Any]]]:
    return [
        (path, doc)
        for path in sorted(KUBERNETES.glob("*.yaml"))
        if path.name != "kustomization.yaml"  # kustomize's, not the API's
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]
