"""The Salesforce error tree: the docstring's drawing is the class hierarchy."""

from __future__ import annotations

import re

import pytest

from worker.salesforce import errors
from worker.settings import NotConfigured


def _drawn_parents() -> dict[str, str]:
    """Each class in the docstring's tree, with the class one indent level above it."""
    doc = errors.__doc__ or ""
    drawing = doc.split("::", 1)[1].split("\n\n", 2)[1]
    parents: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    for line in drawing.splitlines():
        match = re.match(r"^(\s*(?:[│ ]\s*)*(?:[├└]── )?)(\w+)", line)
        assert match is not None, line
        depth, name = len(match.group(1)), match.group(2)
        while stack and stack[-1][0] >= depth:
            stack.pop()
        if stack:
            parents[name] = stack[-1][1]
        stack.append((depth, name))
    return parents


def test_the_drawing_is_the_hierarchy() -> None:
    drawn = _drawn_parents()
    classes = {
        name: value
        for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, errors.SalesforceFailure)
    }
    assert set(drawn) | {"SalesforceFailure"} == set(classes)
    for name, parent in drawn.items():
        # The drawn parent is the first base; a second one may only be crmsync's one
        # NotConfigured (the CLI's "missing setting" line), never another Salesforce class.
        first, *others = classes[name].__bases__
        assert first is classes[parent], name
        assert others in ([], [NotConfigured]), name


@pytest.mark.parametrize("error", [errors.SalesforceUnreadable, errors.QuotaReached])
def test_what_passes_is_one_catch(error: type[errors.SalesforceFailure]) -> None:
    assert issubclass(error, errors.SalesforceUnavailable)
    assert not issubclass(errors.SessionExpired, errors.SalesforceUnavailable)
    assert issubclass(error, RuntimeError)  # as before the tree: `except RuntimeError` still holds
