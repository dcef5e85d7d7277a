"""The upsert engine: find the customer, plan (pure, in plan.py), apply, and recover.

Find order (the cheapest read that can answer first): a cached customer id, verified with one
retrieve -> ``list(salesforce_account_ids=...)``, batched 100 at a time by ``find_many``. Alias
lookups are not made up front: a create carries every desired alias (the identity alias first),
and Metronome refuses it with 409 when any alias is taken, so the create *is* the alias lookup
and a brand-new account costs 1 list + 1 create + 1 updateConfig. Only after a 409 (or an
ambiguous create) does the engine read by alias -- identity alias first, then each desired
alias -- and adopt a customer made by hand in the Metronome app.

Recovery: after any ambiguous outcome (no answer, 5xx, 409) the engine re-reads and re-plans
instead of repeating the call, for a bounded number of rounds. After a 5xx the idempotency
generation is bumped first (Metronome caches the 5xx under the key). A customer that could
only be made right by taking aliases or values from another customer is an
UnresolvableConflictError naming both: aliases are never moved.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from mappings.desired import DesiredCustomer
from worker.metronome.actual import CustomerState, canonical_json
from worker.metronome.errors import (
    ConflictError,
    ServerError,
    TransientError,
    UnresolvableConflictError,
)
from worker.metronome.gateway import MetronomeGateway
from worker.metronome.idempotency import IdempotencyGenerations, idempotency_key
from worker.metronome.plan import (
    AddBillingConfigurations,
    ArchiveBillingConfigurations,
    CreateCustomer,
    LinkSalesforceAccount,
    SetCustomFields,
    SetIngestAliases,
    SetName,
    Step,
    SyncPlan,
    needs_billing_configurations,
    plan_sync,
)

log = logging.getLogger(__name__)

#: The custom field that ties a customer to its Salesforce account; unique in Metronome.
IDENTITY_FIELD = "sfdc_account_id"
#: GET /v1/customers accepts at most 100 salesforce_account_ids.
FIND_BATCH = 100
DEFAULT_MAX_ROUNDS = 4


@dataclass(frozen=True, slots=True)
class SyncOutcome:
    customer_id: str
    created: bool
    changes: tuple[str, ...]
    calls: int
    rounds: int = 1


@dataclass(slots=True)
class _Progress:
    customer_id: str | None = None
    created: bool = False
    changes: list[str] = field(default_factory=list)


class UpsertEngine:
    """Makes Metronome hold a DesiredCustomer, exactly once, with the fewest calls."""

    def __init__(
        self,
        gateway: MetronomeGateway,
        generations: IdempotencyGenerations,
        *,
        max_rounds: int = DEFAULT_MAX_ROUNDS,
    ) -> None:
        self._gateway = gateway
        self._generations = generations
        self._max_rounds = max(1, max_rounds)

    def bootstrap(self) -> None:
        """Register ``sfdc_account_id`` with enforce_uniqueness, once (listKeys first)."""
        keys = dict(self._gateway.list_custom_field_keys())
        if IDENTITY_FIELD in keys:
            if not keys[IDENTITY_FIELD]:
                log.warning("custom field %s exists without enforce_uniqueness", IDENTITY_FIELD)
            return
        # A fresh Idempotency-Key per bootstrap: Metronome caches a 5xx under its key for 24 h,
        # so a fixed key turned one failed first addKey into a day without any create (found
        # by the chaos run, seed 11). addKey with the same settings is idempotent by itself.
        self._gateway.add_custom_field_key(
            IDENTITY_FIELD,
            enforce_uniqueness=True,
            key=f"crmsync-bootstrap-{IDENTITY_FIELD}-{secrets.token_hex(8)}",
        )

    def plan(self, desired: DesiredCustomer, actual: CustomerState | None) -> SyncPlan:
        """Pure: the calls a sync would make against ``actual`` (see plan.py)."""
        return plan_sync(desired, actual)

    def find_many(
        self, desired: Sequence[DesiredCustomer], cached_ids: Mapping[str, str]
    ) -> dict[str, CustomerState | None]:
        """Customers by salesforce_account_id: cached ids verified, the rest batched by 100.

        Each found customer comes with its billing configurations when its mapping has any
        (one more call each), so ``plan`` can run on the answer directly.
        """
        found: dict[str, CustomerState | None] = {}
        pending: list[str] = []
        for item in desired:
            account = item.salesforce_account_id
            cached = cached_ids.get(account)
            if cached:
                state = self._gateway.retrieve_customer(cached)
                if state is not None and _belongs_to(state, item):
                    found[account] = state
                    continue
            pending.append(account)
        unique = list(dict.fromkeys(pending))
        for start in range(0, len(unique), FIND_BATCH):
            batch = unique[start : start + FIND_BATCH]
            by_account: dict[str, CustomerState] = {}
            for state in self._gateway.list_customers(salesforce_account_ids=batch):
                if state.salesforce_account_id is not None:
                    by_account.setdefault(state.salesforce_account_id, state)
            for account in batch:
                found[account] = by_account.get(account)
        # Complete enough to plan: billing configurations, where the mapping has any, come
        # from a separate endpoint (POST /v1/getCustomerBillingProviderConfigurations).
        for item in desired:
            found[item.salesforce_account_id] = self._with_billing(
                item, found.get(item.salesforce_account_id)
            )
        return found

    def sync(
        self,
        desired: DesiredCustomer,
        *,
        cached_customer_id: str | None = None,
        known: CustomerState | None = None,
        searched: bool = False,
        generation: int | None = None,
    ) -> SyncOutcome:
        """Converge one account. ``known`` skips the find; so does ``searched=True`` (the
        caller ran ``find_many`` and ``known`` is its answer, None meaning "no customer").
        ``generation`` is the idempotency generation when the caller has just read it under
        the account lock (later rounds read it again: a 5xx bumps it)."""
        start = self._gateway.calls
        account = desired.salesforce_account_id
        if known is not None or searched:
            actual = known
        else:
            cached = {account: cached_customer_id} if cached_customer_id else {}
            actual = self.find_many([desired], cached)[account]
        progress = _Progress()
        last_error: Exception | None = None
        for round_number in range(1, self._max_rounds + 1):
            actual = self._with_billing(desired, actual)
            plan = plan_sync(desired, actual)
            try:
                self._apply(plan, desired, progress, generation if round_number == 1 else None)
            except TransientError as exc:
                last_error = exc
                if isinstance(exc, ServerError):
                    self._generations.bump(account)
                actual = self._reread(desired, progress.customer_id or plan.customer_id)
                _note_ambiguous_create(plan, progress, actual)
            except ConflictError as exc:
                last_error = exc
                actual = self._resolve_conflict(desired, actual, exc)
            else:
                customer_id = progress.customer_id or plan.customer_id
                if customer_id is None:  # pragma: no cover - plan_sync always creates or targets
                    raise AssertionError("a sync plan without a customer")
                return SyncOutcome(
                    customer_id=customer_id,
                    created=progress.created,
                    changes=tuple(progress.changes),
                    calls=self._gateway.calls - start,
                    rounds=round_number,
                )
        raise TransientError(
            f"Salesforce account {account} did not converge in {self._max_rounds} rounds: "
            f"{last_error}"
        )

    # -- apply -----------------------------------------------------------------------------

    def _apply(
        self,
        plan: SyncPlan,
        desired: DesiredCustomer,
        progress: _Progress,
        generation: int | None = None,
    ) -> None:
        account = desired.salesforce_account_id
        if generation is None:
            generation = self._generations.current(account)
        state_hash = desired.state_hash()
        customer_id = plan.customer_id
        for step in plan.steps:
            target = customer_id or ""
            body = canonical_json(step.body())
            key = idempotency_key(
                account, state_hash, generation, f"{step.operation} {target}", body
            )
            if isinstance(step, CreateCustomer):
                customer_id = self._gateway.create_customer(step.body(), key=key)
                progress.customer_id = customer_id
                progress.created = True
            elif customer_id is None:  # pragma: no cover - plans create before updating
                raise AssertionError(f"{step.operation} planned without a customer")
            else:
                self._update(customer_id, step, key)
            progress.changes.append(step.change())

    def _update(self, customer_id: str, step: Step, key: str) -> None:
        gateway = self._gateway
        if isinstance(step, LinkSalesforceAccount):
            gateway.update_config(customer_id, step.salesforce_account_id, key=key)
        elif isinstance(step, SetIngestAliases):
            gateway.set_ingest_aliases(customer_id, step.ingest_aliases, key=key)
        elif isinstance(step, SetName):
            gateway.set_name(customer_id, step.name, key=key)
        elif isinstance(step, SetCustomFields):
            gateway.set_custom_fields(customer_id, step.values, key=key)
        elif isinstance(step, AddBillingConfigurations):
            gateway.set_billing_configurations(customer_id, step.configurations, key=key)
        elif isinstance(step, ArchiveBillingConfigurations):
            gateway.archive_billing_configurations(customer_id, step.configuration_ids, key=key)

    def _with_billing(
        self, desired: DesiredCustomer, actual: CustomerState | None
    ) -> CustomerState | None:
        if actual is None or actual.billing_configurations is not None:
            return actual
        if not needs_billing_configurations(desired):
            return actual
        return actual.with_billing(self._gateway.get_billing_configurations(actual.id))

    # -- re-reading after ambiguity ---------------------------------------------------------

    def _reread(self, desired: DesiredCustomer, customer_id: str | None) -> CustomerState | None:
        """State after an outcome we could not see: by id, by account, then by alias.

        A create that happened but was not linked yet is only findable by alias; the identity
        alias suffices when there is one (a create is atomic: all its aliases or none).
        """
        if customer_id is not None:
            state = self._gateway.retrieve_customer(customer_id)
            if state is not None and _belongs_to(state, desired):
                return state
        found = self.find_many([desired], {})[desired.salesforce_account_id]
        if found is not None:
            return found
        aliases = (
            (desired.identity_alias,) if desired.identity_alias else tuple(desired.ingest_aliases)
        )
        return self._adopt_by_alias(desired, aliases)

    def _resolve_conflict(
        self, desired: DesiredCustomer, actual: CustomerState | None, exc: ConflictError
    ) -> CustomerState | None:
        """A 409: find who holds what we asked for; adopt it if it is ours, else give up."""
        account = desired.salesforce_account_id
        if exc.conflicting_id is not None and (actual is None or exc.conflicting_id != actual.id):
            owner = self._gateway.retrieve_customer(exc.conflicting_id)
            if owner is not None:
                return self._adopt_or_refuse(desired, actual, owner, str(exc))
        if actual is not None:
            aliases = tuple(a for a in desired.ingest_aliases if a not in actual.ingest_aliases)
            for alias in aliases:
                for owner in self._owners(alias):
                    if owner.id != actual.id:
                        return self._adopt_or_refuse(desired, actual, owner, str(exc))
            return self._gateway.retrieve_customer(actual.id)
        found = self.find_many([desired], {})[account]
        if found is not None:
            return found
        ordered = tuple(
            dict.fromkeys(
                ((desired.identity_alias,) if desired.identity_alias else ())
                + desired.ingest_aliases
            )
        )
        adopted = self._adopt_by_alias(desired, ordered, include_archived=True)
        if adopted is not None:
            return adopted
        return self._scan_identity_field(desired)

    def _adopt_by_alias(
        self, desired: DesiredCustomer, aliases: Sequence[str], *, include_archived: bool = False
    ) -> CustomerState | None:
        for alias in aliases:
            for owner in self._owners(alias, include_archived=include_archived):
                return self._adopt_or_refuse(desired, None, owner, f"alias {alias!r} is taken")
        return None

    def _owners(self, alias: str, *, include_archived: bool = True) -> list[CustomerState]:
        owners = self._gateway.list_customers(ingest_alias=alias)
        if not owners and include_archived:
            owners = self._gateway.list_customers(ingest_alias=alias, only_archived=True)
        return owners

    def _adopt_or_refuse(
        self,
        desired: DesiredCustomer,
        actual: CustomerState | None,
        owner: CustomerState,
        reason: str,
    ) -> CustomerState:
        account = desired.salesforce_account_id
        if actual is None and _belongs_to(owner, desired):
            log.info("adopting customer %s for Salesforce account %s", owner.id, account)
            return owner
        linked = owner.salesforce_account_id or owner.custom_fields.get(IDENTITY_FIELD)
        ours = f"customer {actual.id}" if actual is not None else "a new customer"
        state = "archived " if owner.archived else ""
        raise UnresolvableConflictError(
            f"Salesforce account {account} ({ours}) conflicts with {state}customer {owner.id} "
            f"(Salesforce account {linked or 'none'}): {reason}; aliases are never moved",
            customer_ids=tuple(c.id for c in (actual, owner) if c is not None),
        )

    def _scan_identity_field(self, desired: DesiredCustomer) -> CustomerState | None:
        """Last resort (rare, paged): a customer holding our unique sfdc_account_id value."""
        value = desired.custom_fields.get(IDENTITY_FIELD)
        if value is None:
            return None
        for state in self._gateway.list_customers():
            if state.custom_fields.get(IDENTITY_FIELD) == value:
                return self._adopt_or_refuse(desired, None, state, f"{IDENTITY_FIELD} is taken")
        return None


def _note_ambiguous_create(
    plan: SyncPlan, progress: _Progress, found: CustomerState | None
) -> None:
    """A create we got no answer to, whose customer the re-read found: we made it."""
    first = plan.steps[0] if plan.steps else None
    if isinstance(first, CreateCustomer) and progress.customer_id is None and found is not None:
        progress.customer_id = found.id
        progress.created = True
        progress.changes.append(first.change())


def _belongs_to(state: CustomerState, desired: DesiredCustomer) -> bool:
    """Whether ``state`` may be treated as this account's customer (adopted if unlinked)."""
    if state.archived:
        return False
    account = desired.salesforce_account_id
    if state.salesforce_account_id not in (None, account):
        return False
    expected = desired.custom_fields.get(IDENTITY_FIELD, account)
    return state.custom_fields.get(IDENTITY_FIELD) in (None, expected)
