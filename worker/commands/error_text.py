"""Third-party error text made fit for one line of a failing command: flat, scrubbed, short.

A library's message can be 300 characters of repr; the operator needs "Connection refused",
never a secret (worker.logs.scrub), and which URL or call it was about.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from worker.logs import scrub

ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\")\]]+)")


def flat(text: str) -> str:
    """Third-party text on one line, secrets scrubbed, at most 300 characters."""
    return " ".join(scrub(text).split())[:300]


def short(exc: BaseException) -> str:
    """The useful end of a library's message: "Connection refused", not 300 characters."""
    text = flat(str(exc))
    found = ERRNO.search(text)
    if found:
        return found.group(1).strip().rstrip(".")
    if "timed out" in text.lower():
        return "timed out"
    return (text or type(exc).__name__)[:200].rstrip(".")


def origin(url: str) -> str:
    """scheme://host[:port] of ``url``: where a service is, without its path or password."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")


def url_path(url: str) -> str:
    """The path of ``url``: which call a service answered, without host or query."""
    return urlsplit(url).path or url
