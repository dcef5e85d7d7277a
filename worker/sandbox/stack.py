"""The whole product on one machine: embedded Redis, both emulators, real worker processes.

Used by ``crmsync demo``, the integration tests, the chaos runner and the benchmarks, so all
of them exercise the same wiring a deployment uses: the worker is a separate ``crmsync worker``
process configured only through environment variables, talking real HTTP to the emulators
with the real clients (metronome-sdk, simple-salesforce).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Protocol

from worker.app import app, configure
from worker.context import WorkerContext, build_context, reset_context
from worker.sandbox.metronome import MetronomeEmulator, MetronomeFaults
from worker.sandbox.salesforce import SalesforceEmulator, SalesforceFaults, SandboxCredentials
from worker.settings import SETTINGS_PREFIXES, Settings, child_environment, load_settings
from worker.state.server import RedisServer

SANDBOX_METRONOME_TOKEN = "sandbox-metronome-token"  # noqa: S105 - the emulator's demo token


class ServiceProcess(Protocol):
    """What the stack needs of a started ``crmsync`` service: ``subprocess.Popen``'s own
    names, so a ``Popen`` is one."""

    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | None: ...

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...

    def send_signal(self, sig: int) -> None: ...

    def terminate(self) -> None: ...

    def kill(self) -> None: ...


class Launcher(Protocol):
    """Starts ``python -m worker.cli ARGV`` on ``env`` alone, in a session of its own, both
    output streams appended to ``log_path``."""

    def __call__(
        self, argv: Sequence[str], env: Mapping[str, str], log_path: Path
    ) -> ServiceProcess: ...


def spawn_cli(argv: Sequence[str], env: Mapping[str, str], log_path: Path) -> ServiceProcess:
    """The stack's launcher: a fresh interpreter per service, as a deployment starts one.

    A session of its own: kill_process() can then SIGKILL the prefork children with their
    parent, as a container runtime or the OOM killer takes a whole worker down.
    """
    with log_path.open("ab") as log:
        return subprocess.Popen(  # noqa: S603 - our own CLI
            [sys.executable, "-m", "worker.cli", *argv],
            env=dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@dataclass
class SandboxStack:
    data_dir: Path
    mapping_file: Path | None = None
    metronome_faults: MetronomeFaults | None = None
    salesforce_faults: SalesforceFaults | None = None
    salesforce_session_ttl_s: float | None = None
    #: How often the Pub/Sub emulator sends a keepalive on an idle stream (270 s in Salesforce).
    pubsub_keepalive_s: float = 270.0
    extra_env: dict[str, str] = field(default_factory=dict)
    #: The emulator's bearer token (the security tests set a recognisable one).
    metronome_token: str = SANDBOX_METRONOME_TOKEN
    redis: RedisServer | None = None
    metronome: MetronomeEmulator | None = None
    salesforce: SalesforceEmulator | None = None
    credentials: SandboxCredentials = field(default_factory=SandboxCredentials)
    #: How workers, beats and listeners start (the test suite hands in a prewarmed one).
    launcher: Launcher = spawn_cli
    _workers: list[ServiceProcess] = field(default_factory=list)
    _beats: list[ServiceProcess] = field(default_factory=list)
    _listeners: list[ServiceProcess] = field(default_factory=list)

    def start(self) -> SandboxStack:
        """Start Redis and both emulators; if one fails, what did start is stopped before the
        error goes on (a ``with`` block never reaches ``__exit__`` when ``__enter__`` raises,
        and a failed ``crmsync demo`` left its redis-server running)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.redis = RedisServer(self.data_dir / "redis").start()
            self.metronome = MetronomeEmulator(
                token=self.metronome_token, faults=self.metronome_faults
            ).start()
            self.salesforce = SalesforceEmulator(
                self.credentials,
                session_ttl_s=self.salesforce_session_ttl_s,
                faults=self.salesforce_faults,
                pubsub_port=0,
                pubsub_keepalive_s=self.pubsub_keepalive_s,
            ).start()
            self._point_app_here()
        except BaseException:
            self.stop()
            raise
        return self

    def activate(self) -> SandboxStack:
        """Point this process's Celery app and context at this running stack again: a caller
        holding a long-lived stack while others start and stop in the same process (a test
        session) calls it before using it. Already pointed at it, it changes nothing
        (re-pointing closes the pooled connections other threads may hold)."""
        if app.conf.broker_url != self.redis_url:
            self._point_app_here()
        return self

    def _point_app_here(self) -> None:
        """Always, at start: a new stack may get the port of one stopped before it, with
        other settings (the beat schedule, the visibility timeout) and a stale context."""
        configure(self.redis_url, self.settings())
        reset_context()

    def stop(self) -> None:
        self.stop_listeners()
        self.stop_beats()
        self.stop_workers()
        reset_context()
        for server in (self.salesforce, self.metronome, self.redis):
            if server is not None:
                server.stop()

    def __enter__(self) -> SandboxStack:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def redis_url(self) -> str:
        assert self.redis is not None  # noqa: S101 - start() first
        return self.redis.url

    def env(self) -> dict[str, str]:
        """The worker's whole configuration, as a deployment would give it: variables."""
        assert self.metronome is not None and self.salesforce is not None  # noqa: S101
        env = {
            "REDIS_URL": self.redis_url,
            "CRMSYNC_DATA_DIR": str(self.data_dir),
            "METRONOME_BEARER_TOKEN": self.metronome_token,
            "METRONOME_BASE_URL": self.metronome.url,
            "SALESFORCE_USERNAME": self.credentials.username,
            "SALESFORCE_PASSWORD": self.credentials.password,
            "SALESFORCE_SECURITY_TOKEN": self.credentials.security_token,
            "CRMSYNC_SALESFORCE_EMULATOR_URL": self.salesforce.url,
            "CRMSYNC_PUBSUB_EMULATOR_ADDRESS": self.salesforce.pubsub_address,
        }
        if self.mapping_file is not None:
            env["CRMSYNC_MAPPING"] = str(self.mapping_file)
        env.update(self.extra_env)
        return env

    def settings(self) -> Settings:
        with _environment(self.env()):
            return load_settings()

    def context(self) -> WorkerContext:
        """An in-process context on the same configuration (for polls run by the caller)."""
        return build_context(self.settings(), self.redis_url)

    def _spawn(
        self, argv: list[str], log_path: Path, env: Mapping[str, str] | None = None
    ) -> ServiceProcess:
        return self.launcher(argv, child_environment({**self.env(), **(env or {})}), log_path)

    def start_worker(
        self,
        log_path: Path,
        *,
        concurrency: int = 2,
        pool: str = "prefork",
        name: str = "w1",
        extra_args: tuple[str, ...] = (),
    ) -> ServiceProcess:
        process = self._spawn(
            [
                "worker",
                f"--concurrency={concurrency}",
                f"--pool={pool}",
                f"--hostname={name}@%h",
                "--loglevel=INFO",
                *extra_args,
            ],
            log_path,
        )
        self._workers.append(process)
        return process

    def start_beat(self, log_path: Path, *, extra_args: tuple[str, ...] = ()) -> ServiceProcess:
        """``crmsync beat`` as its own process (poll interval from CRMSYNC_POLL_INTERVAL_S)."""
        process = self._spawn(["beat", "--loglevel=INFO", *extra_args], log_path)
        self._beats.append(process)
        return process

    def start_listener(
        self, log_path: Path, *, env: Mapping[str, str] | None = None
    ) -> ServiceProcess:
        """``crmsync listen`` as its own process (``env``: extra variables for this one)."""
        process = self._spawn(["listen", "--loglevel=INFO"], log_path, env)
        self._listeners.append(process)
        return process

    @property
    def workers(self) -> list[ServiceProcess]:
        return list(self._workers)

    def kill_process(self, process: ServiceProcess) -> None:
        """SIGKILL the process and everything in its session (a crash: no warm shutdown, no
        ack, no restore of its unacked messages; they come back only after the visibility
        timeout)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        if process in self._workers:
            self._workers.remove(process)
        if process in self._beats:
            self._beats.remove(process)
        if process in self._listeners:
            self._listeners.remove(process)

    def restart_redis(self) -> None:
        """Stop Redis and start it again on the same port and data directory (AOF kept): the
        clients see their connections reset, as in a failover or a redeploy."""
        assert self.redis is not None  # noqa: S101 - start() first
        port, data_dir = self.redis.port, self.redis.data_dir
        self.redis.stop()
        self.redis = RedisServer(data_dir, port=port).start()

    def wait_for_worker(self, timeout_s: float = 60.0) -> dict[str, object]:
        """Block until a worker answers crmsync.ping: the round trip is the readiness."""
        from tasks.health import ping

        answer: dict[str, object] = ping.apply_async().get(timeout=timeout_s)
        return answer

    def stop_beats(self) -> None:
        stop_processes(self._beats, grace_s=30)
        self._beats.clear()

    def stop_listeners(self) -> None:
        stop_processes(self._listeners, grace_s=30)
        self._listeners.clear()

    def stop_workers(self) -> None:
        stop_processes(self._workers, grace_s=60)
        self._workers.clear()


def stop_processes(processes: Sequence[ServiceProcess], *, grace_s: float) -> None:
    """SIGTERM all (a worker finishes its running tasks: warm shutdown), then wait up to
    ``grace_s`` for each and SIGKILL what is still running."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@contextlib.contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    """Temporarily replace crmsync's variables in os.environ (settings read from there)."""
    saved = {k: v for k, v in os.environ.items() if k.startswith(SETTINGS_PREFIXES)}
    for key in saved:
        del os.environ[key]
    os.environ.update(values)
    try:
        yield
    finally:
        for key in values:
            os.environ.pop(key, None)
        os.environ.update(saved)
