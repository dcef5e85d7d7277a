"""No Docker engine runs here, so the compose file and Dockerfile are checked against the code."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from worker.cli import build_parser
from worker.settings import environment_variable_names

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def _crmsync_services() -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in _compose()["services"].items()
        if service.get("image", "").startswith("crmsync") or "build" in service
    }


def test_compose_has_the_five_services() -> None:
    assert set(_compose()["services"]) == {"redis", "worker", "beat", "listener", "flower"}
    assert set(_crmsync_services()) == {"worker", "beat", "listener", "flower"}


@pytest.mark.parametrize("name", ["worker", "beat", "listener", "flower"])
def test_each_service_command_is_accepted_by_the_real_cli(name: str) -> None:
    command = _crmsync_services()[name]["command"]
    args = build_parser().parse_args(command)  # SystemExit (a failure) on an unknown command
    assert args.command == command[0]


@pytest.mark.parametrize("name", ["worker", "beat", "listener", "flower"])
def test_each_service_variable_is_a_setting(name: str) -> None:
    known = environment_variable_names()
    environment = _crmsync_services()[name]["environment"]
    unknown = sorted(set(environment) - known)
    assert not unknown, f"{name} sets variables the settings model does not read: {unknown}"


def test_flower_is_never_open() -> None:
    flower = _crmsync_services()["flower"]
    env = flower["environment"]
    # ${VAR:?message} makes compose refuse to start without credentials.
    assert re.fullmatch(r"\$\{FLOWER_USER:\?.+\}", env["FLOWER_USER"])
    assert re.fullmatch(r"\$\{FLOWER_PASSWORD:\?.+\}", env["FLOWER_PASSWORD"])
    assert all(port.startswith("127.0.0.1:") for port in flower["ports"])


def test_redis_service_never_evicts_the_queue() -> None:
    command = _compose()["services"]["redis"]["command"]
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"


def test_dockerfile_entrypoint_is_the_console_script() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "crmsync" in project["project"]["scripts"]
    assert 'ENTRYPOINT ["crmsync"]' in dockerfile
    for copied in re.findall(r"^COPY (\S+) ", dockerfile, re.M):
        assert (ROOT / copied).exists(), f"Dockerfile copies missing {copied}"


@pytest.mark.parametrize("name", ["worker", "beat", "listener"])
def test_health_checks_are_real_check_commands(name: str) -> None:
    test = _crmsync_services()[name]["healthcheck"]["test"]
    assert test[:2] == ["CMD", "crmsync"]
    args = build_parser().parse_args(test[2:])
    assert args.command == "check"
    # Every interval on every replica: no Salesforce or Metronome call, no quota spent.
    assert args.quick


def test_flower_health_check_uses_its_open_healthcheck_endpoint() -> None:
    flower = _crmsync_services()["flower"]
    port = build_parser().parse_args(flower["command"]).port
    assert f"127.0.0.1:{port}/healthcheck" in " ".join(flower["healthcheck"]["test"])


def test_worker_serves_metrics_from_a_private_multiprocess_directory() -> None:
    worker = _crmsync_services()["worker"]
    args = build_parser().parse_args(worker["command"])
    assert args.metrics_port is not None
    assert str(args.metrics_port) in [str(p) for p in worker["expose"]]
    assert "ports" not in worker, "metrics are for the scraper on the compose network only"
    metrics_dir = worker["environment"]["CRMSYNC_METRICS_DIR"]
    assert metrics_dir in worker["tmpfs"]
    exposed = re.search(r"^EXPOSE (.+)$", (ROOT / "Dockerfile").read_text(), re.M)
    assert exposed is not None and str(args.metrics_port) in exposed.group(1).split()
