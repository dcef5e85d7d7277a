"""Where secrets come from besides their variable: a ``X_FILE`` twin, and REDIS_PASSWORD.

Compose and Kubernetes hand secrets over as files, so every secret X can be given as
``X_FILE`` instead; the settings model reads the file once, while the settings are read. The
Redis password is kept out of REDIS_URL for the same reason and put into it there, so every
Redis client reads one value.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import SecretStr

#: Secret -> the field naming a file that holds it (``X_FILE``). The private key's file is
#: read by simple-salesforce itself (SALESFORCE_PRIVATE_KEY_FILE), so it is not listed here.
SECRET_FILES: dict[str, str] = {
    "metronome_bearer_token": "metronome_bearer_token_file",
    "salesforce_password": "salesforce_password_file",
    "salesforce_security_token": "salesforce_security_token_file",
    "salesforce_consumer_secret": "salesforce_consumer_secret_file",
    "salesforce_session_id": "salesforce_session_id_file",
    "flower_password": "flower_password_file",
    "redis_password": "redis_password_file",
}


def read_secret_file(path: Path, variable: str) -> SecretStr:
    """The secret in ``path`` (named by ``variable`` in errors), without a trailing newline
    (``echo``, editors): no token or password ends with one. Raises ValueError."""
    try:
        value = path.read_text(encoding="utf-8").rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise ValueError(f"{variable}: cannot read {path}: {reason}") from None
    if not value:
        raise ValueError(f"{variable}: {path} is empty")
    return SecretStr(value)


def url_with_password(url: str, password: SecretStr) -> str:
    """``url`` with ``password`` as its credential (refused if the URL already has one)."""
    parts = urlsplit(url)
    if parts.password:
        raise ValueError("REDIS_URL already carries a password and REDIS_PASSWORD is set too")
    secret = quote(password.get_secret_value(), safe="")
    if parts.scheme == "unix":
        query = f"{parts.query}&password={secret}" if parts.query else f"password={secret}"
        return urlunsplit(parts._replace(query=query))
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:{secret}@{host}"))
