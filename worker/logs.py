"""Log lines an operator can search: one JSON object per line, or a readable line on a TTY.

Every line carries the task id, Salesforce account id and Metronome customer id when they are
known, so "what happened to account 001..." is one query in the log store. Tasks pass the ids
with ``extra={...}``; the task id is also taken from Celery's current task, so library log
lines emitted inside a task (kombu, httpx, simple-salesforce) are attributed too.

Nothing secret is written: settings hold secrets as ``SecretStr`` (they render as stars), and
:func:`scrub` removes bearer tokens, passwords and session ids that a third-party library might
put into a message or a traceback.

The handler goes on the root logger of crmsync's own processes (``crmsync worker``, ``beat``,
``run``, ``flower``) through Celery's ``setup_logging`` signal: while a receiver is connected
Celery configures no logging of its own, so its lines reach our handler in our format instead
of a second, differently formatted stream.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stamina.instrumentation import RetryDetails

#: Record attributes copied into each line when present (the ``extra=`` keys tasks use).
CONTEXT_FIELDS = ("task_id", "task_name", "account_id", "customer_id")

_SECRET_PATTERNS = (
    # Authorization headers and the SDKs' reprs of them.
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{6,}"),
    # key=value / "key": "value" pairs whose key names a secret.
    re.compile(
        r"(?i)((?:password|passwd|secret|token|session_?id|sessionid|api_?key|private_?key"
        r"|client_secret|authorization)[\"']?\s*[:=]\s*[\"']?)[^\s\"',&;}<]+"
    ),
    # A SOAP login response/request: <sessionId>..</sessionId>, <password>..</password>.
    re.compile(r"(?i)(<(?:sessionId|password)>)[^<]+"),
)
REDACTED = "***"

#: Marks the handler this module installed, so a second configure replaces only its own.
_HANDLER_FLAG = "_crmsync_handler"


def scrub(text: str) -> str:
    """``text`` with every secret-looking value replaced by ``***``."""
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + REDACTED, text)
    return text


def redacted_url(url: str) -> str:
    """A URL without its password (``redis://:***@host:6379/0``), to show where we connect."""
    if "@" in url:
        scheme, _, rest = url.partition("://")
        url = f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return scrub(url)  # unix:///run/redis.sock?password=... carries it in the query


_inherited = threading.local()


def inherit_task(ids: tuple[str | None, str | None]) -> None:
    """Attribute this (helper) thread's lines to the task ``ids`` = (id, name): Celery's
    current task is per thread, and a batch syncs its accounts on threads of its own."""
    _inherited.ids = ids


def _current_task() -> tuple[str | None, str | None]:
    """The id and name of the Celery task running in this thread (or the one it works for)."""
    try:
        from celery import current_task
    except ImportError:  # pragma: no cover - celery is a dependency
        return None, None
    task = current_task._get_current_object() if current_task else None
    if task is None:
        inherited: tuple[str | None, str | None] = getattr(_inherited, "ids", (None, None))
        return inherited
    request = getattr(task, "request", None)
    task_id = getattr(request, "id", None)
    return (str(task_id) if task_id else None), getattr(task, "name", None)


def running_task() -> tuple[str | None, str | None]:
    """(id, name) of the task this thread runs or works for; for :func:`inherit_task`."""
    return _current_task()


def context_of(record: logging.LogRecord) -> dict[str, str]:
    """The ids attached to ``record`` (``extra=``), completed from the running task."""
    context: dict[str, str] = {}
    for name in CONTEXT_FIELDS:
        value = getattr(record, name, None)
        if value not in (None, ""):
            context[name] = str(value)
    if "task_id" not in context or "task_name" not in context:
        task_id, task_name = _current_task()
        if task_id and "task_id" not in context:
            context["task_id"] = task_id
        if task_name and "task_name" not in context:
            context["task_name"] = task_name
    return context


class JsonFormatter(logging.Formatter):
    """One JSON object per line: what log shippers (Loki, CloudWatch, ELK) parse unaided."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": scrub(record.getMessage()),
            "process": record.process,
        }
        line.update(context_of(record))
        if record.exc_info:
            line["exception"] = scrub(self.formatException(record.exc_info))
        elif record.exc_text:
            line["exception"] = scrub(record.exc_text)
        return json.dumps(line, ensure_ascii=False, default=str)


class ConsoleFormatter(logging.Formatter):
    """A readable line for a developer's terminal, with the same ids as the JSON form."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = scrub(super().format(record))
        context = context_of(record)
        if context:
            text += "  [" + " ".join(f"{k}={v}" for k, v in context.items()) + "]"
        return text


def choose_format(setting: str, stream: IO[str]) -> str:
    """``auto`` means JSON unless a person is watching (a TTY): containers get JSON."""
    if setting in ("json", "console"):
        return setting
    isatty = getattr(stream, "isatty", None)
    return "console" if isatty is not None and isatty() else "json"


def configure_logging(
    log_format: str = "auto", level: int | str = logging.INFO, stream: IO[str] | None = None
) -> logging.Handler:
    """Install crmsync's handler on the root logger (replacing only a previous one of ours).

    Other handlers (pytest's capture, an embedding application's) are left in place.
    """
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    kind = choose_format(log_format, stream)
    handler.setFormatter(JsonFormatter() if kind == "json" else ConsoleFormatter())
    setattr(handler, _HANDLER_FLAG, True)
    root = logging.getLogger()
    for existing in list(root.handlers):
        if getattr(existing, _HANDLER_FLAG, False):
            root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    # Per-request chatter of the HTTP clients would drown the sync lines at INFO.
    for noisy in ("httpx", "httpcore", "urllib3", "simple_salesforce"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    if "stamina" in sys.modules:  # else the Metronome transport installs it when imported:
        log_retries_here()  # a command that never retries (--help, the health check) skips it
    return handler


def log_retries_here() -> None:
    """Make stamina report each scheduled retry through this module's handler.

    stamina's default logging hook writes the bare message ``stamina.retry_scheduled`` with the
    details in ``extra`` fields no formatter shows, at WARNING: on a command's stderr that was
    a line saying nothing. Ours says what is retried, why and when, at INFO (a retry is normal
    operation; the final failure is what an operator must read). stamina's Prometheus counter
    is kept.
    """
    from stamina import instrumentation

    instrumentation.set_on_retry_hooks([instrumentation.PrometheusOnRetryHook, _log_retry])


def _log_retry(details: RetryDetails) -> None:
    """stamina's ``RetryHook``: one readable line per scheduled retry."""
    cause = details.caused_by
    logging.getLogger("crmsync.retry").info(
        "retry %d of %s in %.2fs after %s: %s",
        details.retry_num,
        details.name,
        details.wait_for,
        type(cause).__name__,
        scrub(str(cause))[:300],
    )
