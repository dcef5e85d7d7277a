"""The stamped quick health check against a real redis-server with a password: the stdlib probe
reaches it as redis-py does, a stamp hit answers without pydantic, the mapping models or
redis-py, and whatever is wrong after stamping (Redis down, the password changed, the mapping
broken) still fails, with exactly the line the full check prints."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from tests.support.processes import REPO_ROOT, crmsync_env
from tests.support.sentinels import SERVICE, sentinels
from tests.support.waiting import free_port, wait_until
from worker.state.connections import primary_address
from worker.state.ping import ProbeFailed, Unsupported, probe
from worker.state.server import RedisServer, redis_server_binary

pytestmark = pytest.mark.integration

PASSWORD = "right-Pa55/word"
HEAVY = ("pydantic", "pydantic_settings", "mappings", "redis", "worker.settings", "celery")


@dataclass
class PasswordRedis:
    port: int
    socket: Path
    directory: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                redis_server_binary(),
                *("--port", str(self.port), "--bind", "127.0.0.1"),
                *("--unixsocket", str(self.socket), "--requirepass", PASSWORD),
                *("--save", "", "--appendonly", "no", "--dir", str(self.directory)),
            ],
            stdout=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_until(lambda: self.client().ping(), timeout_s=20)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, password=PASSWORD, socket_timeout=2)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PasswordRedis]:
    directory = tmp_path_factory.mktemp("redis-password")
    found = PasswordRedis(free_port(), directory / "redis.sock", directory)
    found.start()
    try:
        yield found
    finally:
        found.stop()


# -- the probe ---------------------------------------------------------------------------------


def test_the_probe_reads_version_and_policy_with_the_password(server: PasswordRedis) -> None:
    version = server.client().info("server")["redis_version"]
    for url in (
        f"redis://:{PASSWORD.replace('/', '%2F')}@127.0.0.1:{server.port}/0",
        f"redis://default:{PASSWORD.replace('/', '%2F')}@127.0.0.1:{server.port}/3",
        f"unix://{server.socket}?db=2&password={PASSWORD.replace('/', '%2F')}",
    ):
        found = probe(url)
        assert (found.version, found.maxmemory_policy, found.primary) == (
            version,
            "noeviction",
            None,
        ), url


def test_the_probe_fails_on_a_wrong_or_missing_password_and_a_closed_port(
    server: PasswordRedis,
) -> None:
    for url in (
        f"redis://:wrong@127.0.0.1:{server.port}/0",
        f"redis://127.0.0.1:{server.port}/0",
        f"redis://127.0.0.1:{free_port()}/0",
        f"unix://{server.socket}.missing",
    ):
        with pytest.raises(ProbeFailed):
            probe(url)
    with pytest.raises(Unsupported):
        probe(f"redis://127.0.0.1:{server.port}/0?ssl_cert_reqs=none")


def test_the_probe_finds_the_primary_the_sentinels_name(tmp_path: Path) -> None:
    primary = RedisServer(data_dir=tmp_path / "primary").start()
    try:
        with sentinels(primary.port, tmp_path, count=1) as ports:
            url = f"redis-sentinel://127.0.0.1:{ports[0]}/0?service_name={SERVICE}"
            found = probe(url)
            assert found.primary == primary_address(url) == f"127.0.0.1:{primary.port}"
            assert found.maxmemory_policy == "noeviction"
    finally:
        primary.stop()


# -- crmsync check --quick --skip-worker -------------------------------------------------------


@dataclass
class Setup:
    cwd: Path
    env: dict[str, str]
    mapping: Path

    def child_env(self) -> dict[str, str]:
        """The same environment at each run, as a container's health check has (pytest's
        PYTEST_CURRENT_TEST changes from setup to call: a different input, a miss)."""
        env = crmsync_env(self.env)
        env.pop("PYTEST_CURRENT_TEST", None)
        return env

    def check(self, *extra: str, cache: bool = True) -> subprocess.CompletedProcess[str]:
        env = self.child_env()
        if not cache:  # a cache directory that cannot be made: the full check, every time
            env["XDG_CACHE_HOME"] = str(self.mapping)
        return subprocess.run(
            [sys.executable, "-m", "worker.cli", "check", "--quick", "--skip-worker", *extra],
            cwd=self.cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )


@pytest.fixture(scope="module")
def stamped(server: PasswordRedis, tmp_path_factory: pytest.TempPathFactory) -> Setup:
    """A configuration the full check has stamped (its first run)."""
    cwd = tmp_path_factory.mktemp("quick-check")
    (cwd / "redis_password").write_text(PASSWORD + "\n")
    mapping = cwd / "mapping.yaml"
    mapping.write_text((REPO_ROOT / "mappings" / "default.yaml").read_text())
    setup = Setup(
        cwd,
        {
            "REDIS_URL": f"redis://127.0.0.1:{server.port}/0",
            "REDIS_PASSWORD_FILE": str(cwd / "redis_password"),
            "CRMSYNC_MAPPING": str(mapping),
            "CRMSYNC_DATA_DIR": str(cwd / "data"),
            "XDG_CACHE_HOME": str(cwd / "cache"),
        },
        mapping,
    )
    first = setup.check()
    assert first.returncode == 0, first.stdout + first.stderr
    assert (cwd / "cache" / "crmsync" / "check-quick.json").exists()
    return setup


def test_a_stamp_hit_prints_the_full_check_s_lines_without_its_imports(stamped: Setup) -> None:
    code = (
        "import json, sys\nfrom worker import cli\n"
        "code = cli.main(['check', '--quick', '--skip-worker'])\n"
        f"print(json.dumps([code, [m for m in {HEAVY!r} if m in sys.modules]]), file=sys.stderr)"
    )
    hit = subprocess.run(
        [sys.executable, "-c", code],
        cwd=stamped.cwd,
        env=stamped.child_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(hit.stderr.splitlines()[-1]) == [0, []]
    full = stamped.check(cache=False).stdout
    assert hit.stdout == full
    assert PASSWORD not in hit.stdout + hit.stderr
    as_json = stamped.check("--json")
    assert as_json.returncode == 0
    checks = json.loads(as_json.stdout)["checks"]
    assert [f"ok   {c['name']}: {c['detail']}" for c in checks] == full.splitlines()


def test_a_changed_redis_password_fails_with_the_full_check_s_line(
    server: PasswordRedis, stamped: Setup
) -> None:
    server.client().config_set("requirepass", "rotated-password")
    try:
        quick, full = stamped.check(), stamped.check(cache=False)
    finally:
        redis.Redis(port=server.port, password="rotated-password").config_set(
            "requirepass", PASSWORD
        )
    assert quick.returncode == full.returncode == 1
    assert quick.stdout == full.stdout
    assert "FAIL redis:" in quick.stdout and "refused the credentials" in quick.stdout


def test_redis_down_after_stamping_fails_with_the_full_check_s_line(
    server: PasswordRedis, stamped: Setup
) -> None:
    server.stop()
    try:
        quick, full = stamped.check(), stamped.check(cache=False)
    finally:
        server.start()
    assert quick.returncode == full.returncode == 1
    assert quick.stdout == full.stdout
    assert "FAIL redis: cannot reach Redis" in quick.stdout
    assert stamped.check().returncode == 0  # and healthy again once it is back


def test_a_mapping_broken_after_stamping_fails_the_mapping_line(stamped: Setup) -> None:
    good = stamped.mapping.read_text()
    stamped.mapping.write_text("version: 1\nname: {field: Account.Name}\nnmae_typo: 1\n")
    try:
        quick = stamped.check()
    finally:
        stamped.mapping.write_text(good)
    assert quick.returncode == 1
    assert f"FAIL mapping: {stamped.mapping}:3: key nmae_typo" in quick.stdout
