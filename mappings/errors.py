"""The two ways a mapping fails, kept apart because different people fix them.

Tree::

    ValueError
    ├── MappingFileError   the mapping file is wrong: the operator fixes the YAML
    └── MappingError       one record cannot become a valid customer: someone fixes the
                           Salesforce data (or the mapping), and the sync dead-letters it

``MappingError`` is a ``ValueError`` so a caller that only knows "bad input, do not retry"
handles it correctly; it is never retryable, because the same record maps the same way again.
"""

from __future__ import annotations


class MappingFileError(ValueError):
    """Raised when a mapping file cannot be loaded: bad YAML, unknown key, unsafe expression.

    The message names the file, the line and the key path, so the operator can go straight to
    the mistake.
    """

    def __init__(self, source: str, problems: list[tuple[str, int | None, str]]) -> None:
        self.source = source
        #: (key path, 1-based line or None, message), in document order.
        self.problems = problems
        lines = [f"{source}: invalid mapping ({len(problems)} problem(s))"]
        for key, line, message in problems:
            lines.append(f"  {source}:{line or '?'}: key {key or '<top>'}: {message}")
        super().__init__("\n".join(lines))


class MappingError(ValueError):
    """Raised when one record cannot yield a valid customer; lists every problem at once.

    All problems are collected before raising so one dead-letter entry tells the operator
    everything to fix, and no half-built customer ever leaves the mapping.
    """

    def __init__(self, record_id: str, problems: list[tuple[str, str]]) -> None:
        self.record_id = record_id
        #: (field path, message) pairs, in the order the mapping evaluates them.
        self.problems = problems
        detail = "; ".join(f"{path}: {message}" for path, message in problems)
        super().__init__(f"record {record_id} cannot be mapped: {detail}")
