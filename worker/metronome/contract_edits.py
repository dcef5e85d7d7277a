"""The gateway's deal-lifecycle calls: read one contract (``POST /v2/contracts/get``), edit
it (``POST /v2/contracts/edit``), and read a rate card's rates (``POST
/v1/contract-pricing/rate-cards/getRates``: what a subscription must match), each sent
through :meth:`GatewayCore._call` like every other call (breaker gate, governor turn,
retries, our errors).

An edit carries a ``uniqueness_key``, so it is exactly once whatever happens to the answer:
a 409 means the edit was applied before (:class:`~worker.metronome.errors.ConflictError`,
which the caller treats as done), and an ambiguous outcome is answered by sending the same
key again. A refusal because contract editing is not enabled for the Metronome client is
:class:`EditingNotEnabledError`: an operator's matter, never retried.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, cast

from worker.metronome.actual import SubscriptionIds
from worker.metronome.answers import subscription_ids
from worker.metronome.errors import PermanentError
from worker.metronome.transport import GatewayCore, key_header, read_answer

#: Words of Metronome's refusal when contract editing is not enabled for the client.
NOT_ENABLED_WORDS = ("not enabled",)


class EditingNotEnabledError(PermanentError):
    """Metronome refused the edit: contract editing is not enabled for this client."""


@dataclass(frozen=True, slots=True)
class LiveContract:
    """What an edit or a renewal needs to know of a contract."""

    id: str
    starting_at: str
    ending_before: str | None
    archived: bool
    uniqueness_key: str | None = None
    #: (product id, billing frequency) -> subscription id.
    subscriptions: SubscriptionIds = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EditAnswer:
    """What POST /v2/contracts/edit answers: the edit's id and, when the answer carries the
    edit (``data.edit``, optional in the spec), the ids of the subscriptions it added."""

    id: str
    added_subscriptions: SubscriptionIds | None = None


class ContractEditCalls(GatewayCore):
    """Read a contract with its subscriptions; edit it exactly once."""

    def get_contract(self, customer_id: str, contract_id: str) -> LiveContract:
        """POST /v2/contracts/get: the contract with its subscriptions."""
        answer = self._call(
            "getContract",
            lambda: self._client.v2.contracts.retrieve(
                customer_id=customer_id, contract_id=contract_id
            ),
        )
        live: LiveContract = read_answer("getContract", lambda: _live(answer.data))
        return live

    def edit_contract(self, body: Mapping[str, Any], *, key: str) -> EditAnswer:
        """POST /v2/contracts/edit; the edit's id (and added subscriptions' ids, when shown).
        A 409 (the uniqueness key was used: the edit is applied) comes back as ConflictError,
        never retried here."""
        try:
            answer = self._call(
                "editContract",
                lambda: self._client.v2.contracts.edit(
                    **cast(Any, body), extra_headers=key_header(key)
                ),
                post=True,
            )
        except PermanentError as exc:
            if any(words in exc.message.lower() for words in NOT_ENABLED_WORDS):
                raise EditingNotEnabledError(exc.message, status=exc.status) from exc
            raise
        edited: EditAnswer = read_answer("editContract", lambda: _edit_answer(answer.data))
        return edited

    def rate_card_rates(self, rate_card_id: str, at: str) -> set[tuple[str, str | None]]:
        """(product id, billing frequency or None) of every rate on the rate card at ``at``,
        every page."""
        found: set[tuple[str, str | None]] = set()
        cursor: str | None = None
        while True:
            extra: dict[str, Any] = {"next_page": cursor} if cursor else {}

            def fetch(e: dict[str, Any] = extra) -> Any:
                return self._client.v1.contracts.rate_cards.rates.list(
                    rate_card_id=rate_card_id, at=at, **e
                )

            page = self._call("getRates", fetch)
            found.update(read_answer("getRates", partial(_rates, page)))
            cursor = read_answer("getRates", partial(_next_page, page))
            if not cursor:
                return found


def _next_page(page: Any) -> str | None:
    cursor = getattr(page, "next_page", None)
    return None if cursor is None else str(cursor)


def _rates(page: Any) -> set[tuple[str, str | None]]:
    out: set[tuple[str, str | None]] = set()
    for item in page.data:
        frequency = getattr(item, "billing_frequency", None)
        out.add((str(item.product_id), None if frequency is None else str(frequency).upper()))
    return out


def _edit_answer(data: Any) -> EditAnswer:
    edit = getattr(data, "edit", None)
    added = None if edit is None else subscription_ids(edit, "add_subscriptions")
    return EditAnswer(id=str(data.id), added_subscriptions=added)


def _live(data: Any) -> LiveContract:
    subscriptions = subscription_ids(data)
    if subscriptions is None:
        raise TypeError("a subscription of the contract shows no id, product or frequency")
    ending = getattr(data, "ending_before", None)
    return LiveContract(
        id=str(data.id),
        starting_at=str(data.starting_at),
        ending_before=None if ending is None else str(ending),
        archived=getattr(data, "archived_at", None) is not None,
        uniqueness_key=getattr(data, "uniqueness_key", None),
        subscriptions=subscriptions,
    )
