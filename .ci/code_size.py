"""Fail when a production function or module outgrows what a reader can hold at once.

A function over MAX_LINES wants its steps named; a module over MAX_MODULE_LINES probably has
two jobs. Production code is everything under worker/, tasks/ and mappings/ except the
emulators (worker/sandbox/: their route tables are long by nature) and generated protobuf
code. A function's length counts from its first decorator to its last line, docstring and
comments included. README.md, the front door, is held to MAX_README_LINES. Run from the
repository root: ``python .ci/code_size.py`` (``make lint``).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

MAX_LINES = 80
MAX_MODULE_LINES = 400
#: The settings model lists every knob with its description in one class (about 330 lines
#: of fields); split across modules it would be harder to read, not easier.
MODULE_LIMITS = {"worker/settings/__init__.py": 500}
ROOTS = ("worker", "tasks", "mappings")
#: README is the front door (what it does, install, the two commands, a first sync, a map of
#: the code, links); whatever grows past this belongs in docs/.
MAX_README_LINES = 300
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
                f"{path}:{line}: {name} is {n} lines (max {MAX_LINES}): name its steps"
                for line, name, n in long_functions(path)
            ]
            limit = MODULE_LIMITS.get(path.as_posix(), MAX_MODULE_LINES)
            lines = len(path.read_text(encoding="utf-8").splitlines())
            if lines > limit:
                problems.append(f"{path}: {lines} lines (max {limit}): it has two jobs")
    readme = len(Path("README.md").read_text(encoding="utf-8").splitlines())
    if readme > MAX_README_LINES:
        problems.append(
            f"README.md: {readme} lines (max {MAX_README_LINES}): move the detail to docs/"
        )
    for problem in problems:
        print(problem)
    if problems:
        return 1
    print(
        f"code size: every production function is at most {MAX_LINES} lines, "
        f"every module at most {MAX_MODULE_LINES}; README {readme} lines (max {MAX_README_LINES})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
