"""``crmsync check``: one line per check, non-zero exit on any failure.

Checks run in dependency order (settings, Redis, Salesforce, Metronome, a live worker) and
each says what it found, so an operator reading a failed health check knows which side is
broken. Credentials are used, never printed: errors are reported by type and status only.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

import redis

from worker.logs import scrub
from worker.redis_server import find_embedded
from worker.settings import Settings, SettingsError, load_settings, salesforce_auth_mode

#: The custom field that identifies a customer's Salesforce account (worker/metronome/engine.py).
IDENTITY_KEY = "sfdc_account_id"


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'} {self.name}: {self.detail}"


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("check", help="verify settings and connectivity")
    parser.add_argument(
        "--worker-timeout", type=float, default=10.0, help="seconds to wait for a live worker"
    )
    parser.add_argument("--skip-worker", action="store_true", help="do not require a live worker")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="settings, Redis and worker only: no Salesforce or Metronome call (for frequent "
        "container health checks, which would otherwise spend API quota every interval)",
    )
    parser.set_defaults(func=run)


def check_settings() -> tuple[CheckResult, Settings | None]:
    try:
        settings = load_settings()
    except SettingsError as exc:
        return CheckResult("settings", False, str(exc)), None
    mode = salesforce_auth_mode(settings)
    parts = [
        f"salesforce auth {mode.value if mode else 'not configured'}",
        f"metronome {'token set' if settings.metronome_configured else 'token not set'}",
        f"poll every {settings.poll_interval_s:g}s, overlap {settings.overlap_s:g}s",
    ]
    return CheckResult("settings", True, "; ".join(parts)), settings


def check_redis(settings: Settings) -> tuple[CheckResult, str | None]:
    url = settings.redis_url or find_embedded(settings.data_dir)
    if url is None:
        return (
            CheckResult(
                "redis",
                False,
                f"REDIS_URL is unset and no embedded server is running in {settings.data_dir}",
            ),
            None,
        )
    client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=5)
    try:
        info = client.info("server")
        policy = client.config_get("maxmemory-policy").get("maxmemory-policy", "?")
    except redis.RedisError as exc:
        return CheckResult("redis", False, f"{_redacted(url)}: {exc}"), None
    finally:
        client.close()
    ok = policy == "noeviction"
    detail = f"{_redacted(url)} redis {info.get('redis_version')}, maxmemory-policy {policy}"
    if not ok:
        detail += " (must be noeviction: Celery's queues would be evicted under memory pressure)"
    return CheckResult("redis", ok, detail), url


def check_salesforce(settings: Settings) -> CheckResult:
    """Log in (the configured mode) and read the org's daily API quota (GET /limits)."""
    from worker.context import build_source, load_configured_mapping

    if not settings.salesforce_configured:
        return CheckResult("salesforce", False, "no Salesforce login configured (SALESFORCE_*)")
    try:
        source = build_source(settings, load_configured_mapping(settings))
        daily = source.sf.limits()["DailyApiRequests"]
    except Exception as exc:
        return CheckResult("salesforce", False, f"login or limits call failed: {_describe(exc)}")
    used, limit = int(daily["Max"]) - int(daily["Remaining"]), int(daily["Max"])
    share = used / limit if limit else 0.0
    ok = share < settings.salesforce_quota_fraction
    detail = f"logged in; API quota {used}/{limit} used ({share:.0%})"
    if not ok:
        detail += f", at or above SALESFORCE_QUOTA_FRACTION {settings.salesforce_quota_fraction}"
        detail += ": polls are stopping"
    return CheckResult("salesforce", ok, detail)


def check_metronome(settings: Settings) -> CheckResult:
    """Authenticate (listKeys) and verify the custom field keys syncs write are registered.

    ``sfdc_account_id`` must enforce uniqueness (it is the guard against a second customer for
    one account); if it is absent the first sync registers it, so that is not a failure. Keys
    the mapping writes are never registered automatically: a missing one fails every sync.
    """
    from worker.context import load_configured_mapping
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
        return CheckResult("metronome", False, f"authenticated call failed: {_describe(exc)}")
    problems: list[str] = []
    notes: list[str] = []
    if IDENTITY_KEY not in keys:
        notes.append(f"{IDENTITY_KEY} not registered yet (the first sync registers it)")
    elif not keys[IDENTITY_KEY]:
        problems.append(f"{IDENTITY_KEY} is registered without enforce_uniqueness")
    else:
        notes.append(f"{IDENTITY_KEY} registered, unique")
    try:
        wanted = set(load_configured_mapping(settings).custom_fields) - {IDENTITY_KEY}
    except Exception as exc:
        problems.append(f"mapping cannot be loaded: {_describe(exc)}")
        wanted = set()
    missing = sorted(wanted - set(keys))
    if missing:
        problems.append("custom field keys not registered: " + ", ".join(missing))
    detail = "; ".join(["authenticated", *notes, *problems])
    return CheckResult("metronome", not problems, detail)


def check_pubsub(settings: Settings) -> CheckResult:
    """``crmsync listen`` can work: log in, then GetTopic says each topic can be subscribed
    (Change Data Capture selected for the object, View All for the user)."""
    from worker.context import build_source, load_configured_mapping
    from worker.salesforce.events.auth import Authenticator
    from worker.salesforce.events.listener import check_topics, pubsub_channel_for

    if not settings.salesforce_configured:
        return CheckResult("pubsub", False, "no Salesforce login configured (SALESFORCE_*)")
    topics = settings.listener_topic_list
    try:
        mapping = load_configured_mapping(settings)
        auth = Authenticator(lambda: build_source(settings, mapping).sf, settings.salesforce_org_id)
        client = pubsub_channel_for(settings)
        try:
            problems = check_topics(client, auth, topics)
        finally:
            client.close()
    except Exception as exc:
        return CheckResult("pubsub", False, f"login or GetTopic failed: {_describe(exc)}")
    if problems:
        return CheckResult("pubsub", False, "; ".join(problems))
    return CheckResult("pubsub", True, "can subscribe to " + ", ".join(topics))


def _describe(exc: BaseException) -> str:
    """An error without its arguments' secrets: the type, and an HTTP status if it has one."""
    status = getattr(exc, "status_code", None) or getattr(exc, "status", None)
    text = scrub(str(exc))[:300]
    return f"{type(exc).__name__}" + (f" (HTTP {status})" if status else "") + f": {text}"


def check_worker(url: str, timeout: float) -> CheckResult:
    from worker.app import app

    app.conf.update(broker_url=url, result_backend=url)
    from tasks.health import ping

    try:
        answer = ping.apply_async().get(timeout=timeout)
    except Exception as exc:
        return CheckResult("worker", False, f"no worker answered crmsync.ping: {exc!r}")
    return CheckResult("worker", True, f"crmsync.ping answered by {answer.get('hostname')}")


def _redacted(url: str) -> str:
    """A Redis URL without its password."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.split('@', 1)[1]}"


def run(args: argparse.Namespace) -> int:
    results: list[CheckResult] = []
    settings_result, settings = check_settings()
    results.append(settings_result)
    if settings is not None:
        redis_result, url = check_redis(settings)
        results.append(redis_result)
        extra: list[Callable[[], CheckResult]] = []
        if not args.quick:
            extra += [lambda: check_salesforce(settings), lambda: check_metronome(settings)]
            extra.append(lambda: check_pubsub(settings))
        if url is not None and not args.skip_worker:
            extra.append(lambda: check_worker(url, args.worker_timeout))
        results.extend(check() for check in extra)
    for result in results:
        print(result.line())
    return 0 if all(r.ok for r in results) else 1
