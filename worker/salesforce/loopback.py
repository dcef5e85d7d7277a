"""A base-URL transport for simple-salesforce: every request goes to one loopback address.

simple-salesforce always builds ``https://{instance}/...`` URLs (login hosts, the instance URL,
``nextRecordsUrl``) and offers no base-URL override, so the seam is the ``requests`` transport:
an adapter, mounted for both schemes, that keeps each request's path and query and sends it to
one plain-HTTP address instead. Nothing in the client is patched, so a client on this session
runs the exact code a real deployment runs.

This is the worker's side of ``CRMSYNC_SALESFORCE_EMULATOR_URL`` (as httpx ships its
``MockTransport``): the emulator itself lives in the sandbox, the worker only knows how to
reach a base URL. The address must be loopback, so real credentials can never leave the
machine through it.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter

from worker.salesforce.client import TimeoutSession

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


class LoopbackAdapter(HTTPAdapter):
    """Rewrites the scheme and host of each request to ``base_url``'s, keeping path and query."""

    def __init__(self, base_url: str) -> None:
        super().__init__(pool_connections=4, pool_maxsize=16, max_retries=0)
        target = urlsplit(base_url)
        if target.hostname not in LOOPBACK_HOSTS:
            raise ValueError("the emulator transport only targets a local emulator")
        self._scheme = target.scheme
        self._netloc = target.netloc

    def send(  # noqa: PLR0917 -- HTTPAdapter.send's own signature
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float, float] | tuple[float, None] | None = None,
        verify: bool | str = True,
        cert: bytes | str | tuple[bytes | str, bytes | str] | None = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        original = urlsplit(request.url or "")
        request.url = urlunsplit(
            (self._scheme, self._netloc, original.path, original.query, original.fragment)
        )
        request.headers["Host"] = self._netloc
        return super().send(
            request, stream=stream, timeout=timeout, verify=False, cert=None, proxies=proxies
        )


def loopback_session(base_url: str, timeout_s: float = 30.0) -> requests.Session:
    """A session (with timeouts) whose ``https://`` and ``http://`` traffic goes to
    ``base_url``."""
    session = TimeoutSession(timeout_s)
    adapter = LoopbackAdapter(base_url)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.trust_env = False  # no proxy from the environment between us and 127.0.0.1
    return session
