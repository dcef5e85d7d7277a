"""``crmsync`` commands started from a prewarmed interpreter (tests/support/zygote.py).

:func:`tests.support.processes.run_cli` starts ``python -m worker.cli`` from nothing; this
module's :func:`run_cli` gives the same ``CompletedProcess`` for about a third of the CPU, for
modules that start dozens of short commands (the failure matrix alone starts about 80). Each
command is still its own process with its own argv, environment and working directory,
running crmsync's real entry point; what it shares is the libraries' import (the zygote's
docstring says what that leaves out). :func:`start_service` does the same for the services a
test stack starts (``SandboxStack(launcher=start_service)``): workers, beats and listeners,
each answering as a ``Popen`` does. Tests of start-up itself (what a command imports, how fast
it starts, the newcomer's commands) and ``crmsync demo`` start from nothing.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.support.processes import REPO_ROOT, crmsync_env


class PrewarmedCli:
    """A zygote process and the commands it starts; a context manager that stops it."""

    def __init__(self) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="crmsync-zygote-"))
        self._socket = str(self._dir / "zygote.sock")
        self._numbers = itertools.count(1)  # one per command; next() is atomic across threads
        # Its stderr is a file, never the test run's own: a zygote outliving its test process
        # must not hold the pipe of whatever waits for the run's output to end.
        with (self._dir / "zygote.err").open("wb") as errors:
            self._zygote = subprocess.Popen(
                [sys.executable, "-m", "tests.support.zygote", self._socket],
                cwd=REPO_ROOT,
                env=crmsync_env({}),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=errors,
            )
        assert self._zygote.stdout is not None
        ready = self._zygote.stdout.readline()  # the zygote's own answer, not a sleep
        if ready.strip() != b"ready":
            said = (self._dir / "zygote.err").read_text(errors="replace")
            self.close()
            raise RuntimeError(f"the prewarmed interpreter did not start: {ready!r} {said}")

    def run(
        self, env: Mapping[str, str], *args: str, timeout_s: float = 180, cwd: Path = REPO_ROOT
    ) -> subprocess.CompletedProcess[str]:
        """``crmsync ARGS`` on ``env`` alone, in ``cwd``, as :func:`run_cli` runs it."""
        number = next(self._numbers)
        out = self._dir / f"{number}.out"
        err = self._dir / f"{number}.err"
        process = self._launch(args, crmsync_env(env), cwd, out, err, append=False)
        try:
            returncode = process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            raise
        return subprocess.CompletedProcess(
            process.args,
            returncode,
            out.read_text(errors="replace"),
            err.read_text(errors="replace"),
        )

    def start(
        self, argv: Sequence[str], env: Mapping[str, str], log_path: Path
    ) -> PrewarmedProcess:
        """``python -m worker.cli ARGV`` on ``env`` alone, in a session of its own, both
        streams appended to ``log_path``: a service, running until it is stopped."""
        return self._launch(argv, env, Path.cwd(), log_path, log_path, append=True)

    def _launch(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        cwd: Path,
        out: Path,
        err: Path,
        *,
        append: bool,
    ) -> PrewarmedProcess:
        """Ask the zygote for ``python -m worker.cli ARGV`` (protocol: tests/support/zygote.py)."""
        request = {
            "argv": list(argv),
            "env": dict(env),
            "cwd": str(cwd),
            "out": str(out),
            "err": str(err),
            "append": append,
        }
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            connection.connect(self._socket)
            connection.sendall(json.dumps(request).encode() + b"\n")
        except BaseException:
            connection.close()
            raise
        return PrewarmedProcess([sys.executable, "-m", "worker.cli", *argv], connection)

    def alive(self) -> bool:
        return self._zygote.poll() is None

    def close(self) -> None:
        self._zygote.kill()
        self._zygote.wait()
        if self._zygote.stdout is not None:
            self._zygote.stdout.close()
        for path in self._dir.iterdir():
            path.unlink()
        self._dir.rmdir()

    def __enter__(self) -> PrewarmedCli:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class PrewarmedProcess:
    """A service the zygote started, answering as ``subprocess.Popen`` does: the zygote
    reports its pid when it runs and its exit status when it ends, on the connection a thread
    here reads."""

    def __init__(self, args: list[str], connection: socket.socket) -> None:
        self.args = args
        self.returncode: int | None = None
        self._ended = threading.Event()
        self._stream = connection.makefile("rb")
        self._connection = connection
        self.pid: int = json.loads(self._stream.readline())["pid"]
        threading.Thread(target=self._await_exit, name=f"prewarmed-{self.pid}", daemon=True).start()

    def _await_exit(self) -> None:
        try:
            answer: dict[str, Any] = json.loads(self._stream.readline() or b"{}")
            # No answer: the zygote's helper is gone, so is its waitpid(); say "killed".
            self.returncode = answer.get("returncode", -signal.SIGKILL)
        finally:
            self._stream.close()
            self._connection.close()
            self._ended.set()

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if not self._ended.wait(timeout):
            raise subprocess.TimeoutExpired(self.args, timeout or 0)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:  # as Popen: never signal a pid that may be reused
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class _Shared:
    """One prewarmed interpreter per test process, started at its first command."""

    lock = threading.Lock()
    cli: PrewarmedCli | None = None


def _shared() -> PrewarmedCli:
    with _Shared.lock:
        if _Shared.cli is None or not _Shared.cli.alive():
            _Shared.cli = PrewarmedCli()
        return _Shared.cli


def run_cli(
    env: Mapping[str, str], *args: str, timeout_s: float = 180, cwd: Path = REPO_ROOT
) -> subprocess.CompletedProcess[str]:
    """``crmsync ARGS`` on ``env`` alone, in ``cwd``, from this test process's prewarmed
    interpreter."""
    return _shared().run(env, *args, timeout_s=timeout_s, cwd=cwd)


def start_service(argv: Sequence[str], env: Mapping[str, str], log_path: Path) -> PrewarmedProcess:
    """A stack's launcher (worker.sandbox.stack.Launcher) that starts from this test
    process's prewarmed interpreter."""
    return _shared().start(argv, env, log_path)


def stop_shared() -> None:
    """Stop the test process's prewarmed interpreter, if it started one."""
    with _Shared.lock:
        if _Shared.cli is not None:
            _Shared.cli.close()
            _Shared.cli = None
