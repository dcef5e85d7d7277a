"""The contract terms a deal's line items map to, as frozen values with the request body each
becomes (``POST /v1/contracts/create`` and, as ``add_*``, ``POST /v2/contracts/edit``).

Amounts are integer cents (or the deal's credit type's smallest unit); ``credit_type_id`` is
None for USD cents, the API's default, so a USD deal's body names no credit type. Every term
remembers the line item it came from (``line_item_id``), so "needs attention" and a dead
letter can name it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

#: Metronome's USD (cents) credit type: what ``credit_type_id`` means when a field that
#: requires one (a recurring commit's access amount) has no other.
USD_CENTS_ID = "2714e483-4ff1-48e4-9e25-ac732e8f24f2"


class _Term(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    line_item_id: str
    product_id: str


class DesiredSubscription(_Term):
    billing_frequency: Literal["MONTHLY", "QUARTERLY", "ANNUAL", "WEEKLY"]
    quantity: float
    collection_schedule: Literal["ADVANCE", "ARREARS"]
    prorated: bool
    starting_at: str | None = None

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "subscription_rate": {
                "product_id": self.product_id,
                "billing_frequency": self.billing_frequency,
            },
            "initial_quantity": _number(self.quantity),
            "collection_schedule": self.collection_schedule,
            "proration": {"is_prorated": self.prorated, "invoice_behavior": "BILL_IMMEDIATELY"},
        }
        if self.starting_at is not None:
            body["starting_at"] = self.starting_at
        return body


class DesiredLineCommit(_Term):
    type: Literal["PREPAID", "POSTPAID"]
    amount_cents: int
    access_starting_at: str
    access_ending_before: str
    #: (timestamp, cents) invoice items; empty: complimentary (PREPAID only).
    invoices: tuple[tuple[str, int], ...]
    credit_type_id: str | None = None

    def body(self) -> dict[str, Any]:
        access: dict[str, Any] = {
            "schedule_items": [
                {
                    "amount": self.amount_cents,
                    "starting_at": self.access_starting_at,
                    "ending_before": self.access_ending_before,
                }
            ]
        }
        body: dict[str, Any] = {
            "type": self.type,
            "product_id": self.product_id,
            "access_schedule": _with_credit_type(access, self.credit_type_id),
        }
        if self.invoices:
            body["invoice_schedule"] = _schedule(self.invoices, self.credit_type_id)
        return body


class DesiredRecurringCommit(_Term):
    amount_cents: int
    frequency: Literal["MONTHLY", "QUARTERLY", "ANNUAL"]
    starting_at: str
    ending_before: str | None
    invoiced: bool
    credit_type_id: str | None = None

    def body(self) -> dict[str, Any]:
        credit_type = self.credit_type_id or USD_CENTS_ID
        body: dict[str, Any] = {
            "product_id": self.product_id,
            "access_amount": {
                "unit_price": self.amount_cents,
                "quantity": 1,
                "credit_type_id": credit_type,
            },
            "commit_duration": {"value": 1, "unit": "PERIODS"},
            "priority": 1,
            "starting_at": self.starting_at,
            "recurrence_frequency": self.frequency,
        }
        if self.ending_before is not None:
            body["ending_before"] = self.ending_before
        if self.invoiced:
            body["invoice_amount"] = {
                "unit_price": self.amount_cents,
                "quantity": 1,
                "credit_type_id": credit_type,
            }
        return body


class DesiredOverride(_Term):
    starting_at: str
    ending_before: str | None = None
    #: MULTIPLIER (a discount) when set, else OVERWRITE at ``price_cents`` (FLAT).
    multiplier: float | None = None
    price_cents: float | None = None
    credit_type_id: str | None = None

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"product_id": self.product_id, "starting_at": self.starting_at}
        if self.ending_before is not None:
            body["ending_before"] = self.ending_before
        if self.multiplier is not None:
            body.update(type="MULTIPLIER", multiplier=self.multiplier)
        else:
            rate: dict[str, Any] = {"rate_type": "FLAT", "price": _number(self.price_cents or 0)}
            body.update(
                type="OVERWRITE", overwrite_rate=_with_credit_type(rate, self.credit_type_id)
            )
        return body


class DesiredCharge(_Term):
    name: str | None = None
    #: (timestamp, cents): one item for a one-time fee, one per period for a recurring one.
    items: tuple[tuple[str, int], ...]
    credit_type_id: str | None = None

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "product_id": self.product_id,
            "schedule": _schedule(self.items, self.credit_type_id),
        }
        if self.name:
            body["name"] = self.name
        return body


class LineTerms(BaseModel):
    """Every term one deal's line items map to, in line-item order within each kind."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    subscriptions: tuple[DesiredSubscription, ...] = ()
    commits: tuple[DesiredLineCommit, ...] = ()
    recurring_commits: tuple[DesiredRecurringCommit, ...] = ()
    overrides: tuple[DesiredOverride, ...] = ()
    scheduled_charges: tuple[DesiredCharge, ...] = ()

    def is_empty(self) -> bool:
        return not any(
            (
                self.subscriptions,
                self.commits,
                self.recurring_commits,
                self.overrides,
                self.scheduled_charges,
            )
        )

    def create_fields(self) -> dict[str, list[dict[str, Any]]]:
        """The create body's term fields (``commits`` left to the caller to merge)."""
        out: dict[str, list[dict[str, Any]]] = {}
        for name in ("subscriptions", "commits", "recurring_commits", "overrides",
                     "scheduled_charges"):  # fmt: skip
            terms = getattr(self, name)
            if terms:
                out[name] = [term.body() for term in terms]
        return out

    def edit_fields(self) -> dict[str, list[dict[str, Any]]]:
        """The same terms as an edit's ``add_*`` fields."""
        return {f"add_{name}": bodies for name, bodies in self.create_fields().items()}


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


def _with_credit_type(body: dict[str, Any], credit_type_id: str | None) -> dict[str, Any]:
    return body if credit_type_id is None else {**body, "credit_type_id": credit_type_id}


def _schedule(items: tuple[tuple[str, int], ...], credit_type_id: str | None) -> dict[str, Any]:
    schedule = {"schedule_items": [{"timestamp": at, "amount": cents} for at, cents in items]}
    return _with_credit_type(schedule, credit_type_id)
