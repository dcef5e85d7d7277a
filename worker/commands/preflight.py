"""Before ``worker``, ``run`` and ``listen`` start: the mapping's fields against the org.

A mapped field the org does not have, or that the integration user cannot read, would fail
every poll; found here, the service does not start and says which field and what to do
(``worker/salesforce/org_schema.py``). A login Salesforce refuses (a wrong password) stops the
start the same way. What may pass by itself -- Salesforce unreachable, logins backing off
after refusals, a session refused -- is logged as one line and the service starts: its polls
report and wait, and the login gate keeps the logins bounded.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from worker.salesforce.logins import LoginGate, LoginRefused
from worker.salesforce.org_schema import FieldProblem, SchemaMismatch, field_problems
from worker.salesforce.trouble import diagnose
from worker.state.logins import LoginBackoff
from worker.state.stops import SalesforceStops

if TYPE_CHECKING:
    from mappings import Mapping
    from worker.commands.bootstrap import Runtime
    from worker.settings import Settings
    from worker.state.store import SyncStore

log = logging.getLogger(__name__)


def org_field_problems(
    settings: Settings, mapping: Mapping, store: SyncStore | None = None
) -> list[FieldProblem]:
    """Log in (through the login gate when a store is given) and describe the mapped objects.
    Raises what the login or the describe raised."""
    from worker.context import salesforce_client

    gate = None
    if store is not None:
        backoff = LoginBackoff(store.client, store.keys, max_wait_s=settings.login_backoff_max_s)
        gate = LoginGate(settings, backoff)
    return field_problems(salesforce_client(settings, gate), mapping)


def check_org(rt: Runtime) -> None:
    """Refuse to start on a mapped field the org refuses, or a refused login."""
    settings, mapping = rt.settings, rt.mapping
    if mapping is None or not settings.salesforce_configured:
        return
    store = rt.store()
    try:
        problems = org_field_problems(settings, mapping, store)
    except LoginRefused:
        raise
    except Exception as exc:
        trouble = diagnose(exc)
        why = trouble.line if trouble is not None else f"{type(exc).__name__}: {exc}"[:300]
        log.warning("could not check the mapped fields against Salesforce (%s); starting", why)
        return
    finally:
        store.client.close()
    if problems:
        raise SchemaMismatch.of(problems)
    log.info("the mapped Salesforce fields exist and are readable")
    _probe_now_if_fixed(rt)


def _probe_now_if_fixed(rt: Runtime) -> None:
    """The fields check out: polls stopped for a configuration problem ask again at once."""
    store = rt.store()
    try:
        SalesforceStops(store.client, store.keys).clear()
    except Exception as exc:  # they then ask again after CRMSYNC_LOGIN_BACKOFF_MAX_S anyway
        log.debug("Salesforce stop not cleared: %s", exc)
    finally:
        store.client.close()
