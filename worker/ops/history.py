"""One account's (or deal's) story, newest first, and the one-line answer to "why no customer?".

``crmsync history ID`` puts side by side what Redis knows about a Salesforce record: its ledger
entries (each sync, contract, dead-lettered attempt and "needs attention" event, through the
per-record index of :mod:`worker.state.ledger`), its dead-letter
groups with whether and by which sync
they were resolved (:mod:`worker.state.dead_letters`), its "needs attention" items and who
acknowledged them (:mod:`worker.state.attention`), and the syncs parked during an outage
(:func:`parked_syncs`, the hook the outage work fills in). The *verdict* reads them in order of
what answers the operator first: synced (with the customer), dead-lettered (why), parked
(since when), seen only as an event, or never seen -- where Salesforce has the rest of the
answer (:mod:`worker.salesforce.explain`, asked by the command when credentials are set).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from worker.state.attention import AttentionItem
from worker.state.dead_letters import DeadLetter
from worker.state.ledger import stream_ms
from worker.state.store import SyncStore

#: Salesforce key prefix of an Opportunity id (every other id is treated as an Account's).
OPPORTUNITY_PREFIX = "006"


@dataclass(frozen=True, slots=True)
class ParkedSync:
    """A sync waiting out an outage instead of dead-lettering (issue #16's parking)."""

    account_id: str
    since: str
    retry_at: str
    reason: str
    attempts: int = 0


def parked_syncs(store: SyncStore, record_ids: Sequence[str]) -> list[ParkedSync]:
    """The parked syncs of these records (worker/outages/parking.py): an account's own, or
    for a deal the parked sync of the account that carries it."""
    from worker.outages.parking import Parking, deal_ids

    parking = Parking(store.client, store.keys)
    found: dict[str, Any] = {}
    deals = {r for r in record_ids if r.startswith(OPPORTUNITY_PREFIX)}
    for record_id in record_ids:
        if record_id not in deals:
            item = parking.get(record_id)
            if item is not None:
                found[item.account_id] = item
    if deals:
        for item in parking.items(limit=100_000):
            if deals & deal_ids(item.record):
                found[item.account_id] = item
    return [
        ParkedSync(
            account_id=item.account_id,
            since=_iso(item.since),
            retry_at=_iso(item.next_at) if item.next_at is not None else "",
            reason=item.reason,
            attempts=item.attempts,
        )
        for item in found.values()
    ]


def _iso(epoch_s: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch_s))


@dataclass(frozen=True, slots=True)
class Event:
    """One row of the timeline."""

    at: str
    outcome: str
    detail: str
    trigger: str = ""
    calls: int | None = None
    task_id: str = ""
    id: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "outcome": self.outcome,
            "detail": self.detail,
            "trigger": self.trigger or None,
            "calls": self.calls,
            "task_id": self.task_id or None,
            "id": self.id,
        }


@dataclass
class History:
    record_id: str
    kind: str  # account | opportunity
    verdict: str
    customer_id: str | None = None
    contract_id: str | None = None
    account_id: str | None = None
    synced_at: str | None = None
    dead_letters: list[DeadLetter] = field(default_factory=list)
    attention: list[AttentionItem] = field(default_factory=list)
    parked: list[ParkedSync] = field(default_factory=list)
    timeline: list[Event] = field(default_factory=list)
    #: Set when the verdict is "never seen" and there is more to ask (Salesforce).
    needs_explaining: bool = False
    explanation: list[str] = field(default_factory=list)
    finding: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "record_id": self.record_id,
            "kind": self.kind,
            "verdict": self.verdict,
            "finding": self.finding,
            "explanation": self.explanation,
            "customer_id": self.customer_id,
            "contract_id": self.contract_id,
            "account_id": self.account_id,
            "synced_at": self.synced_at,
            "dead_letters": [d.as_dict() for d in self.dead_letters],
            "attention": [i.as_dict() for i in self.attention],
            "parked": [vars_of(p) for p in self.parked],
            "timeline": [e.as_dict() for e in self.timeline],
        }


def vars_of(parked: ParkedSync) -> dict[str, Any]:
    return {
        "account_id": parked.account_id,
        "since": parked.since,
        "retry_at": parked.retry_at,
        "reason": parked.reason,
        "attempts": parked.attempts,
    }


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``24h``, ``7d``, ``30m``, ``90s`` ago, or an ISO date or datetime (UTC if naive)."""
    now = now or datetime.now(UTC)
    relative = re.fullmatch(r"(\d+)\s*([smhdw])", text.strip())
    if relative:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
        return now - timedelta(**{unit[relative.group(2)]: int(relative.group(1))})
    try:
        parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"--since {text!r} is neither a duration (24h, 7d, 30m) nor an ISO date "
            "(2026-11-01, 2026-11-01T08:00:00Z)"
        ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def build_history(
    store: SyncStore, record_id: str, *, since: datetime | None = None, limit: int = 50
) -> History:
    """Everything Redis knows about ``record_id`` (an 18-character id), and the verdict."""
    kind = "opportunity" if record_id.startswith(OPPORTUNITY_PREFIX) else "account"
    since_ms = int(since.timestamp() * 1000) if since else 0
    entries = store.ledger_log.entries_for([record_id], since_ms=since_ms, limit=limit)
    letters = store.dead_letter_book.groups(
        include_resolved=True, account_id=record_id, with_snapshots=False
    )
    items = store.attention.items(include_acked=True, record_ids={record_id})
    parked = parked_syncs(store, [record_id])
    history = History(record_id, kind, verdict="", dead_letters=letters, attention=items)
    history.parked = parked
    history.timeline = _timeline(entries, letters, items, parked, since, limit)
    if kind == "account":
        _account_verdict(store, history, entries)
    else:
        _opportunity_verdict(store, history, entries)
    return history


def _account_verdict(store: SyncStore, history: History, entries: list[dict[str, str]]) -> None:
    account = history.record_id
    customer_id, synced_at = store.account_fields(account, "customer_id", "synced_at")
    if not customer_id:
        customer_id = next((e["customer_id"] for e in entries if e.get("customer_id")), None)
    history.customer_id = customer_id
    history.synced_at = synced_at
    history.account_id = account
    open_letters = [d for d in history.dead_letters if d.open and d.kind != "contract"]
    if customer_id:
        history.verdict = f"synced: customer {customer_id}" + (
            f" (last synced {synced_at})" if synced_at else ""
        )
        return
    _unsynced_verdict(history, entries, open_letters, "customer")


def _opportunity_verdict(store: SyncStore, history: History, entries: list[dict[str, str]]) -> None:
    opportunity = history.record_id
    contract_id, customer_id, synced_at = store.opportunity_fields(
        opportunity, "contract_id", "customer_id", "synced_at"
    )
    if not contract_id:
        contract_id = next((e["contract_id"] for e in entries if e.get("contract_id")), None)
    history.contract_id = contract_id
    history.customer_id = customer_id
    history.synced_at = synced_at
    history.account_id = next((e["account_id"] for e in entries if e.get("account_id")), None)
    if contract_id:
        on = f" on customer {customer_id}" if customer_id else ""
        history.verdict = f"synced: contract {contract_id}{on}" + (
            f" (made {synced_at})" if synced_at else ""
        )
        return
    open_letters = [d for d in history.dead_letters if d.open]
    _unsynced_verdict(history, entries, open_letters, "contract")
    # A deal whose customer synced may still be one the mapping makes no contract of: only
    # Salesforce and the mapping can say ("filtered by the mapping").
    history.needs_explaining = not open_letters and not history.parked


def _unsynced_verdict(
    history: History, entries: list[dict[str, str]], open_letters: list[DeadLetter], what: str
) -> None:
    if open_letters:
        newest = open_letters[-1]
        times = f"{newest.count} times since {newest.first_at}" if newest.count > 1 else "once"
        history.verdict = (
            f"no {what}: dead-lettered [{newest.kind}] {times}: {newest.reason}; fixed in "
            "Salesforce, the next poll retries it; fixed elsewhere, `crmsync resync` it (or "
            f"`crmsync dead-letters redrive {newest.entry_id}` re-sends the stored record)"
        )
    elif history.parked:
        parked = history.parked[0]
        history.verdict = (
            f"no {what} yet: parked since {parked.since} ({parked.reason}), retrying at "
            f"{parked.retry_at}"
        )
    elif entries:
        seen = sorted({e.get("event") or e.get("outcome", "?") for e in entries})
        history.verdict = f"no {what}: crmsync saw it only as {', '.join(seen)}"
    else:
        history.verdict = f"no {what}: never seen by a poll"
        history.needs_explaining = True


def _timeline(  # noqa: PLR0917 - one private call site, every part of the timeline
    entries: list[dict[str, str]],
    letters: list[DeadLetter],
    items: list[AttentionItem],
    parked: list[ParkedSync],
    since: datetime | None,
    limit: int,
) -> list[Event]:
    events = [_ledger_event(e) for e in entries]
    for letter in letters:
        if not letter.open:
            events.append(
                Event(
                    letter.resolved_at,
                    "dead_letter_resolved",
                    f"#{letter.entry_id} [{letter.kind}] ({letter.count} attempts since "
                    f"{letter.first_at}) resolved: the sync ended {letter.resolved_how}",
                    task_id=letter.resolved_by,
                    id=letter.entry_id,
                )
            )
    for item in items:
        if not item.open:
            note = f": {item.note}" if item.note else ""
            events.append(
                Event(
                    item.acked_at,
                    "attention_acked",
                    f"#{item.id} {item.event} {item.record_id} acknowledged by {item.acked_by}"
                    + note,
                    id=item.id,
                )
            )
    for sync in parked:
        events.append(Event(sync.since, "parked", f"{sync.reason}; retrying at {sync.retry_at}"))
    cutoff = since.strftime("%Y-%m-%dT%H:%M:%SZ") if since else ""
    kept = [e for e in events if e.at >= cutoff]
    # Times are to the second: within one, a resolution or an acknowledgement follows the
    # entries it answers, and ledger entries keep their stream order.
    kept.sort(key=lambda e: (e.at, e.outcome in _FOLLOWERS, _stream_order(e.id)), reverse=True)
    return kept[:limit]


_FOLLOWERS = ("dead_letter_resolved", "attention_acked")


def _stream_order(event_id: str) -> tuple[int, int]:
    ms, _, seq = event_id.partition("-")
    return (int(ms), int(seq)) if ms.isdigit() and seq.isdigit() else (0, 0)


def _ledger_event(entry: dict[str, str]) -> Event:
    outcome = entry.get("outcome", "?")
    calls = entry.get("calls")
    return Event(
        at=entry.get("at") or _iso_of(entry["id"]),
        outcome=outcome,
        detail=_detail(outcome, entry),
        trigger=entry.get("reason", ""),
        calls=int(calls) if calls and calls.isdigit() else None,
        task_id=entry.get("task_id", ""),
        id=entry["id"],
    )


def _detail(outcome: str, entry: dict[str, str]) -> str:
    if outcome == "needs_attention":
        extra = [
            f"{name} {_plain(entry[name])}"
            for name in ("differs", "master_record_id", "stage_name", "contract_id", "customer_ids")
            if entry.get(name)
        ]
        return f"{entry.get('event')} {entry.get('record_id', '')}" + (
            f" ({'; '.join(extra)})" if extra else ""
        )
    if outcome == "dead_lettered":
        on = f" opportunity {entry['opportunity_id']}" if entry.get("opportunity_id") else ""
        return f"[{entry.get('kind')}]{on} {entry.get('why', '')}"
    if outcome.startswith("contract_"):  # customer syncs name the deal too: not these
        return f"opportunity {entry.get('opportunity_id')}: contract {entry.get('contract_id')}"
    changes = _plain(entry.get("changes", ""))
    owner = entry.get("owner_account_id")
    rolled = f" (via top parent {owner})" if owner and owner != entry.get("account_id") else ""
    return f"customer {entry.get('customer_id')}{rolled}" + (f": {changes}" if changes else "")


def _plain(value: str) -> str:
    """A JSON list field as "a, b"; anything else as it is."""
    try:
        loaded = json.loads(value)
    except ValueError:
        return value
    if isinstance(loaded, list):
        return ", ".join(str(v) for v in loaded)
    return value


def _iso_of(entry_id: str) -> str:
    return datetime.fromtimestamp(stream_ms(entry_id) / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
