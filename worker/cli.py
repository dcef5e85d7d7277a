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
import os
import sys
from collections.abc import Sequence

#: typing.TYPE_CHECKING without importing typing (~5-15 ms of `crmsync --help`); mypy reads
#: any name TYPE_CHECKING as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from worker.settings import Settings

#: Exit codes (worker/commands/errors.py explains them); here too so a bare ``--help`` or
#: ``--version`` imports nothing heavier than argparse.
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141

#: Every command: its name, its module, and the one line ``crmsync --help`` shows for it (the
#: module's own parser says the same: tests/commands/test_cli_startup.py). Only the module of
#: the command being run is imported: ``crmsync --help`` and the container health check start
#: in a fraction of the time importing all seventeen took (bench/cli_startup.py).
COMMANDS: tuple[tuple[str, str, str], ...] = (
    (
        "demo",
        "worker.commands.demo",
        "run the pipeline end to end on emulators (no configuration needed)",
    ),
    (
        "run",
        "worker.commands.run",
        "worker + beat in one command (single machine)",
    ),
    (
        "worker",
        "worker.commands.worker",
        "run a Celery worker (foreground)",
    ),
    (
        "beat",
        "worker.commands.beat",
        "run the scheduler (safe to run two: one waits on a Redis lock)",
    ),
    (
        "listen",
        "worker.commands.listen",
        "turn Salesforce change events into syncs (one active per org; others stand by)",
    ),
    (
        "poll",
        "worker.commands.poll",
        "poll Salesforce once now and print the result",
    ),
    (
        "resync",
        "worker.commands.resync",
        "re-sync accounts by id, --all, or --since DATE (read fresh from Salesforce)",
    ),
    (
        "plan",
        "worker.commands.plan",
        "dry run: the calls a sync would make",
    ),
    (
        "status",
        "worker.commands.status",
        "cursors, last poll, outcomes, dead letters",
    ),
    (
        "check",
        "worker.commands.check",
        "verify settings, mapping and connectivity",
    ),
    (
        "sandbox",
        "worker.commands.sandbox",
        "serve the Metronome and Salesforce emulators on 127.0.0.1 until interrupted; "
        "add-account|close|reopen|rename edit deals in a running sandbox",
    ),
    (
        "mapping",
        "worker.commands.mapping",
        "validate or preview a mapping file",
    ),
    (
        "flower",
        "worker.commands.flower",
        "start the Flower dashboard (basic auth)",
    ),
    (
        "dead-letters",
        "worker.commands.dead_letters",
        "list or redrive dead-lettered records",
    ),
    (
        "history",
        "worker.commands.history",
        "one account's (or deal's) syncs, dead letters and attention items",
    ),
    (
        "attention",
        "worker.commands.attention",
        "'needs attention' items, with what to do; ack one when handled",
    ),
    (
        "parked",
        "worker.commands.parked",
        "syncs waiting for Metronome to come back: list them, or retry them now",
    ),
)
#: Command modules, in the order ``--help`` lists them.
COMMAND_MODULES: tuple[str, ...] = tuple(module for _, module, _ in COMMANDS)


def version() -> str:
    from worker.commands.installed import installed_version

    return installed_version()


class _Version(argparse.Action):
    """``--version`` on every parser, the version read only when asked for."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *_: object, **__: object) -> None:
        print(f"crmsync {version()}")
        parser.exit()


def _add_version(parser: argparse.ArgumentParser) -> None:
    """``--version`` on ``parser`` and on every sub-command below it."""
    if "--version" not in parser._option_string_actions:
        parser.add_argument("--version", action=_Version)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _add_version(sub)


def _command_word(words: Sequence[str]) -> str | None:
    """The command named on the line (the first word that is not an option)."""
    return next((word for word in words if not word.startswith("-")), None)


def build_parser(words: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser; with ``words``, only the command they name is imported (the others are
    listed by name and help line). Without, every command's full parser (tests, docs)."""
    parser = argparse.ArgumentParser(
        prog="crmsync",
        description=(
            "Turns closed-won Salesforce opportunities into Metronome customers, exactly once."
        ),
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show the traceback behind an error message; accepted anywhere on the line "
        "(also CRMSYNC_LOG_LEVEL=DEBUG)",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    wanted = _command_word(words) if words is not None else None
    # Running a known command without asking for help needs no parser of the others: each
    # costs argparse a formatter and gettext's look-ups (~40 ms for the sixteen, on the
    # health check's path). Help, and a mistyped command, list them all.
    alone = (
        words is not None
        and "-h" not in words
        and "--help" not in words
        and any(name == wanted for name, _, _ in COMMANDS)
    )
    for name, module_name, summary in COMMANDS:
        if words is None or name == wanted:
            importlib.import_module(module_name).add_parser(subparsers)
        elif not alone:
            subparsers.add_parser(name, help=summary)
    _add_version(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    # `crmsync plan 001... --debug` must work too: argparse would only take it before the
    # command name, so it is taken out wherever it stands.
    debug = "--debug" in words
    words = [word for word in words if word != "--debug"]
    if "--version" in words and "--help" not in words and "-h" not in words:
        # Every command takes --version; answered before any command module is imported.
        print(f"crmsync {version()}")
        return 0
    try:
        args = build_parser(words).parse_args(words)
    except SystemExit:  # --help, --version, a usage error: argparse printed and exits
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            return _stdout_closed()
        raise
    before_setup = getattr(args, "before_setup", None)
    debugging = debug or os.environ.get("CRMSYNC_LOG_LEVEL", "").upper() == "DEBUG"
    if before_setup is not None and not debugging:
        # A command's answer that needs neither settings nor logging (the stamped quick
        # health check, worker/commands/quick_check.py): None means "go the whole way".
        try:
            code = before_setup(args)
            if code is not None:
                sys.stdout.flush()
                return int(code)
        except BrokenPipeError:
            return _stdout_closed()
        except KeyboardInterrupt:
            return EXIT_INTERRUPTED
    return _run(args, debug)


def _run(args: argparse.Namespace, debug: bool) -> int:
    """The command with crmsync's logging, its failures explained (module docstring)."""
    import logging
    import traceback

    from worker.commands.errors import explain
    from worker.logs import configure_logging

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
    from worker.settings import SettingsError, load_settings

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
