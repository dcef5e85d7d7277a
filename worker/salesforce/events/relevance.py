"""Which change events can change a Metronome customer, decided without any API call (pure).

Every delivered event counts against the org's daily delivery allocation whatever we do with
it, but a Salesforce query and a Metronome call are ours to spend or save. So the listener
looks at the event's header first and drops what cannot matter:

* an Opportunity UPDATE whose ``changedFields`` touch nothing the mapping reads and none of
  ``IsWon`` / ``StageName`` / ``AccountId`` (a probability edit, a next step, an owner change);
* an Opportunity UPDATE of a deal that did not become won (``IsWon`` unchanged) and is not known
  as won (the poll and the listener keep the set of won deal ids in Redis);
* an Opportunity CREATE that says ``IsWon = false`` (a new open deal);
* an Account CREATE (a new account has no won deal yet: its deal will bring its own event);
* an Account change that touches no mapped Account field, or whose account has no customer and
  no synced state in Redis (no won deal seen);
* DELETEs: crmsync never archives on its own; the poll records deletions for an operator.

What is left is re-read from Salesforce by id (event bodies hold only the changed fields, and
SystemModstamp and formula fields not at all). When Redis has lost the won set, a real change
may be dropped here: the poll, which reads by SystemModstamp, is the safety net for it, as it is
for every change that emits no event.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from mappings import Mapping
from worker.salesforce.events.changes import ChangeEvent, ChangeType

#: Opportunity fields that decide whether a deal is won and whose it is, whatever the mapping.
DEAL_STATE_FIELDS = frozenset({"iswon", "stagename", "accountid"})


class Verdict(enum.Enum):
    SKIP = "skip"
    #: Re-read these opportunities (``ids``) from Salesforce.
    OPPORTUNITY = "opportunity"
    #: Re-read the won deals of these accounts.
    ACCOUNT = "account"
    #: The event cannot name its records (GAP_OVERFLOW): run a poll.
    POLL = "poll"


@dataclass(frozen=True, slots=True)
class Triage:
    verdict: Verdict
    ids: tuple[str, ...] = ()
    #: Relevant only for records Redis knows (a won deal; an account with a customer).
    if_known: bool = False
    why: str = ""


@dataclass(frozen=True, slots=True)
class Interest:
    """The fields, per object, whose change can change a customer (casefolded names)."""

    opportunity_fields: frozenset[str]
    account_fields: frozenset[str]

    @classmethod
    def from_mapping(cls, mapping: Mapping) -> Interest:
        """Derived from the mapping's own SOQL field list, so the two cannot drift."""
        opportunity: set[str] = set(DEAL_STATE_FIELDS)
        account: set[str] = set()
        for path in mapping.opportunity_fields():
            parts = [p.casefold() for p in path.split(".")]
            if len(parts) == 1:
                opportunity.add(parts[0])
                continue
            if parts[0] != "account":
                continue
            if "parent" in parts[1:-1]:
                account.add("parentid")  # a re-parented account changes its roll-up owner
            if parts[-1] != "id":
                account.add(parts[-1])
        if mapping.line_item_fields():
            # A line item's change reaches the deal as its rolled-up Amount (and stamps).
            opportunity.add("amount")
        return cls(frozenset(opportunity), frozenset(account))


def _touches(event: ChangeEvent, fields: frozenset[str]) -> bool:
    return any(name.split(".", 1)[0].casefold() in fields for name in event.changed_fields)


def triage(event: ChangeEvent, interest: Interest) -> Triage:
    """What to do with one event (see the module docstring for the rules)."""
    kind = event.change_type
    if kind is ChangeType.GAP_OVERFLOW:
        return Triage(Verdict.POLL, why="gap overflow: the event names no records")
    if kind in (ChangeType.DELETE, ChangeType.GAP_DELETE):
        return Triage(Verdict.SKIP, why="deletions are the poll's (ledger only)")
    entity = event.entity.casefold()
    ids = event.record_ids
    if entity == "opportunity":
        if kind is ChangeType.CREATE and event.values.get("IsWon") is False:
            return Triage(Verdict.SKIP, why="a new open deal")
        if kind is ChangeType.UPDATE:
            if not _touches(event, interest.opportunity_fields):
                return Triage(Verdict.SKIP, why="no mapped field changed")
            became = any(n.casefold() == "iswon" for n in event.changed_fields)
            return Triage(Verdict.OPPORTUNITY, ids, if_known=not became, why="deal changed")
        return Triage(Verdict.OPPORTUNITY, ids, why=kind.value.lower())
    if entity == "account":
        if kind is ChangeType.CREATE:
            return Triage(Verdict.SKIP, why="a new account has no won deal")
        if kind is ChangeType.UPDATE and not _touches(event, interest.account_fields):
            return Triage(Verdict.SKIP, why="no mapped field changed")
        return Triage(Verdict.ACCOUNT, ids, if_known=True, why=kind.value.lower())
    return Triage(Verdict.SKIP, why=f"entity {event.entity!r} is not synced")
