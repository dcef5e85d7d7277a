"""Fail when a production function is longer than MAX_LINES (issue: a sync must read as steps).

Production code is everything under worker/, tasks/ and mappings/ except the emulators
(worker/sandbox/) and generated protobuf code. A function's length counts from its ``def``
line to its last line, docstring and comments included: what a reader has to hold at once.
Run from the repository root: ``python .ci/function_length.py`` (``make lint`` does).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

MAX_LINES = 80
ROOTS = ("worker", "tasks", "mappings")
SKIPPED = ("worker/sandbox/", "pubsub_pb2")


def long_functions(path: Path) -> list[tuple[int, str, int]]:
    """(line, name, length) of every function in ``path`` longer than MAX_LINES."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            length = (node.end_lineno or node.lineno) - start + 1
            if length > MAX_LINES:
                found.append((node.lineno, node.name, length))
    return found


def main() -> int:
    problems = []
    for root in ROOTS:
        for path in sorted(Path(root).rglob("*.py")):
            if any(part in path.as_posix() for part in SKIPPED):
                continue
            problems += [
                f"{path}:{line}: {name} is {n} lines (max {MAX_LINES})"
                for line, name, n in long_functions(path)
            ]
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} production function(s) over {MAX_LINES} lines: name their steps")
        return 1
    print(f"function length: every production function is at most {MAX_LINES} lines")
    return 0


if __name__ == "__main__":
    sys.exit(main())
