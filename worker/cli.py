"""The ``crmsync`` command line: one sub-command per module in :mod:`worker.commands`.

Each command module exposes ``add_parser(subparsers)`` which registers its parser and sets
``func`` to a callable taking the parsed arguments and returning the exit code. Keeping one
module per command keeps imports lazy-ish and lets each part of the product own its command.

Failures are handled here, once, for every command: an expected one (worker/commands/errors.py)
is one line on stderr and an exit code, a closed stdout is a quiet exit, and only a bug shows
a traceback. A command module raises; it does not print its own version of these errors.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from importlib import metadata

from worker.commands.errors import EXIT_BROKEN_PIPE, EXIT_INTERRUPTED, explain
from worker.logs import configure_logging
from worker.settings import Settings, SettingsError, load_settings

#: Command modules, in the order ``--help`` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "worker.commands.demo",
    "worker.commands.run",
    "worker.commands.worker",
    "worker.commands.beat",
    "worker.commands.listen",
    "worker.commands.poll",
    "worker.commands.resync",
    "worker.commands.plan",
    "worker.commands.status",
    "worker.commands.check",
    "worker.commands.sandbox",
    "worker.commands.mapping",
    "worker.commands.flower",
    "worker.commands.dead_letters",
    "worker.commands.history",
    "worker.commands.attention",
    "worker.commands.parked",
)


def version() -> str:
    try:
        return metadata.version("crmsync")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crmsync",
        description=(
            "Turns closed-won Salesforce opportunities into Metronome customers, exactly once."
        ),
    )
    parser.add_argument("--version", action="version", version=f"crmsync {version()}")
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show the traceback behind an error message; accepted anywhere on the line "
        "(also CRMSYNC_LOG_LEVEL=DEBUG)",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMAND_MODULES:
        module = importlib.import_module(module_name)
        module.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    # `crmsync plan 001... --debug` must work too: argparse would only take it before the
    # command name, so it is taken out wherever it stands.
    debug = "--debug" in words
    words = [word for word in words if word != "--debug"]
    try:
        args = build_parser().parse_args(words)
    except SystemExit:  # --help, --version, a usage error: argparse printed and exits
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            return _stdout_closed()
        raise
    debug = debug or _log_level() == "DEBUG"
    # Log lines go through our handler, never as bare lines. A command's own output (and
    # its one-line error) says what happened, so only errors are logged besides it, unless
    # debugging; worker, beat and run reconfigure the level when Celery starts.
    configure_logging(
        os.environ.get("CRMSYNC_LOG_FORMAT", "auto"), logging.DEBUG if debug else logging.ERROR
    )
    try:
        code = int(args.func(args))
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit flush
    except BrokenPipeError:
        return _stdout_closed()
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:
        failure = explain(exc, _settings_or_none())
        if failure is None:
            raise  # not an expected failure: a bug, and its traceback is the report
        if debug:
            traceback.print_exception(exc)
        print(failure.message, file=sys.stderr)
        return failure.exit_code
    return code


def _stdout_closed() -> int:
    """The reader went away (``| head``): stop quietly, as Unix tools killed by SIGPIPE do.

    stdout is pointed at /dev/null so the interpreter's final flush does not raise again.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return EXIT_BROKEN_PIPE


def _settings_or_none() -> Settings | None:
    try:
        return load_settings()
    except SettingsError:
        return None


def _log_level() -> str:
    """CRMSYNC_LOG_LEVEL, from the environment or .env (settings may not even load)."""
    settings = _settings_or_none()
    if settings is not None:
        return settings.log_level
    return os.environ.get("CRMSYNC_LOG_LEVEL", "").upper()


if __name__ == "__main__":
    sys.exit(main())
