"""``crmsync`` commands started from a prewarmed interpreter (tests/support/zygote.py).

:func:`tests.support.processes.run_cli` starts ``python -m worker.cli`` from nothing; this
module's :func:`run_cli` gives the same ``CompletedProcess`` for about a third of the CPU, for
modules that start dozens of short commands (the failure matrix alone starts about 80). Each
command is still its own process with its own argv, environment and working directory,
running crmsync's real entry point; what it shares is the libraries' import (the zygote's
docstring says what that leaves out). Tests of start-up itself (what a command imports, how
fast it starts) and long-running services use the plain processes.
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
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

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
        self, env: Mapping[str, str], *args: str, timeout_s: float = 180
    ) -> subprocess.CompletedProcess[str]:
        """``crmsync ARGS`` on ``env`` alone, as :func:`run_cli` runs it."""
        number = next(self._numbers)
        out = self._dir / f"{number}.out"
        err = self._dir / f"{number}.err"
        request = {
            "argv": list(args),
            "env": crmsync_env(env),
            "cwd": str(REPO_ROOT),
            "out": str(out),
            "err": str(err),
        }
        argv = [sys.executable, "-m", "worker.cli", *args]
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.settimeout(timeout_s)
            connection.connect(self._socket)
            with connection.makefile("rwb") as stream:
                stream.write(json.dumps(request).encode() + b"\n")
                stream.flush()
                pid = json.loads(stream.readline())["pid"]
                try:
                    returncode = json.loads(stream.readline())["returncode"]
                except TimeoutError:
                    os.killpg(pid, signal.SIGKILL)
                    raise subprocess.TimeoutExpired(argv, timeout_s) from None
        return subprocess.CompletedProcess(
            argv, returncode, out.read_text(errors="replace"), err.read_text(errors="replace")
        )

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


class _Shared:
    """One prewarmed interpreter per test process, started at its first command."""

    lock = threading.Lock()
    cli: PrewarmedCli | None = None


def run_cli(
    env: Mapping[str, str], *args: str, timeout_s: float = 180
) -> subprocess.CompletedProcess[str]:
    """``crmsync ARGS`` on ``env`` alone, from this test process's prewarmed interpreter."""
    with _Shared.lock:
        if _Shared.cli is None or not _Shared.cli.alive():
            _Shared.cli = PrewarmedCli()
        cli = _Shared.cli
    return cli.run(env, *args, timeout_s=timeout_s)


def stop_shared() -> None:
    """Stop the test process's prewarmed interpreter, if it started one."""
    with _Shared.lock:
        if _Shared.cli is not None:
            _Shared.cli.close()
            _Shared.cli = None
