"""The ``crmsync`` command line: one sub-command per module in :mod:`worker.commands`.

Each command module exposes ``add_parser(subparsers)`` which registers its parser and sets
``func`` to a callable taking the parsed arguments and returning the exit code. Keeping one
module per command keeps imports lazy-ish and lets each part of the product own its command.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from worker.context import NotConfigured
from worker.settings import SettingsError

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
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crmsync",
        description=(
            "Turns closed-won Salesforce opportunities into Metronome customers, exactly once."
        ),
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMAND_MODULES:
        module = importlib.import_module(module_name)
        module.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = int(args.func(args))
    except (SettingsError, NotConfigured) as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
