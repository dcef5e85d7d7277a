"""``crmsync demo``: the whole pipeline on emulators, three passes, a summary, an exit code."""

from __future__ import annotations

import argparse

from worker.demo.run import run_demo


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "demo", help="run the pipeline end to end on emulators (no configuration needed)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return run_demo(as_json=args.json)
