"""Every Redis key crmsync writes, in one place, with why each lives as long as it does.

All keys sit under one configurable prefix (``CRMSYNC_REDIS_PREFIX``, default ``crmsync``), so
one Redis can serve several crmsync installations and an operator can see or delete exactly
ours. Nothing here is the source of truth: losing every key costs API calls (re-reads), never
a duplicate customer, because the guards live in Metronome (identity aliases, uniqueness keys
and Idempotency-Keys: correctness never rests on Redis alone). Celery's own keys (queues,
results, redbeat) are named by Celery.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Our Celery queue. kombu's Redis transport keeps a queue's waiting messages in a list named
#: after it, without our prefix, so this is a Redis key too (``crmsync status`` counts it):
#: defined here, where a read-only command finds it without importing Celery.
QUEUE = "crmsync"

#: A poll that dies holding the lock frees it after this long. Longer than the longest poll
#: we expect (100k rows stream in about a minute), shorter than an operator's patience.
POLL_LOCK_TTL_S = 600
#: Per-account lock: longer than the task hard time limit (300 s), so a live sync never loses
#: its lock, but a SIGKILLed one frees it by itself.
ACCOUNT_LOCK_TTL_S = 330
#: How long a delivery counter remembers a message: far past the visibility timeout (900 s)
#: so every redelivery of one message is counted, short enough not to accumulate.
DELIVERY_COUNT_TTL_S = 86_400
#: The change-event listener's lease: a listener that dies stops renewing it, and a standby takes
#: over within this long (CRMSYNC_LISTENER_LEASE_S is the setting; this is its default).
LISTENER_LEASE_S = 15
#: Dead letters are kept longer than the ledger: each one is an unbilled customer until an
#: operator acts on it.
DEAD_LETTER_MAX_ENTRIES = 100_000
#: Ledger entry ids kept per account or opportunity in its history index: a few years of a
#: busy account's syncs. Older ids are dropped with the stream's own trimming in mind (an id
#: whose entry the stream has trimmed is skipped when read).
LEDGER_INDEX_MAX_PER_ID = 1_000
#: Resolved dead-letter groups and acknowledged attention items kept for audit; past this the
#: oldest are deleted (open ones never are: each is something an operator has not seen to).
CLOSED_ITEMS_KEPT = 10_000
#: Dead-letter groups remembered per account or opportunity (its history's dead letters).
DEAD_LETTER_GROUPS_PER_ID = 100
#: The rate governor's state outlives a quiet day (its 429 counts feed ``crmsync status``) and
#: then goes: an idle governor restarts at METRONOME_MAX_RPS, which is what it would climb
#: back to anyway.
GOVERNOR_TTL_S = 86_400
#: The drain of parked syncs holds its lock this long at most (it renews nothing: a drain is
#: a few Redis round trips and publishes, seconds even for 10,000 parked syncs).
DRAIN_LOCK_TTL_S = 60


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str = "crmsync"

    # --- the poll -----------------------------------------------------------------------
    @property
    def cursors(self) -> str:
        """Hash: stream name → ISO SystemModstamp high-water mark. No TTL (it is the bookmark)."""
        return f"{self.prefix}:cursors"

    @property
    def poll_lock(self) -> str:
        """String: the running poll's token; TTL POLL_LOCK_TTL_S."""
        return f"{self.prefix}:poll:lock"

    @property
    def poll_fence(self) -> str:
        """Integer fencing token, bumped by every poll that takes the lock; a poll may write
        the cursors only while the fence still holds its own token (a late poll cannot
        overwrite a newer one's cursor)."""
        return f"{self.prefix}:poll:fence"

    @property
    def last_poll(self) -> str:
        """Hash: the last finished poll's summary (for ``crmsync status``). No TTL."""
        return f"{self.prefix}:poll:last"

    @property
    def cursor_origin(self) -> str:
        """Hash: the primary's run id when the last cursor advance's poll started, and the
        cursors it started from (JSON): the failover rule's memory (worker/state/polls.py).
        No TTL, like the cursors."""
        return f"{self.prefix}:cursors:origin"

    @property
    def consumers(self) -> str:
        """Hash: worker node name -> the last time its main loop ticked (epoch seconds). No
        TTL: a worker stuck alive must stay listed, as stalled; a stopping worker removes
        its own field."""
        return f"{self.prefix}:consumers"

    @property
    def won_opportunities(self) -> str:
        """Set of opportunity ids seen won: tells a re-opened deal from a never-won one."""
        return f"{self.prefix}:won-opportunities"

    @property
    def salesforce_stop(self) -> str:
        """String (JSON): why polls stopped asking Salesforce, with the fingerprint of the
        configuration that failed (worker/state/stops.py); TTL CRMSYNC_LOGIN_BACKOFF_MAX_S, so
        a fix made in Salesforce alone is tried again within that long."""
        return f"{self.prefix}:salesforce:stop"

    @property
    def login_refusals(self) -> str:
        """Hash: consecutive Salesforce login refusals (count, since, reason, next login time,
        login-settings fingerprint), shared by every process (worker/state/logins.py). Deleted
        when a session works; otherwise expires a day (or four of the longest waits) after the
        last refusal, so a refusal nobody retried any more still shows in ``crmsync status``
        the next morning and then goes."""
        return f"{self.prefix}:salesforce:login-refusals"

    @property
    def metronome_token(self) -> str:
        """Hash: Metronome refusing the bearer token (since, refusals in a row, next probe,
        the token's sha256 prefix and METRONOME_BASE_URL, the last answer), shared by every
        process (worker/state/metronome_token.py). Deleted when a probe gets through;
        otherwise expires a day (or four of the longest waits) after the last refusal, as the
        login refusals do."""
        return f"{self.prefix}:metronome:token-refused"

    # --- accounts -----------------------------------------------------------------------
    def account(self, account_id: str) -> str:
        """Hash: state_hash (dedupe), customer_id (find cache), synced_at. No TTL: both are
        verified against Metronome before being trusted for a write."""
        return f"{self.prefix}:account:{account_id}"

    def account_lock(self, account_id: str) -> str:
        """String: the syncing task's token; TTL ACCOUNT_LOCK_TTL_S."""
        return f"{self.prefix}:lock:account:{account_id}"

    def idempotency_generation(self, account_id: str) -> str:
        """Integer: bumped after a 5xx so the next Idempotency-Key differs (Metronome replays
        a cached 5xx for the same key). Written before the call it protects. No TTL."""
        return f"{self.prefix}:idempotency:{account_id}"

    # --- opportunities (contracts) -------------------------------------------------------
    def opportunity(self, opportunity_id: str) -> str:
        """Hash: contract_id, contract_hash and contract (the canonical desired contract it was
        made from), customer_id; attention_hash (the changed state already reported) and
        dead_hash (the bad mapping already dead-lettered). No TTL: the contract id is a
        saving (one list call), the contract itself is found again by its uniqueness key."""
        return f"{self.prefix}:opportunity:{opportunity_id}"

    def contract_subscriptions(self, contract_id: str) -> str:
        """String (JSON): the contract's subscriptions as ``{"<product id> <FREQUENCY>":
        "<subscription id>"}``, learnt from Metronome's own answers (the create's, a list's,
        an edit's, the one read an expansion makes when this key is missing or does not name the
        subscription a seat line needs), so a seat expansion's quantity update costs the edit
        alone. Trusted only for the subscriptions it names (an id never stops naming its
        subscription), so a stale or partly lost record costs a read, never a wrong edit;
        written only for a contract with subscriptions. No TTL: a saving like the contract
        id -- missing (a FLUSHALL), the next seat expansion reads the contract once."""
        return f"{self.prefix}:contract:{contract_id}:subscriptions"

    def delivery_count(self, task_id: str, attempt: int) -> str:
        """Integer: how often one message (task id + retry number) was delivered; a message
        that keeps killing its worker is dead-lettered instead of looping forever."""
        return f"{self.prefix}:delivery:{task_id}:{attempt}"

    # --- records ------------------------------------------------------------------------
    @property
    def ledger(self) -> str:
        """Stream: one entry per sync that changed something or needs attention; capped at
        CRMSYNC_LEDGER_MAX_ENTRIES (approximate MAXLEN)."""
        return f"{self.prefix}:ledger"

    @property
    def dead_letters(self) -> str:
        """Stream: every time a record could not be synced (one entry per attempt, with its
        group id and whether it opened the group; the snapshot lives with the group); capped
        at DEAD_LETTER_MAX_ENTRIES. What the alert watcher and ``--wait`` reports read."""
        return f"{self.prefix}:dead-letters"

    def ledger_index(self, record_id: str) -> str:
        """Sorted set: the ledger entry ids that concern one account or opportunity (scored by
        their stream time), written in the same script as the entry, so ``crmsync history``
        reads an account's entries without scanning the stream. Capped at
        LEDGER_INDEX_MAX_PER_ID; no TTL (a missing index only means a scan of the stream)."""
        return f"{self.prefix}:ledger:of:{record_id}"

    # --- dead letters, grouped (worker/state/dead_letters.py) ---------------------------------
    @property
    def dead_letter_groups(self) -> str:
        """Hash: group id → JSON of one dead-letter group (what to fix: an account or an
        opportunity and a kind, with count, first/last seen, latest reason, resolution).
        Open groups are kept until resolved; resolved ones up to CLOSED_ITEMS_KEPT."""
        return f"{self.prefix}:dead-letter-groups"

    @property
    def dead_letter_snapshots(self) -> str:
        """Hash: group id → the latest record snapshot (JSON), what ``redrive`` re-sends; apart
        from the group so listing groups never loads every record."""
        return f"{self.prefix}:dead-letter-groups:snapshots"

    @property
    def dead_letters_open(self) -> str:
        """Hash: "subject|kind" → id of its open group: at most one open group per thing to
        fix. Its length is the number of dead letters waiting (status, metrics)."""
        return f"{self.prefix}:dead-letter-groups:open"

    @property
    def dead_letters_resolved(self) -> str:
        """Sorted set: resolved group ids by resolution time (trims the oldest past
        CLOSED_ITEMS_KEPT)."""
        return f"{self.prefix}:dead-letter-groups:resolved"

    @property
    def dead_letter_sequence(self) -> str:
        """Integer: the last group id handed out (short ids an operator can type)."""
        return f"{self.prefix}:dead-letter-groups:seq"

    def dead_letters_of(self, record_id: str) -> str:
        """Sorted set: group ids of one account or opportunity by first time seen (what its
        history shows, and what a successful sync resolves). Capped at
        DEAD_LETTER_GROUPS_PER_ID; no TTL."""
        return f"{self.prefix}:dead-letter-groups:of:{record_id}"

    # --- needs attention (worker/state/attention.py) -------------------------------------------
    @property
    def attention_items(self) -> str:
        """Hash: item id → JSON of one "needs attention" item (a re-opened deal, a merged
        account, a changed or archived contract, an alias conflict) with what to do and, once
        acknowledged, by whom and when. Open items are kept until acknowledged; acknowledged
        ones up to CLOSED_ITEMS_KEPT, for audit."""
        return f"{self.prefix}:attention:items"

    @property
    def attention_open(self) -> str:
        """Hash: "event|record id" → id of its open item: the same situation seen again bumps
        the item's count instead of opening a second one."""
        return f"{self.prefix}:attention:open"

    @property
    def attention_acked(self) -> str:
        """Sorted set: acknowledged item ids by acknowledgement time (trims the oldest)."""
        return f"{self.prefix}:attention:acked"

    @property
    def attention_sequence(self) -> str:
        """Integer: the last item id handed out."""
        return f"{self.prefix}:attention:seq"

    @property
    def outcomes(self) -> str:
        """Hash: outcome → count since the keys were created (for ``status`` and metrics)."""
        return f"{self.prefix}:outcomes"

    @property
    def bootstrap_done(self) -> str:
        """String: set once the custom field keys are registered in Metronome; a hint only
        (bootstrap itself is idempotent), so it expires daily to re-check."""
        return f"{self.prefix}:bootstrap-done"

    @property
    def contract_bootstrap_done(self) -> str:
        """String: the contract custom field keys are registered (entity ``contract``); a hint
        like bootstrap_done, expiring daily."""
        return f"{self.prefix}:bootstrap-done:contract"

    @property
    def events_check(self) -> str:
        """String with a TTL of CRMSYNC_EVENTS_INTERVAL_S: while it exists, polls skip the
        re-opened-deal and deleted-account queries (their cursors keep their place), so a quiet
        poll costs one Salesforce call."""
        return f"{self.prefix}:events-check"

    def alerted(self, name: str) -> str:
        """String claimed with SET NX by the worker that sends one alert (worker.telemetry.alerts),
        so several watchers send it once; TTL from telemetry.alerts (CLAIM_TTL_S, LAG_REPEAT_S)."""
        return f"{self.prefix}:alerted:{name}"

    @property
    def governor(self) -> str:
        """Hash: the Metronome rate governor shared by every worker process (the next free
        slot, the adapted rate, the hold a 429 asked for, 429 counts by type); TTL
        GOVERNOR_TTL_S, renewed by every request. One key: Metronome's 429s name one
        client-wide limit, so one budget covers every endpoint."""
        return f"{self.prefix}:governor:metronome"

    # --- riding out outages (worker/outages/breaker.py, worker/outages/parking.py) -------
    def breaker(self, api: str) -> str:
        """Hash: one API's circuit breaker shared by every process (state, since, consecutive
        failures, next probe, the probe's lease, last reason, counts). No TTL: an open breaker
        must stay open until a probe succeeds, however long that takes; a closed one is a few
        fields. Lost in a FLUSHALL, it starts closed: the next failures open it again."""
        return f"{self.prefix}:breaker:{api}"

    def breaker_failing(self, api: str) -> str:
        """Set: the accounts whose syncs failed since the breaker's last success (its
        threshold counts different syncs). Emptied by a success or by opening."""
        return f"{self.breaker(api)}:failing"

    @property
    def parked_due(self) -> str:
        """Sorted set: account id → when its parked sync is next due (epoch seconds), for the
        ones waiting; the drain moves the due ones to parked_sent. No TTL: a parked sync
        leaves only by syncing or by becoming a dead letter (CRMSYNC_PARK_MAX_AGE_S)."""
        return f"{self.prefix}:parked:due"

    @property
    def parked_sent(self) -> str:
        """Sorted set: account id → when its replay, sent by the drain and not ended yet, may
        be sent again if it never ends (a lease; only with the queue
        empty: worker/outages/parking.py).
        No TTL (see parked_due)."""
        return f"{self.prefix}:parked:sent"

    @property
    def parked_since(self) -> str:
        """Sorted set: account id → when it was first parked (epoch seconds): the oldest parked
        sync for ``crmsync status`` and the expiry into a dead letter, without reading every
        snapshot. No TTL (see parked_due)."""
        return f"{self.prefix}:parked:since"

    @property
    def parked_items(self) -> str:
        """Hash: account id → the parked sync as JSON (the newest snapshot of the account, why
        it was parked, since, attempts). No TTL (see parked_due). Survives worker restarts and
        a Redis restart with AOF; after a FLUSHALL the cursors are gone too, so the next poll
        reads every won deal again and parks what still fails."""
        return f"{self.prefix}:parked:items"

    @property
    def parked_drained_all(self) -> str:
        """String: the Metronome breaker's ``closed_at`` for which every parked sync was
        already sent (the drain sends them all once after each recovery, due or not)."""
        return f"{self.prefix}:parked:drained-all"

    @property
    def drain_lock(self) -> str:
        """String: the running drain's token, TTL DRAIN_LOCK_TTL_S: one drain at a time, so a
        parked sync is not sent twice by two drains racing for it."""
        return f"{self.prefix}:parked:drain-lock"

    def lock_wait_count(self, task_id: str) -> str:
        """Integer: how often one sync waited on a busy account lock (24 h TTL). Waiting is not
        failing, so it has its own cap instead of using up the retry budget."""
        return f"{self.prefix}:lockwait:{task_id}"

    # --- the change-event listener (worker/salesforce/events) ---------------------------
    @property
    def listener_lease(self) -> str:
        """String: the active listener's token, a lease renewed every third of its TTL
        (LISTENER_LEASE_S by default). One listener per org holds it; others wait."""
        return f"{self.prefix}:listener:lease"

    @property
    def listener_fence(self) -> str:
        """Integer bumped by every listener that takes the lease (its fencing number)."""
        return f"{self.prefix}:listener:fence"

    @property
    def listener_info(self) -> str:
        """Hash: who holds the lease (host, pid), its fencing number and since when."""
        return f"{self.prefix}:listener:info"

    @property
    def listener_replay(self) -> str:
        """Hash: topic -> replay id (opaque bytes) of the last event whose sync was enqueued.
        Written only by the lease holder, only after the enqueue. No TTL: Salesforce keeps
        events 72 h; an older id is refused by the server and the listener falls back."""
        return f"{self.prefix}:listener:replay"

    def listener_topic(self, topic: str) -> str:
        """Hash: one topic's last event and keepalive, event lag, reconnects, counts (for
        ``crmsync status`` and the metrics). No TTL."""
        return f"{self.prefix}:listener:topic:{topic}"
