"""Redis behind Sentinel: one URL that names the sentinels and the primary's service name.

REDIS_SENTINELS and REDIS_SENTINEL_MASTER become one ``redis-sentinel://``
URL, so the value every process hands on — the runtime's URL, REDIS_URL in a child's
environment — carries it whole:

    redis-sentinel://[:PASSWORD@]HOST:PORT,HOST:PORT/DB?service_name=NAME[&ssl=true]
                     [&sentinel_password=...]

``PASSWORD`` is the primary's (REDIS_PASSWORD), ``sentinel_password`` the sentinels' own. Each
client asks the sentinels which server is the primary when it connects, and again after a
lost connection or a ``READONLY`` answer (redis-py's ``SentinelManagedConnection``), so every
client follows a failover without a restart. Celery and redbeat take the same facts in their
own forms (:func:`kombu_url`, :func:`redbeat_options`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

SCHEME = "redis-sentinel"


@dataclass(frozen=True)
class SentinelTarget:
    sentinels: tuple[tuple[str, int], ...]
    service_name: str
    db: int = 0
    password: str | None = None
    sentinel_password: str | None = None
    tls: bool = False

    def url(self) -> str:
        hosts = ",".join(f"{host}:{port}" for host, port in self.sentinels)
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        query: dict[str, str] = {"service_name": self.service_name}
        if self.tls:
            query["ssl"] = "true"
        if self.sentinel_password:
            query["sentinel_password"] = self.sentinel_password
        return f"{SCHEME}://{auth}{hosts}/{self.db}?{urlencode(query)}"

    def sentinel_kwargs(self) -> dict[str, Any]:
        """Options for the connections to the sentinels themselves."""
        options: dict[str, Any] = {"socket_timeout": 5.0, "socket_connect_timeout": 5.0}
        if self.sentinel_password:
            options["password"] = self.sentinel_password
        if self.tls:
            options["ssl"] = True
        return options


def is_sentinel_url(url: str) -> bool:
    return url.startswith(f"{SCHEME}://")


def parse_hosts(text: str) -> tuple[tuple[str, int], ...]:
    """``host:port,host:port`` (REDIS_SENTINELS); a port is required, as sentinels rarely
    listen on the data port."""
    found = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        host, sep, port = item.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"{item!r} is not host:port")
        found.append((host, int(port)))
    if not found:
        raise ValueError("names no sentinel")
    return tuple(found)


def parse_sentinel_url(url: str) -> SentinelTarget:
    parts = urlsplit(url)
    if parts.scheme != SCHEME:
        raise ValueError(f"not a {SCHEME}:// URL")
    hosts = parts.netloc.rpartition("@")[2]
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    service = query.get("service_name")
    if not service:
        raise ValueError("a redis-sentinel:// URL needs ?service_name=")
    db = parts.path.strip("/")
    return SentinelTarget(
        sentinels=parse_hosts(hosts),
        service_name=service,
        db=int(db) if db else 0,
        password=unquote(parts.password) if parts.password else None,
        sentinel_password=query.get("sentinel_password"),
        tls=query.get("ssl", "").lower() in ("1", "true", "yes"),
    )


def kombu_url(target: SentinelTarget) -> str:
    """kombu's form: ``sentinel://`` per sentinel, joined by ``;`` (the service name goes in
    the transport option ``master_name``)."""
    auth = f":{quote(target.password, safe='')}@" if target.password else ""
    return ";".join(
        f"sentinel://{auth}{host}:{port}/{target.db}" for host, port in target.sentinels
    )


def kombu_options(target: SentinelTarget) -> dict[str, Any]:
    return {"master_name": target.service_name, "sentinel_kwargs": target.sentinel_kwargs()}


def redbeat_options(target: SentinelTarget, socket_timeout: float) -> dict[str, Any]:
    """``redbeat_redis_options`` for ``redbeat_redis_url = "redis-sentinel://"``."""
    return {
        "sentinels": list(target.sentinels),
        "service_name": target.service_name,
        "password": target.password,
        "db": target.db,
        "socket_timeout": socket_timeout,
        "sentinel_kwargs": target.sentinel_kwargs(),
    }
