"""Salesforce rows -> one snapshot per account, and the poll's batched "no customer yet" hint.

The poll, a re-sync and the change-event listener all turn rows into syncs the same way: the
latest row of an account wins and carries the account's other won deals along, and owners
without a Metronome customer are looked up once per chunk instead of once per sync.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from mappings.contracts.engine import WON_OPPORTUNITIES_KEY
from worker.logs import inherit_task, running_task
from worker.metronome.errors import TokenRefusedError
from worker.outages.metronome import BreakerOpenError

if TYPE_CHECKING:
    from worker.context import WorkerContext

log = logging.getLogger(__name__)

#: GET /v1/customers accepts at most 100 salesforce_account_ids per call.
FIND_BATCH = 100
#: Rows grouped per enqueue round: bounds memory while streaming; 500 is a quarter page.
CHUNK_ROWS = 500
#: A chunk's find calls go out at once (each still takes its turn from the rate governor):
#: one after another, at ~100 ms per call, they held back the chunk's syncs by half a second
#: and made the finds alone of a 100,000-row poll take 100 s.
FIND_THREADS = CHUNK_ROWS // FIND_BATCH


def group_by_account(rows: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """One record per account: the latest row wins (rows arrive in SystemModstamp order).

    The account's other won opportunities of the chunk ride along in the record (under
    ``WON_OPPORTUNITIES_KEY``, without their copy of the Account): two deals won on one
    account in one poll interval are two contracts, and the customer is still built once.
    """
    grouped: dict[str, dict[str, Any]] = {}
    others: dict[str, dict[str, dict[str, Any]]] = {}
    for row in rows:
        account = row.get("Account")
        account_id = row.get("AccountId") or (
            account.get("Id") if isinstance(account, dict) else None
        )
        if not account_id:
            continue
        key = str(account_id)
        previous = grouped.get(key)
        if previous is not None and previous.get("Id") != row.get("Id"):
            others.setdefault(key, {})[str(previous.get("Id"))] = {
                k: v for k, v in previous.items() if k not in ("Account", WON_OPPORTUNITIES_KEY)
            }
        grouped[key] = row
    for key, extra in others.items():
        latest = grouped[key]
        extra.pop(str(latest.get("Id")), None)
        if extra:
            grouped[key] = {**latest, WON_OPPORTUNITIES_KEY: list(extra.values())}
    return grouped


def chunks(rows: Iterator[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def find_absent(
    ctx: WorkerContext, records: dict[str, dict[str, Any]], *, force: bool = False
) -> set[str]:
    """Accounts (of ``records``) whose owner has no Metronome customer: one batched list call
    (GET /v1/customers?salesforce_account_ids=, 100 ids) instead of a find in every sync.

    Only accounts that will really sync are looked up: mapped cleanly, hash changed (unless
    ``force``), and no customer id cached. A hint, never a guarantee: if a customer appears
    meanwhile, the sync's create answers 409 on the identity alias and the engine adopts it.
    On any Metronome error, or while Metronome's circuit breaker is open, the hint is skipped
    (the syncs find for themselves, or park), so the poll never depends on Metronome.
    """
    from mappings import MappingError

    try:
        ctx.metronome_token.gate()
        ctx.metronome_breaker.gate()
    except (BreakerOpenError, TokenRefusedError):
        # Metronome's breaker is open, or it refuses the token: no hint, the syncs park
        # without a call.
        return set()
    mapped: dict[str, tuple[str, str]] = {}  # account -> (owner, state hash)
    for account_id, record in records.items():
        try:
            desired = ctx.mapping.map_record(record)
        except MappingError:
            continue
        mapped[account_id] = (desired.salesforce_account_id, desired.state_hash())
    # One round trip for the chunk's states (and their owners'), not one per account.
    states = ctx.store.account_states([*mapped, *(owner for owner, _hash in mapped.values())])
    owners: dict[str, list[str]] = {}
    for account_id, (owner, state_hash) in mapped.items():
        if not force and states[account_id].state_hash == state_hash:
            continue
        if not states[owner].customer_id:
            owners.setdefault(owner, []).append(account_id)
    absent: set[str] = set()
    pending = list(owners)
    batches = [pending[start : start + FIND_BATCH] for start in range(0, len(pending), FIND_BATCH)]

    def find(batch: list[str]) -> dict[str, str]:
        return {
            c.salesforce_account_id: c.id
            for c in ctx.gateway.list_customers(salesforce_account_ids=batch)
            if c.salesforce_account_id
        }

    try:
        with ThreadPoolExecutor(
            max_workers=FIND_THREADS,
            thread_name_prefix="find",
            initializer=inherit_task,  # their log lines name the poll's task
            initargs=(running_task(),),
        ) as pool:
            for batch, found in zip(batches, pool.map(find, batches), strict=True):
                for owner in batch:
                    if owner in found:
                        ctx.store.remember_customer(owner, found[owner])
                    else:
                        absent.update(owners[owner])
    except TokenRefusedError:
        pass  # logged once by the token gate (worker/outages/token.py); the syncs park
    except Exception as exc:  # the hint is optional; the syncs find for themselves
        log.warning("batched find skipped: %s", exc)
    return absent
