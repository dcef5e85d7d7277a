"""The mapping file's model: what an operator may write, checked strictly at load time.

Strict pydantic with unknown keys refused, so a typo (``ingest_alias:``) is a load error with a
line number instead of a silently ignored setting. The model also answers the one question the
Salesforce source asks of it, "which fields do you read?", so the SOQL field list is derived
from the same object that does the mapping and the two cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from mappings import engine
from mappings.contracts import engine as contract_engine
from mappings.contracts.desired import DesiredContract
from mappings.contracts.model import ContractRule
from mappings.desired import DesiredCustomer
from mappings.expressions import Expr, path_segments
from mappings.hierarchy import find_top_account
from mappings.ids import to_18
from mappings.rules import (
    BillingProviderRule,
    HierarchyRollup,
    IdentityAlias,
    Provider,
    Strict,
)

#: Fields every query needs whatever the mapping says: the row's identity and the account's.
_ALWAYS = ("Id", "AccountId", "Account.Id")


class Mapping(Strict):
    """How one Salesforce Opportunity (with its Account) becomes a Metronome customer."""

    version: Literal[1] = 1
    name: Expr
    ingest_aliases: list[Expr] = Field(default_factory=list)
    identity_alias: IdentityAlias = Field(default_factory=IdentityAlias)
    #: ``sfdc_account_id`` is always the 18-character account id, whatever the file says here.
    custom_fields: dict[str, Expr] = Field(default_factory=dict)
    billing_provider_configurations: list[BillingProviderRule] = Field(default_factory=list)
    #: The only way a sync may archive a configuration (archiving one on a live contract stops
    #: billing at once), so it must be spelled out provider by provider.
    archive_billing_providers: list[Provider] = Field(default_factory=list)
    hierarchy_rollup: HierarchyRollup = Field(default_factory=HierarchyRollup)
    #: Optional: which won opportunities become a Metronome contract, and how (contract.py).
    contract: ContractRule | None = None

    @field_validator("custom_fields")
    @classmethod
    def _keys_not_empty(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key in value:
            if not key.strip():
                raise ValueError("custom field keys may not be empty")
        return value

    @model_validator(mode="after")
    def _rollup_fits_soql(self) -> Mapping:
        if self.hierarchy_rollup.enabled:
            if self.hierarchy_rollup.child_alias_format == self.identity_alias.format:
                raise ValueError(
                    "hierarchy_rollup.child_alias_format must differ from identity_alias.format"
                )
            for path in self.opportunity_fields():
                path_segments(path)  # raises past five relationship hops
        return self

    @property
    def rollup_enabled(self) -> bool:
        return self.hierarchy_rollup.enabled

    @property
    def notes(self) -> list[str]:
        """Things the file says that the mapping overrides; ``mapping check`` prints them."""
        notes = []
        if "sfdc_account_id" in self.custom_fields:
            notes.append("custom_fields.sfdc_account_id is ignored: it is always the account id")
        if self.contract is not None:
            notes.extend(self.contract.notes)
        return notes

    def mapped_paths(self) -> Iterator[str]:
        """Every field path the expressions read, in file order (duplicates included)."""
        yield from self.name.paths()
        for alias in self.ingest_aliases:
            yield from alias.paths()
        for key, expression in self.custom_fields.items():
            if key != "sfdc_account_id":
                yield from expression.paths()
        for rule in self.billing_provider_configurations:
            yield from rule.paths()
        if self.contract is not None:
            yield from self.contract.paths()

    def opportunity_fields(self) -> list[str]:
        """The SOQL field list for ``SELECT ... FROM Opportunity``, in a stable order.

        Under roll-up each ``Account.X`` the mapping reads is also read on every ancestor
        (``Account.Parent.X``, ...), because the customer is built from the top-most parent, and
        the deepest level's ``ParentId`` tells a hierarchy deeper than the limit from a top.
        """
        fields = list(_ALWAYS)
        mapped = list(self.mapped_paths())
        fields.extend(mapped)
        if self.hierarchy_rollup.enabled:
            account_rests = [
                path.split(".", 1)[1]
                for path in ["Account.Id", *mapped]
                if path.split(".", 1)[0].casefold() == "account" and "." in path
            ]
            for depth in range(1, self.hierarchy_rollup.max_depth + 1):
                prefix = "Account" + ".Parent" * depth
                fields.append(f"{prefix}.Id")
                fields.extend(f"{prefix}.{rest}" for rest in account_rests)
            fields.append("Account" + ".Parent" * self.hierarchy_rollup.max_depth + ".ParentId")
        return _dedupe(fields)

    def account_fields(self) -> list[str]:
        """The same list for ``SELECT ... FROM Account`` (Account edits do not bump the
        Opportunity's SystemModstamp, so accounts are polled on their own too)."""
        out = ["Id"]
        for path in self.opportunity_fields():
            head, _, rest = path.partition(".")
            if head.casefold() == "account" and rest:
                out.append(rest)
        return _dedupe(out)

    def map_record(self, record: dict[str, Any]) -> DesiredCustomer:
        """The desired customer for one record; raises ``MappingError`` listing every problem."""
        return engine.map_record(self, record)

    def map_contract(
        self, opportunity: dict[str, Any], customer: DesiredCustomer
    ) -> DesiredContract | None:
        """The contract one won opportunity row (with its Account) gets on ``customer``;
        None without a ``contract`` block or when its ``when`` does not hold. Raises
        ``MappingError`` naming every problem."""
        if self.contract is None:
            return None
        return contract_engine.map_contract(
            self.contract, self._as_owner(opportunity, customer), customer.salesforce_account_id
        )

    def _as_owner(self, opportunity: dict[str, Any], customer: DesiredCustomer) -> dict[str, Any]:
        """Under roll-up the contract goes on the top parent's customer, so its ``Account.``
        fields (the billing provider above all) are read from that parent, as the customer's
        are; the Opportunity's own fields stay the deal's."""
        account = opportunity.get("Account")
        if not self.hierarchy_rollup.enabled or not isinstance(account, dict):
            return opportunity
        child = account.get("Id") or opportunity.get("AccountId")
        try:
            child_id = to_18(str(child))
        except ValueError:
            return opportunity
        found = find_top_account(account, child_id, self.hierarchy_rollup.max_depth)
        if isinstance(found, list) or found[2] == 0:
            return opportunity
        return {**opportunity, "Account": found[0]}


def record_from_account(account: dict[str, Any]) -> dict[str, Any]:
    """Wrap an Account row (from :meth:`Mapping.account_fields`) as the record shape
    :meth:`Mapping.map_record` takes. Opportunity-level fields are absent in that case, which
    is why the default mapping reads Account fields only."""
    return {"Id": account.get("Id"), "AccountId": account.get("Id"), "Account": account}


def _dedupe(fields: list[str]) -> list[str]:
    """SOQL field names are case-insensitive and a repeated field is a MALFORMED_QUERY."""
    seen: set[str] = set()
    out: list[str] = []
    for field in fields:
        folded = field.casefold()
        if folded not in seen:
            seen.add(folded)
            out.append(field)
    return out
