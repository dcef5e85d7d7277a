"""The contract engine: one won opportunity → one Metronome contract, exactly once.

It shares the customer engine's gateway and its recover-by-reading pattern, and nothing else:

- **Create first.** The body carries a ``uniqueness_key`` derived from the 18-character
  opportunity id (account-wide in Metronome and never released), so a second create for the
  same deal is refused with 409 whatever Redis remembers. A list-before-create would cost a
  call on every new deal and still race; the create *is* the lookup.
- **After a 409 or an ambiguous outcome** (no answer, a 5xx, an unreadable 200), list the
  customer's contracts (``POST /v2/contracts/list``, archived included, every page) and match
  the uniqueness key, then the ``sfdc_opportunity_id`` custom field. Found: adopt it. Not
  found after a 409: something else holds the key or the unique field value (a contract on
  another customer: the deal moved accounts), which a person must sort out. Not found after
  an ambiguous outcome: the create did not happen; the sync retries later (a 5xx first bumps
  the Idempotency-Key generation: Metronome caches the 5xx under the key).
- **Never automatic:** no edit, end-date change, archive, renewal or billing change of an
  existing contract. The engine only creates; differences are the caller's "needs attention".

What Metronome alone knows is resolved here, before the create: the id of the customer's
billing provider configuration the contract bills through (the create takes it by id) and the
ids of commit products named by name (which must be FIXED). Both come from reads that are
cached (the catalog per process, the configurations per sync).
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mappings.contracts.desired import OPPORTUNITY_FIELD, DesiredCommit, DesiredContract
from worker.metronome.actual import (
    BillingConfigurationState,
    ContractState,
    ProductState,
    SubscriptionIds,
    canonical_json,
)
from worker.metronome.errors import (
    ConflictError,
    ContractConflictError,
    ContractInputError,
    PermanentError,
    ServerError,
    TransientError,
)
from worker.metronome.gateway import MetronomeGateway
from worker.metronome.idempotency import IdempotencyGenerations, idempotency_key

log = logging.getLogger(__name__)

#: How long the product catalog is trusted before it is read again (products change rarely;
#: a name the cache does not know triggers an early re-read, at most every MIN_REFRESH_S).
CATALOG_TTL_S = 300.0
CATALOG_MIN_REFRESH_S = 10.0
#: Idempotency generations for contracts live beside the account's, under this prefix.
GENERATION_PREFIX = "contract:"
FIXED = "FIXED"

BillingLoader = Callable[[], Sequence[BillingConfigurationState]]


@dataclass(frozen=True, slots=True)
class ContractOutcome:
    contract_id: str
    #: True when this sync made the contract (also after an ambiguous create it made);
    #: False when an existing one was adopted.
    created: bool
    #: The adopted contract is archived (a person archived it): never re-created.
    archived: bool
    calls: int
    #: Its subscriptions' ids when the answer that made or found it showed them (the
    #: create's ``data.contract``, the list): a later seat expansion then needs no read.
    subscriptions: SubscriptionIds | None = None


class ProductCatalog:
    """Products by id and by name, read with ``products/list`` and cached per process."""

    def __init__(self, gateway: MetronomeGateway, ttl_s: float = CATALOG_TTL_S) -> None:
        self._gateway = gateway
        self._ttl_s = ttl_s
        self._lock = threading.Lock()
        self._products: list[ProductState] = []
        self._read_at = float("-inf")

    def resolve(self, commit: DesiredCommit) -> str:
        """The product id for ``commit``; ContractInputError if unknown or not FIXED."""
        product = self._find(commit)
        if product is None and time.monotonic() - self._read_at > CATALOG_MIN_REFRESH_S:
            self._refresh()
            product = self._find(commit)
        ref = commit.product_ref()
        if product is None or product.archived:
            raise ContractInputError(
                f"commit product {ref!r} does not exist in Metronome (products/list); create it "
                "as a FIXED product or fix the mapping's contract.commits[].product"
            )
        if product.type.upper() != FIXED:
            raise ContractInputError(
                f"commit product {ref!r} is a {product.type} product; a commit needs a FIXED one"
            )
        return product.id

    def products(self) -> list[ProductState]:
        self._fresh()
        return list(self._products)

    def _find(self, commit: DesiredCommit) -> ProductState | None:
        self._fresh()
        for product in self._products:
            if commit.product_id is not None and product.id == commit.product_id:
                return product
        for product in self._products:
            named = commit.product_name is not None and product.name == commit.product_name
            if named and not product.archived:
                return product
        return None

    def _fresh(self) -> None:
        if time.monotonic() - self._read_at > self._ttl_s:
            self._refresh()

    def _refresh(self) -> None:
        products = self._gateway.list_products()
        with self._lock:
            self._products = products
            self._read_at = time.monotonic()


class ContractEngine:
    """Creates the contract a DesiredContract describes, once, and finds it again."""

    def __init__(
        self,
        gateway: MetronomeGateway,
        generations: IdempotencyGenerations,
        catalog: ProductCatalog | None = None,
    ) -> None:
        self._gateway = gateway
        self._generations = generations
        self.catalog = catalog or ProductCatalog(gateway)

    @property
    def generations(self) -> IdempotencyGenerations:
        """The Idempotency-Key generations (shared with the expansion edits)."""
        return self._generations

    def bootstrap(self, keys: Sequence[str]) -> None:
        """Register the contract custom field keys (entity ``contract``), ours unique."""
        existing = dict(self._gateway.list_custom_field_keys("contract"))
        for name in keys:
            if name in existing:
                if name == OPPORTUNITY_FIELD and not existing[name]:
                    log.warning("contract custom field %s exists without enforce_uniqueness", name)
                continue
            self._gateway.add_custom_field_key(
                name,
                enforce_uniqueness=name == OPPORTUNITY_FIELD,
                key=f"crmsync-bootstrap-contract-{name}-{secrets.token_hex(8)}",
                entity="contract",
            )

    def request_body(
        self,
        desired: DesiredContract,
        customer_id: str,
        billing: Sequence[BillingConfigurationState],
        preferred: Sequence[tuple[str, str, str]] = (),
        *,
        by_provider: bool = False,
        renews_contract_id: str | None = None,
    ) -> dict[str, object]:
        """The exact create body: billing configuration and products resolved to ids (the
        configuration by provider and delivery method when ``by_provider``)."""
        configuration_id = (
            None if by_provider else choose_billing_configuration(desired, billing, preferred)
        )
        products = {c.product_ref(): self.catalog.resolve(c) for c in desired.commits}
        return desired.request_body(
            customer_id,
            billing_configuration_id=configuration_id,
            product_ids=products,
            billing_by_provider=by_provider,
            renews_contract_id=renews_contract_id,
        )

    def ensure(
        self,
        desired: DesiredContract,
        customer_id: str,
        billing: BillingLoader,
        *,
        preferred: Sequence[tuple[str, str, str]] = (),
        renews_contract_id: str | None = None,
        by_provider: bool | None = None,
    ) -> ContractOutcome:
        """Create the contract or find the one that exists; see the module docstring.

        When the mapping gives the customer exactly one configuration of the contract's
        provider and delivery method, the contract names it by ``{billing_provider,
        delivery_method}`` and no configuration is read (the customer step has just made
        sure it exists). Should Metronome find that ambiguous after all (a second one made
        by hand), the create is refused before anything is made, and is sent again by id."""
        start = self._gateway.calls
        if by_provider is None:
            by_provider = unambiguous_billing(desired, preferred)
        configurations: Sequence[BillingConfigurationState] = (
            billing() if desired.billing_provider is not None and not by_provider else ()
        )
        body = self.request_body(
            desired,
            customer_id,
            configurations,
            preferred,
            by_provider=by_provider,
            renews_contract_id=renews_contract_id,
        )
        opportunity = desired.salesforce_opportunity_id
        generation_key = GENERATION_PREFIX + opportunity
        key = idempotency_key(
            opportunity,
            desired.state_hash(),
            self._generations.current(generation_key),
            f"createContract {customer_id}",
            canonical_json(body),
        )
        try:
            created = self._gateway.create_contract(body, key=key)
        except ConflictError as exc:
            found = self.find(desired, customer_id)
            if found is None:
                raise ContractConflictError(
                    f"contract for opportunity {opportunity} refused with 409 ({exc.message}) "
                    f"and customer {customer_id} holds no contract with uniqueness key "
                    f"{desired.uniqueness_key!r}: the key or {OPPORTUNITY_FIELD} is used by "
                    "another customer's contract"
                ) from exc
            return self._outcome(found, created=False, start=start)
        except TransientError as exc:
            if isinstance(exc, ServerError):
                self._generations.bump(generation_key)
            found = self.find(desired, customer_id)
            if found is None:
                raise
            log.info("contract for %s was created by an unanswered call: %s", opportunity, exc)
            return self._outcome(found, created=True, start=start)
        except PermanentError as exc:
            if by_provider and "billing_provider_configuration" in exc.message:
                again = self.ensure(
                    desired,
                    customer_id,
                    billing,
                    preferred=preferred,
                    renews_contract_id=renews_contract_id,
                    by_provider=False,
                )
                return dataclasses.replace(again, calls=self._gateway.calls - start)
            raise ContractInputError(
                f"contract for opportunity {opportunity} refused: {exc.message}",
                status=exc.status,
            ) from exc
        return ContractOutcome(
            created.id, True, False, self._gateway.calls - start, created.subscriptions
        )

    def find(self, desired: DesiredContract, customer_id: str) -> ContractState | None:
        """This opportunity's contract on the customer: by uniqueness key, then by the
        ``sfdc_opportunity_id`` custom field (a contract made by hand for the deal)."""
        contracts = self._gateway.list_contracts(customer_id)
        for contract in contracts:
            if contract.uniqueness_key == desired.uniqueness_key:
                return contract
        for contract in contracts:
            if contract.custom_fields.get(OPPORTUNITY_FIELD) == desired.salesforce_opportunity_id:
                return contract
        return None

    def _outcome(self, found: ContractState, *, created: bool, start: int) -> ContractOutcome:
        calls = self._gateway.calls - start
        return ContractOutcome(found.id, created, found.archived, calls, found.subscriptions)


def unambiguous_billing(
    desired: DesiredContract, preferred: Sequence[tuple[str, str, str]]
) -> bool:
    """Whether the mapping gives the customer exactly one configuration of the contract's
    provider and delivery method: then ``{billing_provider, delivery_method}`` names it."""
    if desired.billing_provider is None:
        return False
    wanted = (desired.billing_provider, desired.delivery_method)
    return sum(1 for provider, method, _ in preferred if (provider, method) == wanted) == 1


def choose_billing_configuration(
    desired: DesiredContract,
    configurations: Sequence[BillingConfigurationState],
    preferred: Sequence[tuple[str, str, str]] = (),
) -> str | None:
    """The id of the customer's configuration the contract bills through, or None.

    Candidates are the live configurations of the mapped provider and delivery method; when
    there are several (the API then requires the id), the one the mapping itself gives the
    customer (``preferred``: identities as :meth:`BillingConfigurationState.identity`) wins.
    """
    if desired.billing_provider is None:
        return None
    candidates = [
        c
        for c in configurations
        if not c.archived
        and c.billing_provider == desired.billing_provider
        and c.delivery_method == desired.delivery_method
    ]
    if len(candidates) > 1:
        wanted = set(preferred)
        narrowed = [c for c in candidates if c.identity() in wanted]
        candidates = narrowed or candidates
    if len(candidates) == 1:
        return candidates[0].id
    what = f"{desired.billing_provider} ({desired.delivery_method})"
    if not candidates:
        raise ContractInputError(
            f"the customer has no {what} billing provider configuration for the contract of "
            f"opportunity {desired.salesforce_opportunity_id}; map one on the account"
        )
    raise ContractInputError(
        f"the customer has {len(candidates)} {what} billing provider configurations and none "
        "matches the mapping exactly; archive the stale one in Metronome"
    )
