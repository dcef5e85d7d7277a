"""Metronome's official OpenAPI spec as JSON Schema, for tests that hold the emulator's answers
and a client's requests to it.

The spec lives outside the repo (``<repo>/../shared/reference/metronome-openapi.json``, or
``$CRMSYNC_REFERENCE_DIR``); :func:`load_spec` skips the calling test, saying why, when it is
absent.

For the engine's tests: the emulator keeps every request body a route accepted
(``MetronomeEmulator.accepted_bodies("POST /v1/contracts/create")``), and
:func:`assert_requests_match_spec` checks such bodies against the spec's request schema
(``CreateContractPayload`` for a contract create), so "the emulator took it" also means "the
spec allows it" -- the emulator is lenient where the spec is not, never the other way round::

    spec = load_spec()
    assert_requests_match_spec(
        spec, "POST", "/v1/contracts/create",
        emulator.accepted_bodies("POST /v1/contracts/create"),
    )
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest

SPEC_NAME = "metronome-openapi.json"


def reference_dir() -> Path:
    override = os.environ.get("CRMSYNC_REFERENCE_DIR")
    if override:
        return Path(override)
    repo_root = Path(__file__).resolve().parents[2]
    return repo_root.parent / "shared" / "reference"


def load_spec() -> dict[str, Any]:
    """The parsed spec (read once per process), or a skip of the calling test."""
    path = reference_dir() / SPEC_NAME
    if not path.is_file():
        pytest.skip(f"Metronome OpenAPI spec not found at {path} (set CRMSYNC_REFERENCE_DIR)")
    return _read(path)


@cache
def _read(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def openapi_to_jsonschema(node: Any, spec: dict[str, Any], seen: tuple[str, ...] = ()) -> Any:
    """Inline ``$ref``s and turn OpenAPI 3.0 ``nullable`` into a JSON Schema null type."""
    if isinstance(node, list):
        return [openapi_to_jsonschema(item, spec, seen) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        ref = node["$ref"]
        if ref in seen:
            return {}
        target: Any = spec
        for part in ref.removeprefix("#/").split("/"):
            target = target[part]
        return openapi_to_jsonschema(target, spec, (*seen, ref))
    out = {
        k: openapi_to_jsonschema(v, spec, seen)
        for k, v in node.items()
        if k not in ("example", "examples", "nullable", "x-mint", "x-cf-entity")
    }
    if node.get("nullable"):
        kind = out.get("type")
        if isinstance(kind, str):
            out["type"] = [kind, "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    return out


def request_schema(spec: dict[str, Any], method: str, template: str) -> dict[str, Any] | None:
    """The JSON Schema of ``method template``'s request body, or None if it takes none
    (converted once per spec: CreateContractPayload inlines to a large tree)."""
    cache_key = (id(spec), method, template)
    if cache_key not in _REQUEST_SCHEMAS:
        _REQUEST_SCHEMAS[cache_key] = _request_schema(spec, method, template)
    return _REQUEST_SCHEMAS[cache_key]


_REQUEST_SCHEMAS: dict[tuple[int, str, str], dict[str, Any] | None] = {}


def _request_schema(spec: dict[str, Any], method: str, template: str) -> dict[str, Any] | None:
    operation = spec["paths"][template][method.lower()]
    body = operation.get("requestBody")
    if body is None:
        return None
    body = openapi_to_jsonschema(body, spec)
    schema: dict[str, Any] | None = (
        body.get("content", {}).get("application/json", {}).get("schema")
    )
    return schema


def request_errors(
    spec: dict[str, Any], method: str, template: str, bodies: Iterable[dict[str, Any]]
) -> list[str]:
    """One line per body that the spec's request schema refuses (empty: all conform)."""
    schema = request_schema(spec, method, template)
    if schema is None:
        return [f"{method} {template} takes no request body in the spec"]
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [
        f"body {n}: {error.json_path}: {error.message}"
        for n, body in enumerate(bodies)
        for error in validator.iter_errors(body)
    ]


def assert_requests_match_spec(
    spec: dict[str, Any], method: str, template: str, bodies: Iterable[dict[str, Any]]
) -> None:
    errors = request_errors(spec, method, template, bodies)
    assert not errors, f"{method} {template} requests the spec refuses:\n" + "\n".join(errors)
