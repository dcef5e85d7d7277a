"""``crmsync check``: one line per finding, non-zero exit on any failure.

Checks run in dependency order (settings, mapping, Redis, Salesforce, Metronome, the
contract catalog, the change-event topics, a live worker) and each says what it found, so an
operator reading a failed health check knows which side is broken: a mapping mistake is
reported on the mapping's line, never as a Salesforce failure. Each problem gets a line of its
own (three wrong variables: three lines). Failures are described as the CLI describes them
everywhere (worker/commands/errors.py). Credentials are used, never printed.

``--quick`` (the container health check) makes no Salesforce or Metronome call, so it spends
no API quota however often it runs, but it still validates settings and mapping: a worker
whose every poll would fail must not look healthy. ``--this-host`` asks the worker on this
host by its node name, not whichever worker takes the next message from the shared queue.
"""

from __future__ import annotations

import argparse
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING

from worker.commands.check_report import CheckResult, report
from worker.commands.check_stamp import secret_digest, write_stamp
from worker.commands.quick_check import quick_check

if TYPE_CHECKING:
    from mappings import Mapping
    from worker.settings import Settings

__all__ = ["CheckResult", "add_parser", "run"]

#: The custom field that identifies a customer's Salesforce account (worker/metronome/engine.py).
IDENTITY_KEY = "sfdc_account_id"


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("check", help="verify settings, mapping and connectivity")
    parser.add_argument(
        "--worker-timeout", type=float, default=10.0, help="seconds to wait for a live worker"
    )
    parser.add_argument("--skip-worker", action="store_true", help="do not require a live worker")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="settings, mapping, Redis and worker only: no Salesforce or Metronome call (for "
        "frequent container health checks, which would otherwise spend API quota every interval)",
    )
    node = parser.add_mutually_exclusive_group()
    node.add_argument(
        "--node", help="require this worker node to answer (e.g. celery@host), not any worker"
    )
    node.add_argument(
        "--this-host",
        action="store_true",
        help="require the worker of this host (celery@HOSTNAME) to answer: a replica's own "
        "health check, which another replica must not answer for",
    )
    # before_setup: the CLI tries it before it reads settings or sets up logging; the stamped
    # quick check (worker/commands/quick_check.py) answers there in a fraction of the time.
    parser.set_defaults(func=run, before_setup=quick_check)


def check_settings() -> tuple[list[CheckResult], Settings | None]:
    # Imported here, as every dependency of the full check: the module is imported for its
    # parser by `crmsync check`, whose quick form must not pay for them (quick_check.py).
    from worker.settings import SettingsError, load_settings, salesforce_auth_mode

    try:
        settings = load_settings()
    except SettingsError as exc:
        return [CheckResult("settings", False, problem) for problem in exc.problems], None
    mode = salesforce_auth_mode(settings)
    parts = [
        f"salesforce auth {mode.value if mode else 'not configured'}",
        f"metronome {'token set' if settings.metronome_configured else 'token not set'}",
        f"poll every {settings.poll_interval_s:g}s, overlap {settings.overlap_s:g}s",
    ]
    return [CheckResult("settings", True, "; ".join(parts))], settings


def check_mapping(settings: Settings) -> tuple[list[CheckResult], Mapping | None]:
    # The mappings package directly, not worker.context: the health check stays light.
    from mappings import MappingFileError, load_default_mapping, load_mapping

    def load_configured_mapping(settings: Settings) -> Mapping:
        if settings.mapping_file is not None:
            return load_mapping(settings.mapping_file)
        return load_default_mapping()

    source = str(settings.mapping_file or "the packaged default (mappings/default.yaml)")
    try:
        mapping = load_configured_mapping(settings)
    except MappingFileError as exc:
        return [
            CheckResult("mapping", False, f"{exc.source}:{line or '?'}: key {key or '<top>'}: {m}")
            for key, line, m in exc.problems
        ], None
    fields = len(mapping.opportunity_fields())
    return [CheckResult("mapping", True, f"{source}: valid, reads {fields} fields")], mapping


def check_redis(settings: Settings) -> tuple[CheckResult, str | None]:
    import redis

    from worker.logs import redacted_url
    from worker.state.connections import primary_address, redis_client
    from worker.state.server import NoCrmsyncRunning, find_embedded

    url = settings.redis_url or find_embedded(settings.data_dir)
    if url is None:
        message = str(NoCrmsyncRunning(settings.data_dir)).removeprefix("crmsync: ")
        return CheckResult("redis", False, message), None
    client = redis_client(url, socket_connect_timeout=3, socket_timeout=5)
    try:
        primary = primary_address(url)
        info = client.info("server")
        policy = client.config_get("maxmemory-policy").get("maxmemory-policy", "?")
    except redis.RedisError as exc:
        return CheckResult("redis", False, _describe(exc, settings)), None
    finally:
        client.close()
    ok = policy == "noeviction"
    detail = f"{redacted_url(url)} redis {info.get('redis_version')}, maxmemory-policy {policy}"
    if primary is not None:
        detail += f"; the sentinels name {primary} as the primary"
    if not ok:
        detail += " (must be noeviction: Celery's queues would be evicted under memory pressure)"
    return CheckResult("redis", ok, detail), url


def check_salesforce(settings: Settings) -> CheckResult:
    """Log in (the configured mode) and read the org's daily API quota (GET /limits)."""
    from worker.context import salesforce_client

    if not settings.salesforce_configured:
        return CheckResult("salesforce", False, "no Salesforce login configured (SALESFORCE_*)")
    try:
        daily = salesforce_client(settings).limits()["DailyApiRequests"]
    except Exception as exc:
        return CheckResult("salesforce", False, _describe(exc, settings))
    used, limit = int(daily["Max"]) - int(daily["Remaining"]), int(daily["Max"])
    share = used / limit if limit else 0.0
    ok = share < settings.salesforce_quota_fraction
    detail = f"logged in; API quota {used}/{limit} used ({share:.0%})"
    if not ok:
        detail += f", at or above SALESFORCE_QUOTA_FRACTION {settings.salesforce_quota_fraction}"
        detail += ": polls are stopping"
    return CheckResult("salesforce", ok, detail)


def check_salesforce_fields(settings: Settings, mapping: Mapping) -> CheckResult:
    """Every field the mapping reads exists in the org and the integration user can read it
    (describe of the mapped objects; worker/salesforce/org_schema.py)."""
    from worker.commands.preflight import org_field_problems

    try:
        problems = org_field_problems(settings, mapping)
    except Exception as exc:
        return CheckResult("salesforce fields", False, _describe(exc, settings))
    if problems:
        return CheckResult(
            "salesforce fields", False, "; ".join(problem.line() for problem in problems)
        )
    return CheckResult("salesforce fields", True, "every mapped field exists and is readable")


def check_metronome(settings: Settings, mapping: Mapping | None) -> CheckResult:
    """Authenticate (listKeys) and verify the custom field keys syncs write are registered.

    ``sfdc_account_id`` must enforce uniqueness (it is the guard against a second customer for
    one account); if it is absent the first sync registers it, so that is not a failure. Keys
    the mapping writes are never registered automatically: a missing one fails every sync.
    Without a valid mapping only the first part runs (the mapping's own line says why).
    """
    from worker.metronome import MetronomeGateway

    if settings.metronome_bearer_token is None:
        return CheckResult("metronome", False, "METRONOME_BEARER_TOKEN is not set")
    try:
        gateway = MetronomeGateway.from_settings(settings)
        try:
            keys = dict(gateway.list_custom_field_keys())
        finally:
            gateway.close()
    except Exception as exc:
        return CheckResult("metronome", False, _describe(exc, settings))
    problems: list[str] = []
    notes: list[str] = []
    if IDENTITY_KEY not in keys:
        notes.append(f"{IDENTITY_KEY} not registered yet (the first sync registers it)")
    elif not keys[IDENTITY_KEY]:
        problems.append(f"{IDENTITY_KEY} is registered without enforce_uniqueness")
    else:
        notes.append(f"{IDENTITY_KEY} registered, unique")
    if mapping is None:
        notes.append("the mapping's keys not checked (see the mapping line)")
    else:
        missing = sorted(set(mapping.custom_fields) - {IDENTITY_KEY} - set(keys))
        if missing:
            problems.append("custom field keys not registered: " + ", ".join(missing))
    detail = "; ".join(["authenticated", *notes, *problems])
    return CheckResult("metronome", not problems, detail)


def check_pubsub(settings: Settings) -> CheckResult:
    """``crmsync listen`` can work: log in, then GetTopic says each topic can be subscribed
    (Change Data Capture selected for the object, View All for the user). Needs no mapping:
    a mapping mistake stays on the mapping's line."""
    from worker.context import salesforce_client
    from worker.listener.process import check_topics, pubsub_channel_for
    from worker.salesforce.events.auth import Authenticator

    if not settings.salesforce_configured:
        return CheckResult("pubsub", False, "no Salesforce login configured (SALESFORCE_*)")
    topics = settings.listener_topic_list
    try:
        auth = Authenticator(lambda: salesforce_client(settings), settings.salesforce_org_id)
        client = pubsub_channel_for(settings)
        try:
            problems = check_topics(client, auth, topics)
        finally:
            client.close()
    except Exception as exc:
        return CheckResult("pubsub", False, f"login or GetTopic failed: {_describe(exc, settings)}")
    if problems:
        return CheckResult("pubsub", False, "; ".join(problems))
    return CheckResult("pubsub", True, "can subscribe to " + ", ".join(topics))


def check_contracts(settings: Settings, mapping: Mapping) -> CheckResult:
    """Every rate card, package and product the mapping's contracts name exists in Metronome
    (worker/commands/check_contracts.py); skipped without a contract block."""
    from worker.commands.check_contracts import check_contract_catalog
    from worker.context import build_source
    from worker.metronome import MetronomeGateway

    if mapping.contract is None:
        return CheckResult("contracts", True, "the mapping has no contract block")
    try:
        gateway = MetronomeGateway.from_settings(settings)
        try:
            ok, detail = check_contract_catalog(mapping, build_source(settings, mapping), gateway)
        finally:
            gateway.close()
    except Exception as exc:
        return CheckResult("contracts", False, f"catalog check failed: {_describe(exc, settings)}")
    return CheckResult("contracts", ok, detail)


def _describe(exc: BaseException, settings: Settings) -> str:
    """The CLI's one-line explanation when there is one; else the type and a scrubbed text."""
    from worker.commands.errors import explain
    from worker.logs import scrub

    failure = explain(exc, settings)
    if failure is not None:
        return failure.message.removeprefix("crmsync: ")
    status = getattr(exc, "status_code", None) or getattr(exc, "status", None)
    text = scrub(str(exc))[:300]
    return f"{type(exc).__name__}" + (f" (HTTP {status})" if status else "") + f": {text}"


def check_worker(url: str, timeout: float, node: str | None) -> CheckResult:
    from worker.app import app, redis_conf

    # In Celery's and kombu's own forms (a redis-sentinel:// URL becomes sentinel:// + master).
    app.conf.update(redis_conf(url))
    if node is not None:
        return _ping_node(node, timeout)
    from tasks.health import ping

    # expires: a worker that starts after we gave up drops this ping instead of answering
    # nobody.
    result = ping.apply_async(expires=timeout)
    try:
        answer = result.get(timeout=timeout)
    except Exception as exc:
        return CheckResult("worker", False, f"no worker answered crmsync.ping: {exc!r}")
    finally:
        # Unsubscribe now: left to AsyncResult.__del__ it would run at interpreter exit and
        # print a traceback ("sys.meta_path is None") when no worker answered.
        result.backend.remove_pending_result(result)
    return CheckResult("worker", True, f"crmsync.ping answered by {answer.get('hostname')}")


def _ping_node(node: str, timeout: float) -> CheckResult:
    """Celery's remote-control ping addressed to one node (as ``celery inspect ping -d``)."""
    from worker.app import app

    try:
        replies = app.control.ping(destination=[node], timeout=timeout)
    except Exception as exc:
        return CheckResult("worker", False, f"{node} did not answer: {exc!r}")
    answered = [name for reply in replies for name in reply]
    if node not in answered:
        return CheckResult("worker", False, f"{node} did not answer a ping within {timeout:g}s")
    return CheckResult("worker", True, f"{node} answered a ping")


def stamp_validated(settings: Settings, results: list[CheckResult]) -> None:
    """Settings and mapping passed with today's inputs: stamp them, with their lines, for the
    quick check (worker/commands/check_stamp.py), and a digest of the Redis URL the settings
    built, so it reaches the same Redis with the same credentials or defers to this check."""
    from worker.logs import redacted_url
    from worker.settings import SECRET_FILES

    read = [getattr(settings, field) for field in SECRET_FILES.values()]
    read.append(settings.mapping_file)
    url = settings.redis_url or ""
    write_stamp(
        [str(path) for path in read if path is not None],
        lambda key: {
            "lines": [{"name": r.name, "detail": r.detail} for r in results],
            "redis": {"digest": secret_digest(key, url), "shown": redacted_url(url)},
        },
    )


def _passed(results: list[CheckResult], *names: str) -> bool:
    """Every named check ran and passed (a later check that depends on them runs only then:
    one cause, one FAIL line)."""
    return all(any(r.name == name and r.ok for r in results) for name in names)


def run(args: argparse.Namespace) -> int:
    results, settings = check_settings()
    if settings is not None:
        mapping_results, mapping = check_mapping(settings)
        results += mapping_results
        if mapping is not None and all(r.ok for r in results):
            stamp_validated(settings, results)
        redis_result, url = check_redis(settings)
        results.append(redis_result)
        extra: list[Callable[[], CheckResult | None]] = []
        if not args.quick:
            extra.append(lambda: check_salesforce(settings))
            if mapping is not None:
                extra.append(
                    lambda: (
                        check_salesforce_fields(settings, mapping)
                        if _passed(results, "salesforce")
                        else None
                    )
                )
            extra.append(lambda: check_metronome(settings, mapping))
            if mapping is not None:
                # The catalog check reads today's won deals from Salesforce and looks their
                # rate cards up in Metronome: through either side failing it would only fail
                # again, for the reason already on that side's line.
                extra.append(
                    lambda: (
                        check_contracts(settings, mapping)
                        if _passed(results, "salesforce", "salesforce fields", "metronome")
                        else None
                    )
                )
            # Through a Salesforce that refuses the login GetTopic would only fail again.
            extra.append(lambda: check_pubsub(settings) if _passed(results, "salesforce") else None)
        if url is not None and not args.skip_worker:
            node = f"celery@{socket.gethostname()}" if args.this_host else args.node
            extra.append(lambda: check_worker(url, args.worker_timeout, node))
        for check in extra:
            found = check()
            if found is not None:
                results.append(found)
    return report(results, args.json)
