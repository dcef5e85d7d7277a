"""``crmsync check``: one line per check, non-zero exit on any failure."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

import redis

from worker.redis_server import find_embedded
from worker.settings import Settings, SettingsError, load_settings, salesforce_auth_mode


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
        if url is not None and not args.skip_worker:
            extra.append(lambda: check_worker(url, args.worker_timeout))
        results.extend(check() for check in extra)
    for result in results:
        print(result.line())
    return 0 if all(r.ok for r in results) else 1
