"""``crmsync demo``: the whole pipeline on emulators (arrives with the pipeline issue)."""

from __future__ import annotations

import argparse
import sys


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("demo", help="run the pipeline end to end on emulators")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    print(
        "crmsync demo is not built yet: it arrives with the pipeline issue (#6). Nothing was run.",
        file=sys.stderr,
    )
    return 1
