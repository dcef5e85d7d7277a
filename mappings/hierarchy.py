"""Finding the top-most parent for hierarchy roll-up.

The product docs' enterprise pattern: the enterprise is the Metronome customer and each
sub-organisation is an ingest alias on it. The parent chain arrives nested in the record
(``Account.Parent.Parent...``, one SOQL relationship hop per level), so walking it is pure.
Salesforce forbids hierarchy cycles, but a corrupt or hand-built record could still hold one,
and following it would pick an arbitrary "top": that is an error, not a guess.
"""

from __future__ import annotations

from typing import Any

from mappings.ids import to_18
from mappings.records import get_key

Problems = list[tuple[str, str]]


def find_top_account(
    account: dict[str, Any], account_id: str, max_depth: int
) -> tuple[dict[str, Any], str, int] | Problems:
    """``(top account, its 18-character id, levels climbed)`` or the problems found.

    A parent whose ``ParentId`` is set but whose ``Parent`` record is absent means the chain
    goes on past what was queried (deeper than ``max_depth``): mapping to a middle account
    would split one enterprise into several customers, so it is an error too.
    """
    seen = [account_id]
    current, current_id, path = account, account_id, "Account"
    for depth in range(max_depth + 1):
        parent = get_key(current, "Parent")
        if parent is None:
            if get_key(current, "ParentId") not in (None, "") and depth == max_depth:
                return [(f"{path}.ParentId", f"hierarchy is deeper than max_depth {max_depth}")]
            return current, current_id, depth
        path = f"{path}.Parent"
        if depth == max_depth:
            return [(path, f"hierarchy is deeper than max_depth {max_depth}")]
        if not isinstance(parent, dict):
            return [(path, "is not an object")]
        try:
            parent_id = to_18(get_key(parent, "Id"))
        except ValueError as exc:
            return [(f"{path}.Id", str(exc))]
        if parent_id in seen:
            return [(f"{path}.Id", f"hierarchy cycle: {parent_id} is its own ancestor")]
        seen.append(parent_id)
        current, current_id = parent, parent_id
    raise AssertionError("unreachable: the loop returns at depth == max_depth")
