"""The closed-won source: what changed in Salesforce since the cursors, page by page.

One poll reads up to three queries, in this order:

1. won opportunities whose own ``SystemModstamp`` passed ``cursors.opportunities - overlap``
   OR whose *Account's* ``SystemModstamp`` passed ``cursors.accounts - overlap`` (an account
   rename does not bump the deal, and would otherwise never reach Metronome) -- one query for
   both, so a quiet poll costs one API call; the first poll reads every won deal;
2. opportunities changed with ``IsWon = false`` -> ``opportunity_reopened`` events;
3. deleted accounts from ``queryAll`` -> ``account_deleted`` / ``account_merged`` events.

Streams 2 and 3 run only when the caller asks (``with_events``): the poll task runs them
every few minutes, their cursors keep their place in between, so nothing is missed.

The overlap re-reads rows stamped just before the cursor: Salesforce stamps a row when its
transaction starts, so a long transaction can become visible after a poll has moved past its
stamp. Those re-reads are cheap to drop downstream (the pipeline's hash dedupe).

Quota brake: after every page the ``Sforce-Limit-Info`` usage is compared with
``quota_fraction`` of the daily limit; at or above it -- or on a 403 ``REQUEST_LIMIT_EXCEEDED``
-- the poll stops, logs why, and hands back the cursors it was given, so nothing is skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import SalesforceExpiredSession, SalesforceRefusedRequest

from mappings.ids import normalize_salesforce_id
from worker.salesforce import queries
from worker.salesforce.cursors import Cursors, SourceEvent, parse_salesforce_datetime
from worker.salesforce.errors import QuotaReached, SessionExpired

log = logging.getLogger(__name__)

Row = dict[str, Any]
__all__ = [
    "ClosedWonSource",
    "PollReader",
    "QuotaReached",
    "SessionExpired",
    "strip_attributes",
]

IN_BATCH = 200  # ids per IN (...): ~4 KB of SOQL, far below the 100,000-character limit


def strip_attributes(value: Any) -> Any:
    """Plain dicts without the REST API's ``attributes`` entries, at every level."""
    if isinstance(value, dict):
        return {key: strip_attributes(item) for key, item in value.items() if key != "attributes"}
    if isinstance(value, list):
        return [strip_attributes(item) for item in value]
    return value


class ClosedWonSource:
    def __init__(
        self,
        sf: Salesforce,
        opportunity_fields: Sequence[str],
        *,
        overlap_s: float = 300,
        quota_fraction: float = 0.8,
        batch_size: int = 2000,
    ) -> None:
        if not 0 < quota_fraction <= 1:
            raise ValueError("quota_fraction must be in (0, 1]")
        self.sf = sf
        self.fields = queries.select_list(opportunity_fields)
        self.overlap = timedelta(seconds=overlap_s)
        self.quota_fraction = quota_fraction
        # Salesforce honours 200..2,000 (Sforce-Query-Options); clamp rather than fail.
        self.batch_size = max(200, min(2000, batch_size))

    def poll(self, cursors: Cursors, *, with_events: bool = True) -> PollReader:
        """One poll from ``cursors``. ``with_events=False`` skips the re-opened and deleted
        streams (their cursors stay), so a quiet poll costs one query; the caller runs them
        every few minutes instead of every poll."""
        return PollReader(self, cursors, with_events=with_events)

    # -- manual re-sync -------------------------------------------------------------------
    def records_for_accounts(self, account_ids: Sequence[str]) -> Iterator[Row]:
        """Won records of the given accounts; every id is validated before any request."""
        normalized = list(dict.fromkeys(normalize_salesforce_id(i) for i in account_ids))
        return self._records_in_batches(normalized)

    def _records_in_batches(self, ids: list[str]) -> Iterator[Row]:
        for start in range(0, len(ids), IN_BATCH):
            soql = queries.won_for_accounts(self.fields, ids[start : start + IN_BATCH])
            for page in self.pages(soql):
                yield from page

    def records_for_changes(
        self, opportunity_ids: Sequence[str], account_ids: Sequence[str]
    ) -> Iterator[Row]:
        """Won records of the given deals and of the given accounts' deals, read fresh: what
        the change-event listener syncs (an event body holds only the changed fields). One
        query per IN_BATCH ids of each kind; every id is validated before any request."""
        opportunities = list(dict.fromkeys(normalize_salesforce_id(i) for i in opportunity_ids))
        accounts = list(dict.fromkeys(normalize_salesforce_id(i) for i in account_ids))
        while opportunities or accounts:
            soql = queries.won_for_ids(self.fields, opportunities[:IN_BATCH], accounts[:IN_BATCH])
            opportunities, accounts = opportunities[IN_BATCH:], accounts[IN_BATCH:]
            for page in self.pages(soql):
                yield from page

    def records_since(self, since: datetime) -> Iterator[Row]:
        """Won records whose deal or account changed after ``since`` (no overlap applied)."""
        for page in self.pages(queries.won_touched_since(self.fields, since)):
            for row in page:
                if _after(row, since, "SystemModstamp") or _after(
                    row, since, "Account", "SystemModstamp"
                ):
                    yield row

    def all_records(self) -> Iterator[Row]:
        for page in self.pages(queries.won_changed_since(self.fields, None)):
            yield from page

    # -- paging ---------------------------------------------------------------------------
    def pages(
        self, soql: str, *, include_deleted: bool = False, calls: list[int] | None = None
    ) -> Iterator[list[Row]]:
        """Pages of cleaned rows via ``nextRecordsUrl``; one page in memory at a time.

        Raises ``QuotaReached`` (caught by the poll) when the quota brake trips, and
        :class:`SessionExpired` when a session that cannot be renewed is refused.
        """
        headers = {"Sforce-Query-Options": f"batchSize={self.batch_size}"}
        next_url: str | None = None
        while True:
            try:
                if next_url is None:
                    result = self.sf.query(soql, include_deleted=include_deleted, headers=headers)
                else:
                    result = self.sf.query_more(next_url, identifier_is_url=True, headers=headers)
            except SalesforceRefusedRequest as exc:
                if _error_code(exc.content) == "REQUEST_LIMIT_EXCEEDED":
                    log.warning(
                        "salesforce poll stopped: the org's daily API quota is exhausted "
                        "(403 REQUEST_LIMIT_EXCEEDED); cursors unchanged"
                    )
                    raise QuotaReached(
                        "Salesforce refused the call: the daily API quota is exhausted"
                    ) from None
                raise
            except SalesforceExpiredSession:
                if getattr(self.sf, "_salesforce_login_partial", None) is not None:
                    raise
                raise SessionExpired(
                    "the pre-issued Salesforce session (SALESFORCE_SESSION_ID) expired or was "
                    "revoked and cannot be renewed: issue a new one, or configure a login mode "
                    "(username/password, OAuth, JWT or client credentials)"
                ) from None
            if calls is not None:
                calls[0] += 1
            self._check_quota()
            yield [strip_attributes(record) for record in result["records"]]
            if result.get("done", True):
                return
            next_url = str(result["nextRecordsUrl"])

    def _check_quota(self) -> None:
        usage = self.sf.api_usage.get("api-usage")
        if usage is None or usage.total <= 0:
            return
        if usage.used >= self.quota_fraction * usage.total:
            log.warning(
                "salesforce poll stopped: API usage %d/%d is at or above %.0f%% of the daily "
                "quota; cursors unchanged, the next poll tries again",
                usage.used,
                usage.total,
                self.quota_fraction * 100,
            )
            raise QuotaReached(
                f"Salesforce API usage {usage.used}/{usage.total} reached "
                f"{self.quota_fraction:.0%} of the daily quota"
            )


def _error_code(content: Any) -> str | None:
    if isinstance(content, list) and content and isinstance(content[0], dict):
        code = content[0].get("errorCode")
        return str(code) if code is not None else None
    return None


def _stamp(row: Row, *path: str) -> datetime | None:
    value: Any = row
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return parse_salesforce_datetime(value) if isinstance(value, str) else None


def _after(row: Row, since: datetime | None, *path: str) -> bool:
    """``stamp > since`` at full precision.

    ``format_soql`` writes datetimes to the second, so the query's own ``>`` is floored and
    may return rows up to a second older than asked; dropping them here keeps the window
    exactly ``cursor - overlap`` and avoids re-delivering rows for that reason alone.
    """
    if since is None:
        return True
    stamp = _stamp(row, *path)
    return stamp is None or stamp > since


def _required_stamp(row: Row) -> datetime:
    stamp = _stamp(row, "SystemModstamp")
    if stamp is None:  # selected by our own query: Salesforce always returns it
        raise ValueError(f"row {row.get('Id')!r} has no SystemModstamp")
    return stamp


def _newest(current: datetime | None, candidate: datetime | None) -> datetime | None:
    if candidate is None:
        return current
    return candidate if current is None or candidate > current else current


class PollReader(Iterator[Row]):
    """Iterate the won rows of one poll; the summary attributes are valid once exhausted."""

    def __init__(
        self, source: ClosedWonSource, cursors: Cursors, *, with_events: bool = True
    ) -> None:
        self._source = source
        self._cursors = cursors
        self._with_events = with_events
        self._calls = [0]
        self._done = False
        self._new_cursors = cursors
        self.events: list[SourceEvent] = []
        self.stopped_for_quota = False
        #: Why the quota brake stopped the poll (its QuotaReached message).
        self.quota_reason = ""
        self._rows = self._run()

    def __iter__(self) -> PollReader:
        return self

    def __next__(self) -> Row:
        return next(self._rows)

    @property
    def new_cursors(self) -> Cursors:
        if not self._done:
            raise RuntimeError("read the poll to the end before asking for its cursors")
        return self._new_cursors

    @property
    def salesforce_calls(self) -> int:
        """Query and queryMore requests this poll made (logins not included)."""
        return self._calls[0]

    def _since(self, cursor: datetime | None) -> datetime | None:
        return None if cursor is None else cursor - self._source.overlap

    def _run(self) -> Iterator[Row]:
        source, cursors = self._source, self._cursors
        newest_opp: datetime | None = None
        newest_acc: datetime | None = None
        account_since = self._since(cursors.accounts)
        won_since = self._since(cursors.opportunities)
        try:
            if won_since is None or account_since is None:
                # The first poll: every won deal, by its own stamp (no account stream yet).
                soql = queries.won_changed_since(source.fields, won_since)
            else:
                soql = queries.won_or_account_changed_since(source.fields, won_since, account_since)
            for page in source.pages(soql, calls=self._calls):
                for row in page:
                    deal_moved = _after(row, won_since, "SystemModstamp")
                    account_moved = account_since is not None and _after(
                        row, account_since, "Account", "SystemModstamp"
                    )
                    if not (deal_moved or account_moved):
                        continue  # inside the second format_soql drops, outside the window
                    if deal_moved:
                        newest_opp = _newest(newest_opp, _stamp(row, "SystemModstamp"))
                    newest_acc = _newest(newest_acc, _stamp(row, "Account", "SystemModstamp"))
                    yield row
            newest_reopened = self._read_reopened() if self._with_events else None
            newest_deleted = self._read_deleted() if self._with_events else None
        except QuotaReached as exc:
            self.events.clear()
            self.stopped_for_quota = True
            self.quota_reason = str(exc)
            self._new_cursors = cursors
            self._done = True
            return
        # A stream that never ran (no cursor yet: the first poll) starts where this poll's
        # won rows end: nothing before them was known as won, so nothing could be re-opened.
        self._new_cursors = cursors.advanced(
            opportunities=newest_opp,
            accounts=newest_acc,
            reopened=newest_reopened if cursors.reopened is not None else newest_opp,
            deleted=newest_deleted if cursors.deleted is not None else newest_acc,
        )
        self._done = True

    def _read_reopened(self) -> datetime | None:
        since = self._since(self._cursors.reopened)
        if since is None:
            return None
        newest = None
        for page in self._source.pages(queries.not_won_changed_since(since), calls=self._calls):
            for row in page:
                if not _after(row, since, "SystemModstamp"):
                    continue
                stamp = _required_stamp(row)
                newest = _newest(newest, stamp)
                self.events.append(
                    SourceEvent(
                        kind="opportunity_reopened",
                        record_id=str(row["Id"]),
                        account_id=row.get("AccountId"),
                        system_modstamp=stamp,
                        stage_name=row.get("StageName"),
                    )
                )
        return newest

    def _read_deleted(self) -> datetime | None:
        since = self._since(self._cursors.deleted)
        if since is None:
            return None
        newest = None
        soql = queries.deleted_accounts_since(since)
        for page in self._source.pages(soql, include_deleted=True, calls=self._calls):
            for row in page:
                if not _after(row, since, "SystemModstamp"):
                    continue
                stamp = _required_stamp(row)
                newest = _newest(newest, stamp)
                master = row.get("MasterRecordId")
                self.events.append(
                    SourceEvent(
                        kind="account_merged" if master else "account_deleted",
                        record_id=str(row["Id"]),
                        account_id=str(row["Id"]),
                        system_modstamp=stamp,
                        master_record_id=master,
                    )
                )
        return newest
