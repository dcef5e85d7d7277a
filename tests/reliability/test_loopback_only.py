"""Every server crmsync starts listens on 127.0.0.1 only (checked in the kernel's socket
table, not in our own configuration): emulators, embedded Redis, the HTTP core."""

from __future__ import annotations

from pathlib import Path

from worker.sandbox.httpserver import HttpServer, Request, Response
from worker.sandbox.metronome import MetronomeEmulator
from worker.sandbox.salesforce import SalesforceEmulator, SandboxCredentials
from worker.state.server import RedisServer

LISTEN = "0A"


def listening_addresses(port: int) -> set[str]:
    """Local addresses (hex, as /proc/net/tcp{,6} spells them) listening on ``port``."""
    found: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            address, hex_port = fields[1].split(":")
            if fields[3] == LISTEN and int(hex_port, 16) == port:
                found.add(address)
    return found


async def ok(_request: Request) -> Response:
    return Response(200, b"{}")


def test_emulators_redis_and_the_http_core_listen_on_loopback_only(tmp_path: Path) -> None:
    redis_server = RedisServer(tmp_path / "redis").start()
    metronome = MetronomeEmulator().start()
    salesforce = SalesforceEmulator(SandboxCredentials()).start()
    core = HttpServer(ok).start()
    try:
        ports = {
            "redis": redis_server.port,
            "metronome": metronome.port,
            "salesforce": salesforce.port,
            "http core": core.port,
        }
        for name, port in ports.items():
            assert listening_addresses(port) == {"0100007F"}, name  # 127.0.0.1, nothing else
    finally:
        core.stop()
        salesforce.stop()
        metronome.stop()
        redis_server.stop()
