"""No Docker engine runs here, so the compose file and Dockerfile are checked against the code:
the compose-spec JSON schema (shipped by check-jsonschema), the settings model, the CLI's own
parser, README's configuration table and the lock file."""

from __future__ import annotations

import copy
import json
import re
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml

from worker.cli import build_parser
from worker.settings import SECRET_FILES, Settings, environment_variable_names

ROOT = Path(__file__).resolve().parents[2]

#: Settings a deployment never sets, and why.
NOT_FOR_COMPOSE = {
    "CRMSYNC_DATA_DIR": "the embedded Redis only; compose runs its own Redis",
    "CRMSYNC_SALESFORCE_EMULATOR_URL": "loopback emulators only (sandbox, demo, tests)",
    "CRMSYNC_RETRY_IMMEDIATELY": "a testing switch",
    "CRMSYNC_PUBSUB_EMULATOR_ADDRESS": "loopback emulators only (sandbox, demo, tests)",
    "CRMSYNC_LISTENER_CRASH_AFTER_ENQUEUE": "a testing switch",
    "FLOWER_USER": "flower's own environment",
    "FLOWER_PASSWORD": "flower's own environment (as FLOWER_PASSWORD_FILE)",
    "FLOWER_PASSWORD_FILE": "flower's own environment",
    "SALESFORCE_PRIVATE_KEY": "given as SALESFORCE_PRIVATE_KEY_FILE, in the config mount",
}


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def _crmsync_services() -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in _compose()["services"].items()
        if service.get("image", "").startswith("${CRMSYNC_IMAGE:-crmsync}") or "build" in service
    }


def _env_name(field: str) -> str:
    alias = Settings.model_fields[field].validation_alias
    return str(alias.choices[0])  # type: ignore[union-attr]


def _compose_schema() -> dict[str, Any]:
    text = (
        resources.files("check_jsonschema.builtin_schemas.vendor")
        .joinpath("compose-spec.json")
        .read_text("utf-8")
    )
    schema: dict[str, Any] = json.loads(text)
    return schema


def test_compose_file_is_valid_against_the_compose_spec_schema() -> None:
    schema = _compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(_compose())]
    assert not errors, errors
    # The schema is strict enough to catch a typo (so a pass above means something).
    broken = copy.deepcopy(_compose())
    broken["services"]["worker"]["healtcheck"] = broken["services"]["worker"].pop("healthcheck")
    assert list(validator.iter_errors(broken))


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


@pytest.mark.parametrize("name", ["worker", "beat", "listener"])
def test_every_setting_is_passed_through(name: str) -> None:
    """A setting the compose file leaves out cannot be set in a deployment at all (17 were)."""
    environment = _crmsync_services()[name]["environment"]
    as_files = {_env_name(secret) for secret in SECRET_FILES}  # X given as X_FILE, a secret
    missing = sorted(
        environment_variable_names() - set(environment) - set(NOT_FOR_COMPOSE) - as_files
    )
    assert not missing, f"{name} does not pass through {missing}"


@pytest.mark.parametrize("name", ["worker", "beat", "listener", "flower"])
def test_secrets_come_from_mounted_files_never_from_the_environment(name: str) -> None:
    service = _crmsync_services()[name]
    environment = service["environment"]
    mounted = {f"/run/secrets/{secret}" for secret in service.get("secrets", [])}
    for secret, file_field in SECRET_FILES.items():
        assert _env_name(secret) not in environment, f"{name}: {_env_name(secret)} in plain"
        value = environment.get(_env_name(file_field))
        default = re.sub(r"^\$\{\w+-(.*)\}$", r"\1", value) if value else None
        if default and default.startswith("/run/secrets/"):
            assert default in mounted, f"{name}: {default} is not mounted"
    declared = set(_compose()["secrets"])
    assert set(service.get("secrets", [])) <= declared


def test_flower_is_never_open() -> None:
    flower = _crmsync_services()["flower"]
    env = flower["environment"]
    # ${VAR:?message} makes compose refuse to start without a user; the password is a secret.
    assert re.fullmatch(r"\$\{FLOWER_USER:\?.+\}", env["FLOWER_USER"])
    assert env["FLOWER_PASSWORD_FILE"] == "/run/secrets/flower_password"
    assert "flower_password" in flower["secrets"]
    assert all(port.startswith("127.0.0.1:") for port in flower["ports"])
    # Least privilege: Flower reads Redis only.
    assert not any(k.startswith(("SALESFORCE_", "METRONOME_")) for k in env)


def test_redis_has_a_password_bounded_memory_aof_and_never_evicts() -> None:
    redis = _compose()["services"]["redis"]
    script = " ".join(redis["command"])
    assert "--maxmemory-policy noeviction" in script
    assert re.search(r"--maxmemory \d+[mg]b", script)
    assert "--appendonly yes" in script
    # The password comes from the secret, on stdin: never on a command line.
    assert "requirepass $$(cat /run/secrets/redis_password)" in script
    assert "redis-server - " in script
    assert "redis_password" in redis["secrets"]
    assert "REDISCLI_AUTH" in " ".join(redis["healthcheck"]["test"])


def test_images_are_pinned() -> None:
    redis = _compose()["services"]["redis"]["image"]
    assert re.fullmatch(r"redis:\d+\.\d+\.\d+-alpine@sha256:[0-9a-f]{64}", redis)
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    expected = f"${{CRMSYNC_IMAGE:-crmsync}}:${{CRMSYNC_IMAGE_TAG:-{version}}}"
    for name, service in _crmsync_services().items():
        assert service["image"] == expected, name
    dockerfile = (ROOT / "Dockerfile").read_text()
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", dockerfile, re.M)
    assert base is not None
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm@sha256:[0-9a-f]{64}", base.group(1))
    assert re.findall(r"^FROM (\S+)", dockerfile, re.M) == ["${PYTHON_IMAGE}"] * 2


def test_every_service_has_limits_and_rotated_logs() -> None:
    for name, service in _compose()["services"].items():
        limits = service["deploy"]["resources"]["limits"]
        assert limits["cpus"] and limits["memory"], name
        assert service["logging"]["driver"] == "json-file", name
        assert service["logging"]["options"]["max-size"], name


def test_the_mapping_and_key_files_are_mounted_read_only() -> None:
    for name in ("worker", "beat", "listener"):
        service = _crmsync_services()[name]
        assert any(v.endswith(":/etc/crmsync:ro") for v in service["volumes"]), name


def test_dockerfile_is_multi_stage_and_installs_the_lock() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "crmsync" in project["project"]["scripts"]
    assert 'ENTRYPOINT ["crmsync"]' in dockerfile
    for copied in re.findall(r"^COPY (?!--from)(\S+) ", dockerfile, re.M):
        assert (ROOT / copied).exists(), f"Dockerfile copies missing {copied}"
    build, runtime = dockerfile.split("AS runtime")
    assert "--require-hashes -r requirements.lock" in build
    # No compiler in the image that ships: the runtime stage installs nothing.
    assert "apt-get" not in runtime and "gcc" not in runtime and "pip install" not in runtime
    assert "COPY --from=build /opt/crmsync /opt/crmsync" in runtime
    assert re.search(r"^USER crmsync$", runtime, re.M)


def test_the_lock_files_cover_pyproject() -> None:
    """Every declared dependency is pinned with hashes (the Makefile also runs pip check)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for lock, requirements in (
        ("requirements.lock", project["dependencies"]),
        (
            "requirements-dev.lock",
            project["dependencies"] + project["optional-dependencies"]["dev"],
        ),
    ):
        text = (ROOT / lock).read_text()
        pinned = {
            m.group(1).lower().replace("_", "-")
            for m in re.finditer(r"^([A-Za-z0-9_.-]+)==\S+.*\\\n\s+--hash=sha256:", text, re.M)
        }
        for requirement in requirements:
            name = re.match(r"[A-Za-z0-9_.-]+", requirement)
            assert name is not None
            assert name.group(0).lower().replace("_", "-") in pinned, (
                f"{lock} lacks {name.group(0)}"
            )


@pytest.mark.parametrize("name", ["worker", "beat", "listener"])
def test_health_checks_are_real_check_commands(name: str) -> None:
    test = _crmsync_services()[name]["healthcheck"]["test"]
    assert test[:2] == ["CMD", "crmsync"]
    args = build_parser().parse_args(test[2:])
    assert args.command == "check"
    # Every interval on every replica: no Salesforce or Metronome call, no quota spent.
    assert args.quick


def test_the_worker_health_check_asks_its_own_node() -> None:
    args = build_parser().parse_args(_crmsync_services()["worker"]["healthcheck"]["test"][2:])
    assert args.this_host


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


def test_readme_configuration_table_is_the_settings_model() -> None:
    """Every variable named in the table is one the model reads, and the reverse."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Configuration", 1)[1].split("\n### ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    named = {name for row in rows for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split("|")[1])}
    assert named == environment_variable_names()
