"""Parent-to-child subqueries: ``SELECT Id, (SELECT Quantity FROM OpportunityLineItems ORDER
BY SortOrder) FROM Opportunity``.

Salesforce answers each parent row with the child relationship's result nested under the
relationship's name: ``{totalSize, done, records[]}`` when the row has children, ``null`` when
it has none, and a large child set pages through its own ``nextRecordsUrl`` (read with the
same queryMore call as the outer query). The child query's WHERE, ORDER BY and LIMIT apply
per parent. Children are grouped by parent once per query, so the query costs one pass over
the child table however many parents it returns.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from worker.sandbox.salesforce.schema import SObjectType, sobject_type
from worker.sandbox.salesforce.soql_parser import Query, SoqlError
from worker.sandbox.salesforce.store import Record

#: Runs a query on the store: its rows (filtered, ordered) and how to render one.
Runner = Callable[[Query], tuple[list[Record], Any]]


@dataclass(frozen=True, slots=True)
class ChildPlan:
    """One subquery compiled: the key it nests under, the child object and the query to
    run for it (its FROM already the child object's name), and its rows by parent id."""

    key: str
    sobject: SObjectType
    render_plan: Any
    rows_by_parent: dict[str, list[Record]]


def compile_children(query: Query, parent: SObjectType, run: Runner) -> tuple[ChildPlan, ...]:
    """Each subquery of ``query`` run once (``run`` executes a query on the store)."""
    plans = []
    seen: set[str] = set()
    for child in query.children:
        relationship = parent.child_relationship(child.sobject)
        if relationship is None:
            raise SoqlError(
                f"Didn't understand relationship '{child.sobject}' in FROM part of query "
                "call. If you are attempting to use a custom relationship, be sure to append "
                "the '__r' after the custom relationship name.",
                code="INVALID_TYPE",
            )
        if relationship.name in seen:
            raise SoqlError(f"duplicate subquery on {relationship.name}")
        seen.add(relationship.name)
        target = sobject_type(relationship.target)
        if target is None:
            raise SoqlError(
                f"sObject type '{relationship.target}' is not supported", "INVALID_TYPE"
            )
        unbounded = Query(child.fields, target.name, child.where, child.order_by, None)
        rows, render_plan = run(unbounded)
        by_parent: dict[str, list[Record]] = {}
        for row in rows:
            by_parent.setdefault(row[relationship.foreign_key], []).append(row)
        if child.limit is not None:
            by_parent = {k: v[: child.limit] for k, v in by_parent.items()}
        plans.append(ChildPlan(relationship.name, target, render_plan, by_parent))
    return tuple(plans)
