"""crmsync's environment variables: how a setting's name becomes its variable, which
variables a child process must not inherit, and the data directory's default.

The rule: a field named after another system (``salesforce_``, ``metronome_``, ``redis_``,
``flower_``) is that system's variable in capitals (``SALESFORCE_USERNAME``, ``REDIS_URL``);
every other field is one of crmsync's own knobs, ``CRMSYNC_`` + its name in capitals
(``CRMSYNC_POLL_INTERVAL_S``). The settings model applies it as its alias generator; the few
fields whose variable breaks it (crmsync's own knobs about Redis or Salesforce, and
``CRMSYNC_MAPPING``) say so with their own ``validation_alias``. The names are the operators'
interface and never change.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import AliasChoices

#: Field name prefixes that name another system: its variables keep that system's prefix.
OTHER_SYSTEMS = ("salesforce_", "metronome_", "redis_", "flower_")

#: Prefixes of every variable crmsync reads (Flower's credentials included). A child process
#: started for one configuration (a test's stack, a benchmark, the demo's worker) must not
#: inherit another's: real credentials in the caller's environment would mix into it.
SETTINGS_PREFIXES = ("CRMSYNC_", "SALESFORCE_", "METRONOME_", "REDIS_", "FLOWER_")


def variable_for(field_name: str) -> AliasChoices:
    """The environment variable a field is read from, by the rule above (the field's own name
    is accepted too, for ``Settings(poll_interval_s=...)``)."""
    upper = field_name.upper()
    variable = upper if field_name.startswith(OTHER_SYSTEMS) else f"CRMSYNC_{upper}"
    return AliasChoices(variable, field_name)


def child_environment(configuration: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without crmsync's variables, plus ``configuration``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(SETTINGS_PREFIXES)}
    env.update(configuration)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def default_data_dir() -> Path:
    """Where embedded Redis keeps its files: ``$XDG_DATA_HOME/crmsync`` or ``~/.local/share``."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "crmsync"
