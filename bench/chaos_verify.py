"""The chaos run's verdict: Metronome compared with what the mapping says Salesforce implies.

Pure functions over plain data (the emulators' inspection output and the won records), so the
verdict itself is unit-tested and a failed run can be re-judged from saved JSON. The expected
state is computed by running the *same* pure mapping the worker runs over every won record
Salesforce holds at the end: anything else would let a mapping bug hide behind its own output.

- duplicate: more than one customer carries one Salesforce account id (the failure this whole
  product exists to prevent: a customer billed twice);
- missing: an account whose record maps cleanly has no customer (a lost close: never billed);
- drifted: the customer exists but the upsert planner would still change it (name, an alias
  missing, a custom field, a billing configuration absent): the run "finished" wrong;
- unexpected dead letter: any dead letter except a mapping failure of a record the mapping
  rejects (seeded awkward data is *meant* to dead-letter; a transient give-up is not).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from mappings import DesiredCustomer, MappingError
from worker.metronome.actual import BillingConfigurationState, CustomerState
from worker.metronome.plan import plan_sync

MapRecord = Callable[[dict[str, Any]], DesiredCustomer]


@dataclass(frozen=True, slots=True)
class Expected:
    """What Metronome should hold: one desired customer per owner account, and the accounts
    whose records cannot map (their dead letters are the scenario's, not failures)."""

    desired: dict[str, DesiredCustomer]
    unmappable: dict[str, str]


@dataclass(slots=True)
class Verdict:
    duplicates: int = 0
    missing: int = 0
    drifted: int = 0
    unattributed: int = 0
    unexpected_dead_letters: list[dict[str, str]] = field(default_factory=list)
    examples: dict[str, list[str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not (
            self.duplicates
            or self.missing
            or self.drifted
            or self.unattributed
            or self.unexpected_dead_letters
        )

    def note(self, kind: str, text: str) -> None:
        bucket = self.examples.setdefault(kind, [])
        if len(bucket) < 5:
            bucket.append(text)


def expected_state(records: Iterable[dict[str, Any]], map_record: MapRecord) -> Expected:
    """Group won rows by account (the latest row wins, as the poll does) and map each."""
    latest: dict[str, dict[str, Any]] = {}
    for row in records:
        account_id = row.get("AccountId") or (row.get("Account") or {}).get("Id")
        if account_id:
            latest[str(account_id)] = row
    desired: dict[str, DesiredCustomer] = {}
    unmappable: dict[str, str] = {}
    for account_id, row in latest.items():
        try:
            customer = map_record(row)
        except MappingError as exc:
            unmappable[account_id] = str(exc)
            continue
        desired[customer.salesforce_account_id] = customer
    return Expected(desired=desired, unmappable=unmappable)


def customer_state(detail: dict[str, Any], configs: Iterable[dict[str, Any]]) -> CustomerState:
    """The emulator's CustomerDetail (and its billing rows) as the planner compares them."""
    return CustomerState(
        id=str(detail["id"]),
        name=str(detail["name"]),
        ingest_aliases=tuple(detail.get("ingest_aliases") or ()),
        custom_fields=dict(detail.get("custom_fields") or {}),
        salesforce_account_id=(detail.get("customer_config") or {}).get("salesforce_account_id"),
        archived=bool(detail.get("archived_at")),
        billing_configurations=tuple(
            BillingConfigurationState(
                id=str(c["id"]),
                billing_provider=str(c["billing_provider"]),
                delivery_method=str(c["delivery_method"]),
                configuration=dict(c.get("configuration") or {}),
                archived=bool(c.get("archived_at")),
            )
            for c in configs
        ),
    )


def owner_of(detail: dict[str, Any]) -> str | None:
    fields = detail.get("custom_fields") or {}
    owner = fields.get("sfdc_account_id") or (detail.get("customer_config") or {}).get(
        "salesforce_account_id"
    )
    return str(owner) if owner else None


def judge(
    expected: Expected,
    customers: list[dict[str, Any]],
    billing: list[dict[str, Any]],
    dead_letters: Iterable[tuple[str, str, str]],
    preexisting: Iterable[str] = (),
) -> Verdict:
    """Compare; ``dead_letters`` are (account id, kind, reason); ``preexisting`` are customer
    ids made outside crmsync (never counted as unattributed)."""
    verdict = Verdict()
    by_customer: dict[str, list[dict[str, Any]]] = {}
    for config in billing:
        by_customer.setdefault(str(config["customer_id"]), []).append(config)
    by_owner: dict[str, list[dict[str, Any]]] = {}
    skip = set(preexisting)
    for detail in customers:
        owner = owner_of(detail)
        if owner is None:
            if detail["id"] not in skip:
                verdict.unattributed += 1
                verdict.note("unattributed", str(detail["id"]))
            continue
        by_owner.setdefault(owner, []).append(detail)
    for owner, found in by_owner.items():
        if len(found) > 1:
            verdict.duplicates += len(found) - 1
            verdict.note("duplicates", f"{owner}: {[c['id'] for c in found]}")
    for owner, desired in expected.desired.items():
        found = by_owner.get(owner, [])
        if not found:
            verdict.missing += 1
            verdict.note("missing", owner)
            continue
        actual = customer_state(found[0], by_customer.get(str(found[0]["id"]), []))
        try:
            plan = plan_sync(desired, actual)
        except Exception as exc:  # an archived or mis-linked customer is drift too
            verdict.drifted += 1
            verdict.note("drifted", f"{owner}: {exc}")
            continue
        if not plan.is_noop:
            verdict.drifted += 1
            verdict.note("drifted", f"{owner}: {list(plan.changes())}")
    for account_id, kind, reason in dead_letters:
        if kind == "mapping" and account_id in expected.unmappable:
            continue
        verdict.unexpected_dead_letters.append(
            {"account_id": account_id, "kind": kind, "reason": reason[:300]}
        )
    return verdict


@dataclass(slots=True)
class ContractVerdict:
    expected: int = 0
    duplicates: int = 0
    missing: int = 0
    examples: dict[str, list[str]] = field(default_factory=dict)


def judge_contracts(
    records: Iterable[dict[str, Any]],
    map_record: MapRecord,
    map_contract: Callable[[dict[str, Any], DesiredCustomer], Any],
    contracts: Iterable[dict[str, Any]],
) -> ContractVerdict:
    """Every won deal the mapping gives a contract has exactly one (by ``sfdc_opportunity_id``).

    ``records`` are the won Opportunity rows (each with its Account) Salesforce holds at the
    end; a deal that cannot be mapped is expected to dead-letter, not to have a contract.
    """
    verdict = ContractVerdict()
    held: Counter[str] = Counter()
    for contract in contracts:
        opportunity = (contract.get("custom_fields") or {}).get("sfdc_opportunity_id")
        if opportunity:
            held[str(opportunity)] += 1
    for opportunity, count in held.items():
        if count > 1:
            verdict.duplicates += count - 1
            verdict.examples.setdefault("duplicate_contracts", []).append(opportunity)
    for row in records:
        try:
            desired = map_contract(row, map_record(row))
        except MappingError:
            continue
        if desired is None:
            continue
        verdict.expected += 1
        if held[desired.salesforce_opportunity_id] == 0:
            verdict.missing += 1
            bucket = verdict.examples.setdefault("missing_contracts", [])
            if len(bucket) < 5:
                bucket.append(desired.salesforce_opportunity_id)
    return verdict


def dead_letter_reasons(dead_letters: Iterable[tuple[str, str, str]]) -> dict[str, int]:
    """Dead letters counted by kind (mapping, permanent, transient_exhausted, ...)."""
    counts: Counter[str] = Counter()
    for _account, kind, _reason in dead_letters:
        counts[kind] += 1
    return dict(sorted(counts.items()))
