"""Reading mapping files: the only I/O in the package, kept to reading text.

YAML is parsed twice from the same text: once into nodes (which remember their line numbers)
and once into plain data for the pydantic model. When the model refuses something, the error's
location is walked through the node tree so the message names the file, the line and the key:
an operator editing a 200-line mapping should not have to hunt.
Duplicate keys are refused too; plain YAML loading keeps the last one silently, which would
make the file say two things and do one.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from mappings.errors import MappingFileError
from mappings.model import Mapping

_FRIENDLY = {
    "extra_forbidden": "unknown key (not part of the mapping format)",
    "missing": "required key is missing",
}


def load_mapping(path: str | Path) -> Mapping:
    """Load and validate a mapping file; ``MappingFileError`` names the file, line and key."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise MappingFileError(source, [("", None, f"cannot read file: {exc}")]) from None
    return parse_mapping(text, source)


def load_default_mapping() -> Mapping:
    """The packaged ``default.yaml`` (the product documentation's WidgetsExpress example)."""
    text = resources.files("mappings").joinpath("default.yaml").read_text(encoding="utf-8")
    return parse_mapping(text, "mappings/default.yaml")


def parse_mapping(text: str, source: str = "<mapping>") -> Mapping:
    """Build a :class:`Mapping` from YAML text (pure: no file access)."""
    try:
        root, data = _parse_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise MappingFileError(source, [("", line, f"YAML syntax: {problem}")]) from None
    if root is None or not isinstance(data, dict):
        line = root.start_mark.line + 1 if root is not None else 1
        raise MappingFileError(source, [("", line, "the file must be a YAML mapping of keys")])
    duplicates = list(_duplicate_keys(root, ""))
    if duplicates:
        raise MappingFileError(source, duplicates)
    try:
        return Mapping.model_validate(data)
    except ValidationError as exc:
        problems: list[tuple[str, int | None, str]] = []
        for error in exc.errors(include_url=False):
            key, line = _locate(root, error["loc"])
            message = _FRIENDLY.get(error["type"], error["msg"]).removeprefix("Value error, ")
            if error["type"] in ("invalid_expression", "invalid_condition"):
                message += f" (got {_describe(error['input'])})"
            problems.append((key, line, message))
        raise MappingFileError(source, problems) from None


#: libyaml's parser when PyYAML was built with it (its wheels are), else the pure-Python one:
#: the same documents and errors, about ten times faster, and every crmsync process and the
#: test suite's hundreds of contexts parse the mapping.
_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _parse_yaml(text: str) -> tuple[yaml.Node | None, Any]:
    """The node tree (line numbers for error messages) and the plain data built from it,
    from one parse of ``text`` (safe constructors only: no tags that run code)."""
    loader = _LOADER(text)
    try:
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    finally:
        loader.dispose()
    return root, data


def _duplicate_keys(node: yaml.Node, path: str) -> Any:
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key_node, value_node in node.value:
            key = key_node.value
            child = f"{path}.{key}" if path else str(key)
            if key in seen:
                yield (child, key_node.start_mark.line + 1, "duplicate key")
            seen.add(key)
            yield from _duplicate_keys(value_node, child)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            yield from _duplicate_keys(item, f"{path}[{index}]")


def _locate(root: yaml.Node, loc: tuple[int | str, ...]) -> tuple[str, int]:
    """Follow a pydantic error location through the YAML nodes: (key path, 1-based line).

    Segments that match no node (the tag pydantic adds for a discriminated union, or a key
    that is missing) do not move the cursor, so the line is that of the nearest enclosing key.
    """
    node = root
    line = root.start_mark.line + 1
    parts: list[str] = []
    for segment in loc:
        moved = False
        if isinstance(node, yaml.MappingNode) and isinstance(segment, str):
            for key_node, value_node in node.value:
                if key_node.value == segment:
                    node, line, moved = value_node, key_node.start_mark.line + 1, True
                    break
        elif (
            isinstance(node, yaml.SequenceNode)
            and isinstance(segment, int)
            and 0 <= segment < len(node.value)
        ):
            node = node.value[segment]
            line, moved = node.start_mark.line + 1, True
        if isinstance(segment, int):
            parts.append(f"[{segment}]")
        elif moved or not parts or parts[-1].lstrip(".") != segment:
            parts.append(f".{segment}" if parts else segment)
    return "".join(parts), line


def _describe(value: object) -> str:
    """Name what the operator wrote without echoing values (they may be long or sensitive)."""
    if isinstance(value, dict):
        return "keys " + ", ".join(sorted(str(key) for key in value)) if value else "{}"
    return f"a {type(value).__name__}"
