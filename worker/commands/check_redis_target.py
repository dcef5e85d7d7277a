"""The Redis URL the settings would build, from the variables alone (no pydantic).

The quick health check has to reach the same Redis, with the same credentials, as the settings
model would: REDIS_URL, or REDIS_SENTINELS and REDIS_SENTINEL_MASTER, with REDIS_PASSWORD
(or its ``_FILE``) put into the URL (worker/settings/__init__.py, worker/settings/secrets.py,
worker/settings/sentinel.py say why). This repeats those few rules on the raw variables. It
is never trusted blindly: the full check stamps a digest of the URL the model built, and the
quick check uses this one only when its digest is the same (a difference is a miss).

A ``.env`` file that names any Redis variable or the data directory raises
:class:`~worker.state.ping.Unsupported` (reading it the way pydantic-settings does would take
python-dotenv): such a setup gets the full check. Containers configure through the
environment and have no ``.env``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

from worker.state.ping import Unsupported

#: pydantic's strings for a bool (REDIS_SENTINEL_TLS).
_TRUE = frozenset({"1", "on", "t", "true", "y", "yes"})


def configured_redis_url(environ: Mapping[str, str], cwd: str) -> str | None:
    """``settings.redis_url`` as the model would build it; None for the embedded Redis."""
    env = _variables(environ, Path(cwd))
    url = env.get("redis_url") or None
    sentinels = env.get("redis_sentinels")
    if sentinels:
        hosts = [item.strip() for item in sentinels.split(",") if item.strip()]
        query = {"service_name": env.get("redis_sentinel_master", "")}
        if env.get("redis_sentinel_tls", "").lower() in _TRUE:
            query["ssl"] = "true"
        sentinel_password = _secret(env, "redis_sentinel_password", Path(cwd))
        if sentinel_password:
            query["sentinel_password"] = sentinel_password
        canonical = ",".join(f"{h.rpartition(':')[0]}:{int(h.rpartition(':')[2])}" for h in hosts)
        url = f"redis-sentinel://{canonical}/0?{urlencode(query)}"
    password = _secret(env, "redis_password", Path(cwd))
    if password is not None and url:
        url = _with_password(url, password)
    return url


def embedded_redis_url(environ: Mapping[str, str], cwd: str) -> str | None:
    """The URL recorded by this data directory's embedded Redis (worker/state/server.py), or
    None when none is recorded (the full check then says so)."""
    env = _variables(environ, Path(cwd))
    data_dir = env.get("crmsync_data_dir") or env.get("data_dir")
    if data_dir is None:
        base = environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
        data_dir = str(Path(base) / "crmsync")
    try:
        state = json.loads((Path(cwd) / data_dir / "redis.json").read_text())
        return f"redis://127.0.0.1:{int(state['port'])}/0"
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _variables(environ: Mapping[str, str], cwd: Path) -> dict[str, str]:
    """The environment as pydantic-settings reads it here: names in lower case, an empty
    value the same as an unset one (``env_ignore_empty``)."""
    dotenv = cwd / ".env"
    try:
        text = dotenv.read_text(encoding="utf-8").lower()
    except FileNotFoundError:
        text = ""
    except (OSError, UnicodeDecodeError) as exc:
        raise Unsupported(f".env: {exc}") from exc
    if "redis" in text or "data_dir" in text:
        raise Unsupported(".env sets Redis variables")
    return {name.lower(): value for name, value in environ.items() if value}


def _secret(env: Mapping[str, str], name: str, cwd: Path) -> str | None:
    """The value of ``name`` or of ``name_FILE`` (read as worker/settings/secrets.py reads
    it: without a trailing newline)."""
    path = env.get(f"{name}_file")
    if path is None:
        return env.get(name)
    try:
        return (cwd / path).read_text(encoding="utf-8").rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise Unsupported(f"{name}_file: {exc}") from exc


def _with_password(url: str, password: str) -> str:
    """worker/settings/secrets.py ``url_with_password``."""
    parts = urlsplit(url)
    secret = quote(password, safe="")
    if parts.scheme == "unix":
        query = f"{parts.query}&password={secret}" if parts.query else f"password={secret}"
        return urlunsplit(parts._replace(query=query))
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:{secret}@{host}"))
