"""What can go wrong talking to Metronome, sorted by what the caller should do about it.

Catch at the level that decides: ``TransientError`` is everything worth retrying later (the
sync retries, parks or re-reads), ``PermanentError`` everything only a person can fix in the
record or the deal (it dead-letters), ``ConflictError`` the 409 the engines resolve by
re-reading, ``TokenRefusedError`` the deployment's token refused (the sync parks and every
process stops asking until the token changes or a probe gets through).

::

    MetronomeError                 base: anything from the Metronome gateway or an engine
    ├── TransientError             retry later; the outcome may be unknown (ambiguous)
    │   ├── ServerError            5xx: Metronome caches it under the Idempotency-Key, so the
    │   │                          caller must bump the key generation and re-read, not resend
    │   ├── RateLimitedError       429 (X-Metronome-Rate-Limit-Type; Retry-After if sent),
    │   │                          raised only once the gateway's governed resends ran out
    │   ├── ConnectionFailedError  connect error, timeout, dropped connection, 408: the write
    │   │                          may have happened; resending the SAME key replays it
    │   ├── UnexpectedAnswerError  a 200 whose body is not the documented shape (a proxy's
    │   │                          page, a truncated answer): outcome unknown, the engine
    │   │                          re-reads
    │   └── BreakerOpenError       Metronome's circuit breaker is open: the call was not sent
    │                              and the sync parks (defined beside the breaker, in
    │                              worker/outages/metronome.py, which raises it at the gate)
    ├── ConflictError              409: an alias or unique custom field value is taken, or an
    │                              Idempotency-Key was reused with another body;
    │                              ``conflicting_id`` when the API names the other customer
    ├── TokenRefusedError          401, or a 403 that is not about one feature: Metronome
    │                              refuses METRONOME_BEARER_TOKEN (mistyped, revoked, another
    │                              environment's, or without the permission). The spec's only
    │                              security scheme is the bearer token and it documents no
    │                              401/403 for a record (a missing record is 400 or 404). Also
    │                              raised unsent (``sent`` False) by the token gate
    │                              (worker/outages/token.py) while the refusal is known
    └── PermanentError             400, 404, 422, a feature's 403 ("not enabled"): retrying
        │                          cannot help; carries the API's ``message``
        ├── UnresolvableConflictError
        │                          the customer cannot be made right without moving data
        │                          between customers (e.g. an alias owned by a customer of
        │                          another Salesforce account): an operator must decide
        ├── ContractInputError     a deal's contract cannot be made as mapped (unknown or not
        │                          FIXED product, no matching billing configuration, a body
        │                          the API refuses): that deal dead-letters, the rest go on
        └── ContractConflictError  a contract create got 409 and no contract of the customer
                                   holds our key: the key is used elsewhere; a person decides

Messages never contain the bearer token: the gateway builds them from status codes and the
API's ``message`` only.
"""

from __future__ import annotations


class MetronomeError(Exception):
    """Base class; ``status`` is the HTTP status when there was one."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class TransientError(MetronomeError):
    """Worth retrying later; bounded retries already happened inside the gateway."""


class ServerError(TransientError):
    """A 5xx answer (the API's internal error; cached under the Idempotency-Key)."""


class RateLimitedError(TransientError):
    """A 429 answer; ``retry_after_s`` from ``Retry-After-Ms`` / ``Retry-After`` when sent,
    ``limit_type`` from ``X-Metronome-Rate-Limit-Type`` (client or customer) when sent."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 429,
        retry_after_s: float | None,
        limit_type: str | None = None,
    ) -> None:
        super().__init__(message, status=status)
        self.retry_after_s = retry_after_s
        self.limit_type = limit_type


class ConnectionFailedError(TransientError):
    """No answer (connect error, timeout, dropped connection) or a 408: outcome unknown."""


class UnexpectedAnswerError(TransientError):
    """A 200 whose body is not the documented shape (a proxy's page, a truncated or changed
    answer): the call's outcome is unknown, as after a dropped connection, so the engine
    re-reads instead of crashing; if it keeps happening the sync dead-letters with this."""


class ConflictError(MetronomeError):
    """A 409; ``conflicting_id`` is the customer that holds the alias or value, if named."""

    def __init__(self, message: str, *, conflicting_id: str | None = None) -> None:
        super().__init__(message, status=409)
        self.conflicting_id = conflicting_id


class TokenRefusedError(MetronomeError):
    """Metronome refuses the bearer token itself (401; 403 for a token without the
    permission). Neither the record's fault nor a blip: the sync parks, the refusal is shared
    in Redis so no process asks again before its backoff (worker/outages/token.py), and the
    parked syncs drain once a probe gets through. ``sent`` is False when the gate raised it
    without sending the request (the refusal was already known)."""

    def __init__(self, message: str, *, status: int | None = None, sent: bool = True) -> None:
        super().__init__(message, status=status)
        self.sent = sent


class PermanentError(MetronomeError):
    """400/404/422 (or a 403 about one feature): the request is wrong as sent; ``message`` is
    the API's."""


class UnresolvableConflictError(PermanentError):
    """Making the customer right would take data from another customer; never done."""

    def __init__(self, message: str, *, customer_ids: tuple[str, ...] = ()) -> None:
        super().__init__(message, status=409)
        self.customer_ids = customer_ids


class ContractInputError(PermanentError):
    """This opportunity's contract cannot be made as mapped (unknown product, a product that
    is not FIXED, no matching billing configuration, a body the API refuses): the deal
    dead-letters with this reason; the customer and every other deal go on."""


class ContractConflictError(PermanentError):
    """The create was refused with 409 and no contract of this customer holds our key: the key
    or the ``sfdc_opportunity_id`` value is used elsewhere. A person must decide."""
