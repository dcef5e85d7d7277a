"""The customer mapping's sections (identity alias, hierarchy roll-up, billing providers).

They live apart from :class:`mappings.model.Mapping` so the engine that applies a mapping
(:mod:`mappings.engine`) can name their types without importing the model that calls it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mappings.desired import DeliveryMethod
from mappings.expressions import MAX_RELATIONSHIP_HOPS, Cond, Expr
from mappings.ids import check_id_alias_format

Provider = Literal["aws_marketplace", "azure_marketplace", "gcp_marketplace", "stripe", "netsuite"]

#: Opportunity → Account is one hop, so four ``Parent`` hops reach the SOQL limit of five.
MAX_ROLLUP_DEPTH = MAX_RELATIONSHIP_HOPS - 1


class Strict(BaseModel):
    """Unknown keys refused, values not coerced: a typo is a load error, not a silent default."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class IdentityAlias(Strict):
    """The alias derived from the 18-character account id .

    On by default: it is unique by construction, so a second create for the same account fails
    with 409 and a re-read by ``ingest_alias`` finds the first customer. Turn it off only if
    every account is guaranteed another unique alias.
    """

    enabled: bool = True
    format: str = "salesforce:{account_id}"

    _check = field_validator("format")(check_id_alias_format)


class HierarchyRollup(Strict):
    """The enterprise / sub-organisation pattern: children become aliases of the top parent."""

    enabled: bool = False
    max_depth: int = Field(default=MAX_ROLLUP_DEPTH, ge=1, le=MAX_ROLLUP_DEPTH)
    #: Alias each rolled-up child contributes for its own id. It must differ from the identity
    #: alias format: otherwise a child synced without roll-up later would "find" the parent's
    #: customer by its identity alias and adopt it.
    child_alias_format: str = "{account_id}"

    _check = field_validator("child_alias_format")(check_id_alias_format)


class BillingProviderRule(Strict):
    """One billing provider configuration, added when ``when`` holds (always when absent)."""

    when: Cond | None = None
    billing_provider: Provider
    delivery_method: DeliveryMethod
    configuration: dict[str, Expr] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _required_keys_mapped(self) -> BillingProviderRule:
        from mappings.desired import REQUIRED_CONFIGURATION_KEYS

        missing = [
            key
            for key in REQUIRED_CONFIGURATION_KEYS[self.billing_provider]
            if key not in self.configuration
        ]
        if missing:
            raise ValueError(f"{self.billing_provider} configuration must map {', '.join(missing)}")
        return self

    def paths(self) -> Iterator[str]:
        if self.when is not None:
            yield from self.when.paths()
        for expression in self.configuration.values():
            yield from expression.paths()
