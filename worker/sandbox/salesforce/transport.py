"""Run the real simple-salesforce against the emulator: ``https://<any host>`` -> emulator.

simple-salesforce always builds ``https://{instance}/...`` URLs (login hosts, instance URL,
``nextRecordsUrl``) and offers no base-URL override, so the clean seam is the ``requests``
transport: an adapter mounted for ``https://`` that sends every request to the emulator's
plain-HTTP address instead. Nothing in the client is patched. For tests, ``crmsync demo`` and
``crmsync sandbox`` clients only; never used when real credentials are configured.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter

from worker.salesforce.client import TimeoutSession


class EmulatorAdapter(HTTPAdapter):
    """Rewrites the scheme and host of each request to the emulator's, keeping path and query."""

    def __init__(self, emulator_url: str) -> None:
        super().__init__(pool_connections=4, pool_maxsize=16, max_retries=0)
        target = urlsplit(emulator_url)
        if target.hostname not in ("127.0.0.1", "localhost", "::1"):
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


def emulator_session(emulator_url: str, timeout_s: float = 30.0) -> requests.Session:
    """A session whose ``https://`` traffic goes to ``emulator_url``, with timeouts."""
    session = TimeoutSession(timeout_s)
    adapter = EmulatorAdapter(emulator_url)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.trust_env = False  # no proxy from the environment between us and 127.0.0.1
    return session
