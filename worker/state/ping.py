"""A Redis reachability probe with the standard library only: the quick health check's.

``import redis`` costs 0.2-0.3 s (redis-py 8 always imports ``redis.asyncio``, asyncio and its
observability hooks), most of a health check that runs every 30-60 s in every container. A
probe needs four round trips, so this speaks RESP3 itself, as redis-py 8 does: ``HELLO 3``
(with ``AUTH user password`` when the URL has credentials: the same handshake, so a server
refuses exactly what it would refuse redis-py), ``SELECT db``, ``INFO server`` and
``CONFIG GET maxmemory-policy``. TLS (``rediss://``) uses the standard library's default
context, which is what redis-py does by default (certificate and host name verified).

It only proves health: any failure raises :class:`ProbeFailed` and the caller runs the full
check, redis-py and all, which prints the one line ``crmsync check`` always prints for that
failure. A URL with options this probe does not know raises :class:`Unsupported` before any
connection (the full check handles it).
"""

from __future__ import annotations

import socket
from typing import NamedTuple
from urllib.parse import parse_qs, unquote, urlsplit

#: The full check's timeouts (worker/commands/check.py ``check_redis``).
CONNECT_TIMEOUT_S = 3.0
TIMEOUT_S = 5.0
#: redis-py's timeouts for the sentinels (worker/settings/sentinel.py ``sentinel_kwargs``).
SENTINEL_TIMEOUT_S = 5.0


class Unsupported(Exception):
    """The URL has a form or an option the probe does not handle: use the full check."""


class ProbeFailed(Exception):
    """Redis did not answer as a healthy primary would (any reason): use the full check."""


class Endpoint(NamedTuple):
    """One server to talk to: TCP ``host:port`` or a unix socket ``path``. (NamedTuples, not
    dataclasses, and ``ssl`` imported only for TLS: each import is start-up time.)"""

    host: str = ""
    port: int = 6379
    path: str = ""
    tls: bool = False
    username: str | None = None
    password: str | None = None
    db: int = 0


class Probe(NamedTuple):
    """What the full check shows on its redis line."""

    version: str
    maxmemory_policy: str
    primary: str | None  # host:port the sentinels name, for a redis-sentinel:// URL


def probe(url: str) -> Probe:
    """Reach the server ``url`` names (via its sentinels for ``redis-sentinel://``) and read
    its version and eviction policy. Raises :class:`Unsupported` or :class:`ProbeFailed`."""
    primary = None
    if url.startswith("redis-sentinel://"):
        sentinels, service, endpoint = _sentinel_endpoints(url)
        endpoint = _primary(sentinels, service, endpoint)
        primary = f"{endpoint.host}:{endpoint.port}"
    else:
        endpoint = parse_url(url)
    try:
        with _connect(endpoint, CONNECT_TIMEOUT_S, TIMEOUT_S) as conn:
            info = conn.call("INFO", "server")
            policy = conn.call("CONFIG", "GET", "maxmemory-policy")
    except (OSError, ProtocolError) as exc:
        raise ProbeFailed(str(exc)) from exc
    if not isinstance(info, str) or not isinstance(policy, dict | list):
        raise ProbeFailed("unexpected answer to INFO or CONFIG GET")
    fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
    if isinstance(policy, list):  # RESP2-style pairs
        policy = dict(zip(policy[::2], policy[1::2], strict=True))
    return Probe(
        version=fields.get("redis_version", "None"),
        maxmemory_policy=str(policy.get("maxmemory-policy", "?")),
        primary=primary,
    )


def parse_url(url: str) -> Endpoint:
    """``redis://``, ``rediss://`` or ``unix://`` as redis-py reads them (the forms crmsync's
    settings produce); any query option but ``db``/``password`` raises :class:`Unsupported`."""
    parts = urlsplit(url)
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    if set(query) - {"db", "password"} or parts.fragment:
        raise Unsupported(f"URL options {sorted(query)}")
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else query.get("password")
    try:
        if parts.scheme == "unix":
            return Endpoint(
                path=unquote(parts.path), username=username, password=password,
                db=int(query.get("db", "0")),
            )  # fmt: skip
        if parts.scheme in ("redis", "rediss") and parts.hostname:
            db = parts.path.strip("/") or query.get("db", "0")
            return Endpoint(
                host=parts.hostname, port=parts.port or 6379, tls=parts.scheme == "rediss",
                username=username, password=password, db=int(db),
            )  # fmt: skip
    except ValueError as exc:
        raise Unsupported(str(exc)) from exc
    raise Unsupported(f"scheme {parts.scheme!r}")


def _sentinel_endpoints(url: str) -> tuple[list[Endpoint], str, Endpoint]:
    """The sentinels, the service name, and the primary's credentials, from the URL
    worker/settings/sentinel.py writes."""
    parts = urlsplit(url)
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    if set(query) - {"service_name", "ssl", "sentinel_password"} or not query.get("service_name"):
        raise Unsupported(f"sentinel URL options {sorted(query)}")
    tls = query.get("ssl", "").lower() in ("1", "true", "yes")
    sentinels = []
    for item in parts.netloc.rpartition("@")[2].split(","):
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit():
            raise Unsupported(f"sentinel {item!r}")
        sentinels.append(
            Endpoint(host=host, port=int(port), tls=tls, password=query.get("sentinel_password"))
        )
    db = parts.path.strip("/")
    primary = Endpoint(
        tls=tls,
        password=unquote(parts.password) if parts.password else None,
        db=int(db) if db.isdigit() else 0,
    )
    return sentinels, query["service_name"], primary


def _primary(sentinels: list[Endpoint], service: str, primary: Endpoint) -> Endpoint:
    """The primary the first sentinel that knows a healthy one names (``SENTINEL MASTER``:
    redis-py's ``discover_master`` skips one that is not flagged master or is s_down/o_down)."""
    for sentinel in sentinels:
        try:
            with _connect(sentinel, SENTINEL_TIMEOUT_S, SENTINEL_TIMEOUT_S) as conn:
                state = conn.call("SENTINEL", "MASTER", service)
        except TimeoutError as exc:
            # The full check will wait for the same silent sentinels: waiting here too could
            # push the whole check past a probe's timeout before it prints why.
            raise ProbeFailed(f"sentinel {sentinel.host}:{sentinel.port} timed out") from exc
        except (OSError, ProtocolError):
            continue
        if isinstance(state, list):
            state = dict(zip(state[::2], state[1::2], strict=True))
        if not isinstance(state, dict):
            continue
        flags = set(str(state.get("flags", "")).split(","))
        if "master" in flags and not flags & {"s_down", "o_down"}:
            return Endpoint(
                host=str(state["ip"]), port=int(state["port"]), tls=primary.tls,
                password=primary.password, db=primary.db,
            )  # fmt: skip
    raise ProbeFailed(f"no sentinel named a primary for {service!r}")


class ProtocolError(Exception):
    """An error reply, or an answer that is not RESP."""


class _Connection:
    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._file = sock.makefile("rb")

    def __enter__(self) -> _Connection:
        return self

    def __exit__(self, *_: object) -> None:
        self._file.close()
        self._sock.close()

    def call(self, *words: str) -> object:
        encoded = [word.encode() for word in words]
        request = b"*%d\r\n" % len(encoded) + b"".join(
            b"$%d\r\n%s\r\n" % (len(word), word) for word in encoded
        )
        self._sock.sendall(request)
        return self._read()

    def _read(self) -> object:
        line = self._file.readline()
        if not line.endswith(b"\r\n"):
            raise ProtocolError("connection closed")
        kind, rest = line[:1], line[1:-2].decode("utf-8", "replace")
        if kind in (b"+", b"("):
            return rest
        if kind in (b"-", b"!"):
            raise ProtocolError(rest if kind == b"-" else self._bulk(int(rest)))
        if kind == b":":
            return int(rest)
        if kind in (b"$", b"="):
            text = self._bulk(int(rest))
            return text[4:] if kind == b"=" and text is not None else text  # "txt:" prefix
        if kind in (b"*", b"~", b">"):
            return [self._read() for _ in range(int(rest))] if rest != "-1" else None
        if kind == b"%":
            return {str(self._read()): self._read() for _ in range(int(rest))}
        if kind == b"_":
            return None
        if kind == b"#":
            return rest == "t"
        if kind == b",":
            return float(rest)
        raise ProtocolError(f"unexpected RESP type {kind!r}")

    def _bulk(self, size: int) -> str | None:
        if size < 0:
            return None
        data = self._file.read(size + 2)
        if len(data) != size + 2:
            raise ProtocolError("connection closed")
        return data[:-2].decode("utf-8", "replace")


def _connect(endpoint: Endpoint, connect_timeout: float, timeout: float) -> _Connection:
    """A connection after redis-py 8's handshake: ``HELLO 3`` (``AUTH user password`` when
    there are credentials, user ``default`` for a password alone), then ``SELECT``."""
    if endpoint.path:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(connect_timeout)
        try:
            sock.connect(endpoint.path)
        except OSError:
            sock.close()
            raise
    else:
        sock = socket.create_connection((endpoint.host, endpoint.port), connect_timeout)
    sock.settimeout(timeout)
    if endpoint.tls:
        import ssl

        try:
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=endpoint.host)
        except OSError:
            sock.close()
            raise
    conn = _Connection(sock)
    try:
        if endpoint.username and not endpoint.password:
            raise Unsupported("a Redis user without a password")
        hello = ["HELLO", "3"]
        if endpoint.password:
            hello += ["AUTH", endpoint.username or "default", endpoint.password]
        conn.call(*hello)
        if endpoint.db:
            conn.call("SELECT", str(endpoint.db))
    except BaseException:
        conn.__exit__()
        raise
    return conn
