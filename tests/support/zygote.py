"""A prewarmed interpreter that starts ``python -m worker.cli`` processes without paying for
their third-party imports each time (``python -m tests.support.zygote SOCKET``).

Most of a failing command's CPU is importing celery, redis, pydantic, the Metronome SDK and
simple-salesforce: ~1.3 s of a 1.5 s ``crmsync poll`` on a 2-core machine, and about a second of
every worker's, beat's and listener's start. A test module that starts dozens of commands
(tests/integration/test_failures.py), and the test stacks' services, ask this process instead:
it has imported those libraries once, and forks a child per command that runs ``worker.cli``
as ``__main__`` with the command's argv, environment, working directory and files for stdout
and stderr, in a session of its own. crmsync's own modules are imported afresh in every child
(this module never imports them), so settings, lazy imports and start-up order are the real
ones; only the libraries' import is shared. Nothing here is threaded: a fork with another
thread alive could copy a held lock.

Protocol, one connection per command: the client sends one JSON line (argv, env, cwd, out,
err, and ``append`` for a log both streams share); the server answers ``{"pid": N}`` once the
command runs and ``{"returncode": N}`` when it ended (negative for a signal, as ``subprocess``
reports it).
"""

from __future__ import annotations

import atexit
import importlib
import json
import os
import runpy
import signal
import socket
import sys
import threading
from typing import Any

#: Third-party libraries a crmsync command imports, in the order it meets them. Left out:
#: grpc, whose core does not survive fork() with state initialised at import, and
#: celery.bin.celery, which imports flower (a celery CLI plugin) and so prometheus_client,
#: which picks single- or multi-process values at import from PROMETHEUS_MULTIPROC_DIR: a
#: worker sets that variable before it gets there, so it must import it itself.
PRELOAD = (
    "yaml",
    "pydantic",
    "pydantic_settings",
    "redis",
    "kombu",
    "kombu.transport.redis",
    "celery",
    # celery.bin.celery's own commands and what a worker and a beat start, without the module
    # itself (see above):
    "click",
    "celery.bin.base",
    "celery.bin.worker",
    "celery.bin.beat",
    "celery.bin.call",
    "celery.bin.control",
    "celery.bin.events",
    "celery.bin.graph",
    "celery.bin.list",
    "celery.bin.logtool",
    "celery.bin.migrate",
    "celery.bin.purge",
    "celery.bin.result",
    "celery.bin.shell",
    "celery.bin.upgrade",
    "celery.bin.amqp",
    "celery.bin.multi",
    "celery.apps.worker",
    "celery.worker.consumer",
    "celery.concurrency.prefork",
    "celery.beat",
    "redbeat",
    "httpx",
    "requests",
    "simple_salesforce",
    "metronome",
    "metronome.resources.v1",
    "metronome.types.v1",
    "tenacity",
)


def main(socket_path: str) -> None:
    for name in PRELOAD:
        importlib.import_module(name)
    if "prometheus_client" in sys.modules:  # see PRELOAD
        raise RuntimeError("a preloaded library imported prometheus_client: leave it out")
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(socket_path)
    server.listen(16)
    server.settimeout(1.0)
    parent = os.getppid()
    print("ready", flush=True)
    while True:
        try:
            connection, _ = server.accept()
        except TimeoutError:
            if os.getppid() != parent:  # the test process is gone without stopping us
                return
            continue
        connection.settimeout(None)
        sys.stdout.flush()
        sys.stderr.flush()
        if os.fork() == 0:
            server.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            try:
                _serve(connection)
            finally:
                os._exit(0)
        connection.close()


def _serve(connection: socket.socket) -> None:
    """Run one command in a grandchild and report its pid, then its exit status."""
    with connection.makefile("rwb") as stream:
        request: dict[str, Any] = json.loads(stream.readline())
        pid = os.fork()
        if pid == 0:
            connection.close()
            _run_command(request)  # never returns
        stream.write(json.dumps({"pid": pid}).encode() + b"\n")
        stream.flush()
        _, status = os.waitpid(pid, 0)
        stream.write(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}).encode())
        stream.write(b"\n")
        stream.flush()


def _run_command(request: dict[str, Any]) -> None:
    """Become ``python -m worker.cli ARGV`` and exit as it would."""
    os.setsid()  # a timed-out command is killed with everything it started
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    # A service's log is one file for both streams, appended to as ``open(path, "ab")`` does
    # for a restarted one; a command's outputs are two files of its own.
    mode = os.O_APPEND if request.get("append") else os.O_TRUNC
    opened: dict[str, int] = {}
    for fd, path in ((1, request["out"]), (2, request["err"])):
        if path not in opened:
            opened[path] = os.open(path, os.O_WRONLY | os.O_CREAT | mode, 0o600)
        os.dup2(opened[path], fd)
    for target in opened.values():
        os.close(target)
    sys.argv = ["worker.cli", *request["argv"]]  # runpy puts the module's path first
    code = 0
    try:
        runpy.run_module("worker.cli", run_name="__main__", alter_sys=True)
    except SystemExit as done:
        code = _exit_code(done.code)
    except BaseException:  # what the interpreter does with an uncaught exception
        sys.excepthook(*sys.exc_info())
        code = 1
    threading._shutdown()  # type: ignore[attr-defined]  # as the interpreter does at exit
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _exit_code(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


if __name__ == "__main__":
    main(sys.argv[1])
