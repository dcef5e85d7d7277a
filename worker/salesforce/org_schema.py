"""The mapping's fields against the org: every field it reads must exist and be readable.

A field the org does not have (a typo like ``Account.Nmae``, metadata never deployed) or that
the integration user cannot read (field-level security: the field is left out of the user's
describe and a query naming it fails with ``INVALID_FIELD``) would otherwise pass every local
check and fail every poll. ``crmsync check``, ``mapping check`` (with credentials) and the
start of ``worker``, ``run`` and ``listen`` describe the mapped objects --
``GET /services/data/vXX.X/sobjects/{Object}/describe/`` -- and refuse such a field with one
line naming the object, the field and the fix. A describe is cached per process (an object's
fields change with a deployment, which restarts the worker anyway); each costs one API call.

Relationship paths (``Account.Parent.Name``) are followed the way SOQL follows them: a
segment is a lookup field's ``relationshipName``, its ``referenceTo`` the next object.
"""

from __future__ import annotations

import difflib
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from simple_salesforce.exceptions import SalesforceResourceNotFound

from worker.salesforce.errors import SalesforceFailure

if TYPE_CHECKING:
    from simple_salesforce.api import Salesforce

    from mappings import Mapping

#: What fixes a field that exists in the mapping but not for the integration user.
FIX = (
    "correct the mapping (CRMSYNC_MAPPING), or deploy the field's metadata "
    "(`sf project deploy start` in mappings/salesforce) and assign the integration user the "
    "Crmsync_Integration permission set (docs/salesforce-setup.md)"
)

_CACHE: dict[tuple[str, str], dict[str, Any] | None] = {}
_CACHE_LOCK = threading.Lock()


@dataclass(frozen=True, slots=True)
class FieldProblem:
    """One mapped field the org refuses: ``path`` as the mapping writes it (from ``root``)."""

    root: str
    path: str
    sobject: str
    field: str
    suggestion: str | None = None

    def line(self) -> str:
        hint = f" (did you mean {self.sobject}.{self.suggestion}?)" if self.suggestion else ""
        return (
            f"Salesforce field {self.sobject}.{self.field} (mapped as {self.root}.{self.path}) "
            f"does not exist or the integration user cannot read it{hint}: {FIX}"
        )


class SchemaMismatch(SalesforceFailure):
    """The mapping reads fields the org refuses; one line per field. Pickles to itself."""

    def __init__(self, message: str) -> None:
        super().__init__(message)

    @classmethod
    def of(cls, problems: list[FieldProblem]) -> SchemaMismatch:
        return cls("\n".join(f"crmsync: {problem.line()}" for problem in problems))

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self),))


def describe(sf: Salesforce, sobject: str) -> dict[str, Any] | None:
    """The object's describe (None when the org has no such object for this user), cached."""
    key = (str(sf.base_url), sobject.lower())
    with _CACHE_LOCK:
        if key in _CACHE:
            return _CACHE[key]
    try:
        answer: dict[str, Any] | None = sf.restful(f"sobjects/{sobject}/describe/", method="GET")
    except SalesforceResourceNotFound:
        answer = None
    with _CACHE_LOCK:
        _CACHE[key] = answer
    return answer


def forget_describes() -> None:
    """Drop the cached describes (tests; a process that learns the org changed)."""
    with _CACHE_LOCK:
        _CACHE.clear()


def mapped_paths(mapping: Mapping) -> list[tuple[str, str]]:
    """(root object, field path) for every field the mapping's queries read."""
    paths = [("Opportunity", path) for path in mapping.opportunity_fields()]
    paths += [("Account", path) for path in mapping.account_fields()]
    return paths


def field_problems(sf: Salesforce, mapping: Mapping) -> list[FieldProblem]:
    """Every mapped field the org does not let the integration user read, once each."""
    problems: dict[tuple[str, str], FieldProblem] = {}
    for root, path in mapped_paths(mapping):
        problem = resolve(sf, root, path)
        if problem is not None:
            problems.setdefault((problem.sobject.lower(), problem.field.lower()), problem)
    return list(problems.values())


def resolve(sf: Salesforce, root: str, path: str) -> FieldProblem | None:
    """None when ``path`` leads from ``root`` to a readable field; else what is missing."""
    *hops, name = path.split(".")
    sobject = root
    for hop in hops:
        answer = describe(sf, sobject)
        if answer is None:
            return FieldProblem(root, path, sobject, hop)
        lookup = _relationship(answer, hop)
        if lookup is None:
            return FieldProblem(root, path, sobject, hop, _suggest(answer, hop, "relationshipName"))
        sobject = lookup
    answer = describe(sf, sobject)
    if answer is None:
        return FieldProblem(root, path, sobject, name)
    if any(str(f.get("name", "")).lower() == name.lower() for f in answer.get("fields", [])):
        return None
    return FieldProblem(root, path, sobject, name, _suggest(answer, name, "name"))


def _relationship(answer: dict[str, Any], hop: str) -> str | None:
    for field in answer.get("fields", []):
        if str(field.get("relationshipName") or "").lower() == hop.lower():
            targets = field.get("referenceTo") or []
            return str(targets[0]) if targets else None
    return None


def _suggest(answer: dict[str, Any], wrong: str, key: str) -> str | None:
    names = [str(f.get(key)) for f in answer.get("fields", []) if f.get(key)]
    close = difflib.get_close_matches(wrong, names, n=1, cutoff=0.75)
    return close[0] if close else None
