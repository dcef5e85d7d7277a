"""Every Redis client crmsync makes, built in one place so all of them survive a failover.

A failover replaces the server behind a connection in one of two ways. The old primary dies:
the connection breaks, and the next command reconnects (to the endpoint's new server). Or the
old primary lives on, demoted to a replica of the new one: the connection stays open and
every write is refused with ``READONLY``. redis-py retries neither (a ``ResponseError`` is an
answer, not a fault), so a client would be refused forever. :class:`PrimaryConnection` turns
that answer into what it means: this server is no longer the primary; it disconnects and
raises ``ConnectionError``, so the retry or reconnect of the caller reaches the new primary
(redis-py's Sentinel connections do the same, ``SentinelManagedConnection``).
"""

from __future__ import annotations

from typing import Any

import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError
from redis.sentinel import Sentinel

from worker.settings.sentinel import SentinelTarget, is_sentinel_url, parse_sentinel_url

#: Socket timeouts and health checks on every client: a connection whose server vanished
#: without closing it (a failover's moving endpoint, a NAT timeout) fails within these bounds
#: instead of waiting forever.
SOCKET_TIMEOUT_S = 30.0
SOCKET_CONNECT_TIMEOUT_S = 10.0
HEALTH_CHECK_INTERVAL_S = 25


class DemotedPrimary(RedisConnectionError):
    """The server answered ``READONLY``: it was the primary and is now a replica."""


def _drop_if_demoted(connection: redis.Connection, call: Any) -> Any:
    try:
        return call()
    except ReadOnlyError as exc:
        connection.disconnect()  # type: ignore[no-untyped-call]
        raise DemotedPrimary(f"the server is a read-only replica now (failover): {exc}") from exc


class PrimaryConnection(redis.Connection):
    """A TCP connection that is dropped when its server turns out to be a replica."""

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        return _drop_if_demoted(
            self, lambda: super(PrimaryConnection, self).read_response(*args, **kwargs)
        )


class PrimarySSLConnection(redis.SSLConnection):
    """:class:`PrimaryConnection` over TLS (``rediss://``)."""

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        return _drop_if_demoted(
            self, lambda: super(PrimarySSLConnection, self).read_response(*args, **kwargs)
        )


def redis_client(
    url: str,
    *,
    decode_responses: bool = False,
    socket_timeout: float = SOCKET_TIMEOUT_S,
    socket_connect_timeout: float = SOCKET_CONNECT_TIMEOUT_S,
) -> redis.Redis:
    """A client for crmsync's own state: timeouts, health checks, one retry after a lost
    connection (which reconnects, to the new primary after a failover), and no connection
    kept to a demoted primary. A ``redis-sentinel://`` URL gives a client of the primary the
    sentinels name (worker/settings/sentinel.py)."""
    common: dict[str, Any] = {
        "decode_responses": decode_responses,
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": socket_connect_timeout,
        "socket_keepalive": True,
        "health_check_interval": HEALTH_CHECK_INTERVAL_S,
        "retry_on_timeout": True,
    }
    if is_sentinel_url(url):
        target = parse_sentinel_url(url)
        client: redis.Redis = _sentinel(target).master_for(  # type: ignore[no-untyped-call]
            target.service_name, redis_class=redis.Redis, **_sentinel_data_options(target), **common
        )
        return client
    options: dict[str, Any] = {}
    if url.startswith("rediss://"):
        options["connection_class"] = PrimarySSLConnection
    elif url.startswith("redis://"):
        options["connection_class"] = PrimaryConnection
    pool = redis.ConnectionPool.from_url(url, **options, **common)
    return redis.Redis(connection_pool=pool)


def _sentinel(target: SentinelTarget) -> Sentinel:
    return Sentinel(  # type: ignore[no-untyped-call]
        list(target.sentinels), sentinel_kwargs=target.sentinel_kwargs()
    )


def _sentinel_data_options(target: SentinelTarget) -> dict[str, Any]:
    options: dict[str, Any] = {"db": target.db}
    if target.password:
        options["password"] = target.password
    if target.tls:
        options["ssl"] = True
    return options


def primary_address(url: str) -> str | None:
    """``host:port`` of the primary the sentinels name now (None for a plain URL): what
    ``crmsync check`` shows, so an operator sees where crmsync writes after a failover."""
    if not is_sentinel_url(url):
        return None
    target = parse_sentinel_url(url)
    host, port = _sentinel(target).discover_master(target.service_name)  # type: ignore[no-untyped-call]
    return f"{host}:{port}"


def primary_run_id(client: redis.Redis) -> str:
    """The server's ``run_id`` (INFO server): new at every start, so a different one means
    another server (a failover) or a restart since it was recorded. Empty where INFO is not
    served (a managed proxy that hides it, fakeredis): the failover rule is then off."""
    try:
        return str(client.info("server").get("run_id", ""))
    except redis.ResponseError:
        return ""
