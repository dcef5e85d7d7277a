"""The Kubernetes manifests: valid against the Kubernetes API schemas (kubernetes-validate,
which ships them: no cluster, no network), and shaped as README says a deployment must be."""

from __future__ import annotations

import argparse
import tomllib
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.support.deploy_files import KUBERNETES, manifests
from tests.support.processes import REPO_ROOT
from worker.cli import build_parser

#: The version the schemas are checked against (kubernetes-validate ships each release's).
KUBERNETES_VERSION = "1.30.0"


def workloads() -> dict[str, dict[str, Any]]:
    return {
        doc["metadata"]["labels"]["app.kubernetes.io/component"]: doc
        for _path, doc in manifests()
        if doc["kind"] in ("Deployment", "StatefulSet")
    }


@pytest.mark.parametrize(
    ("name", "doc"),
    [(f"{path.name}:{doc['kind']}/{doc['metadata']['name']}", doc) for path, doc in manifests()],
)
def test_every_manifest_validates_strictly(name: str, doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_a_broken_manifest_is_refused() -> None:
    _path, doc = next((p, d) for p, d in manifests() if d["kind"] == "Deployment")
    broken = {**doc, "spec": {**doc["spec"], "replicas": "two"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_the_services_readme_names_are_all_there() -> None:
    assert {"worker", "beat", "listener", "flower", "redis"} <= set(workloads())


def test_every_container_has_a_liveness_probe_resources_and_file_secrets() -> None:
    commands = {
        name
        for action in build_parser()._actions
        if isinstance(action, argparse._SubParsersAction)
        for name in action.choices
    }
    for component, doc in workloads().items():
        pod = doc["spec"]["template"]["spec"]
        for container in pod["containers"]:
            assert container["resources"]["requests"] and container["resources"]["limits"]
            assert "livenessProbe" in container or component == "redis", component
            assert not any(
                "valueFrom" in e and "secretKeyRef" in e["valueFrom"]
                for e in container.get("env", [])
            ), "secrets are files, never environment variables"
            if component != "redis":
                assert container["args"][0] in commands, component
        secret_volumes = [v for v in pod["volumes"] if "secret" in v]
        assert [v["secret"]["secretName"] for v in secret_volumes] == ["crmsync-secrets"]


def test_the_worker_probe_is_its_own_node_answering_without_quota() -> None:
    worker = workloads()["worker"]["spec"]["template"]
    [container] = worker["spec"]["containers"]
    probe = container["livenessProbe"]
    assert probe["exec"]["command"] == ["crmsync", "check", "--quick", "--this-host"]
    assert probe["failureThreshold"] == 3 and probe["initialDelaySeconds"] >= 30
    assert worker["metadata"]["annotations"]["prometheus.io/port"] == "9808"
    # Warm shutdown: a running sync (300 s hard limit) finishes before the pod is killed.
    assert worker["spec"]["terminationGracePeriodSeconds"] > 300


def test_the_config_names_only_real_settings() -> None:
    from worker.settings import Settings

    aliases: set[str] = set()
    for field in Settings.model_fields.values():
        choices = getattr(field.validation_alias, "choices", None) or []
        aliases |= {c for c in choices if isinstance(c, str)}
    [config] = [d for _p, d in manifests() if d["kind"] == "ConfigMap"]
    unknown = {k for k in config["data"] if k not in aliases and not k.startswith("FLOWER_")}
    assert not unknown, unknown


def test_the_image_is_named_in_one_place_the_kustomization() -> None:
    """Every crmsync container says ``image: crmsync``; kustomization.yaml's ``images:`` gives
    it a registry and a tag (the project's version until someone points it elsewhere)."""
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    assert listed == {path.name for path, _doc in manifests()}
    [override] = kustomization["images"]
    version = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert override == {"name": "crmsync", "newName": "crmsync", "newTag": version}
    for component, doc in workloads().items():
        for container in doc["spec"]["template"]["spec"]["containers"]:
            if component != "redis":
                assert container["image"] == "crmsync", component
