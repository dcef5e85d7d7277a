"""The configuration's two errors: a value that cannot be used, and a value that is missing.

Both are meant for an operator's eyes: the CLI prints them as they are, without a traceback,
and exits 2 (worker/commands/errors.py).
"""

from __future__ import annotations


class SettingsError(Exception):
    """The configuration cannot be used; the message is meant for an operator's eyes.

    ``problems`` holds one line per wrong variable (``VARIABLE: what is wrong``), so
    ``crmsync check`` can print each on its own line and the CLI can print them without a
    traceback.
    """

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(f"crmsync: configuration: {p}" for p in problems))


class NotConfigured(RuntimeError):
    """A setting the operation needs is missing (a Metronome token, a Salesforce login, a
    Redis URL); the message names it and what to do, often ``crmsync demo``. crmsync's one
    "not configured" error: the Salesforce package's ``SalesforceNotConfigured`` is a kind
    of it, so one ``except NotConfigured`` catches every missing setting."""
