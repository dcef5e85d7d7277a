"""``crmsync sandbox``: both emulators in the foreground for manual use, and a sales rep's
edits to the sandbox org (``add-account``, ``close``, ``reopen``, ``rename``).

Serving prints a ready ``.env`` block with the real values (these are the sandbox's own
credentials, made to be shown) and the commands that use it, so a newcomer goes from
``crmsync sandbox`` to a synced customer without reading code. The edit sub-commands talk
to a running sandbox through its REST API with simple-salesforce; they only ever reach the
loopback emulator (worker/salesforce/loopback.py), never a real org.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from worker.commands.errors import StartupFailure, UsageError
from worker.sandbox.line_items import LineItemError, LineItemSpec
from worker.sandbox.salesforce.auth import SandboxCredentials
from worker.sandbox.stack import SANDBOX_METRONOME_TOKEN

if TYPE_CHECKING:
    from worker.sandbox.metronome import MetronomeEmulator
    from worker.sandbox.salesforce import SalesforceEmulator

_DEFAULTS = SandboxCredentials()


DEFAULT_METRONOME_PORT = 8081
DEFAULT_SALESFORCE_PORT = 8082
DEFAULT_PUBSUB_PORT = 8083


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "sandbox",
        help="serve the Metronome and Salesforce emulators on 127.0.0.1 until interrupted; "
        "add-account|close|reopen|rename edit deals in a running sandbox",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (loopback)")
    parser.add_argument(
        "--metronome-port",
        type=int,
        default=None,
        help=f"Metronome API port (default {DEFAULT_METRONOME_PORT})",
    )
    parser.add_argument(
        "--salesforce-port",
        type=int,
        default=None,
        help=f"Salesforce REST/SOAP port (default {DEFAULT_SALESFORCE_PORT})",
    )
    parser.add_argument(
        "--pubsub-port",
        type=int,
        default=None,
        help=f"Salesforce Pub/Sub API port (gRPC); served on {DEFAULT_PUBSUB_PORT} by default "
        "only when no other port is given",
    )
    parser.add_argument(
        "--metronome-token", default=SANDBOX_METRONOME_TOKEN, help="bearer token accepted"
    )
    parser.add_argument("--salesforce-user", default=_DEFAULTS.username, help="username")
    parser.add_argument("--salesforce-password", default=_DEFAULTS.password, help="password")
    parser.add_argument(
        "--salesforce-token", default=_DEFAULTS.security_token, help="security token"
    )
    parser.add_argument(
        "--salesforce-client-id", default=_DEFAULTS.consumer_key, help="OAuth client id"
    )
    parser.add_argument(
        "--salesforce-client-secret",
        default=_DEFAULTS.consumer_secret,
        help="OAuth client secret",
    )
    parser.add_argument(
        "--seed-accounts",
        type=int,
        default=0,
        help="seed the Salesforce org with N accounts (its products are always there)",
    )
    parser.set_defaults(func=run)
    _add_edit_parsers(parser)


def _add_edit_parsers(parser: argparse.ArgumentParser) -> None:
    from worker.sandbox.deals import DEAL_TYPES, PROVIDERS

    edits = parser.add_subparsers(dest="sandbox_action", metavar="EDIT")
    add = edits.add_parser("add-account", help="a new account with an open deal")
    add.add_argument("name")
    add.add_argument("--provider", choices=PROVIDERS, default="aws_marketplace")
    add.add_argument("--email", help="billing email (the customer's ingest alias)")
    add.add_argument("--won", action="store_true", help="close the deal at once")
    add_deal = edits.add_parser(
        "add-deal",
        help="one more open deal on an account: new, or an expansion or renewal of its won deal",
    )
    add_deal.add_argument("account_id", help="the account's 15- or 18-character id")
    add_deal.add_argument(
        "--type",
        choices=DEAL_TYPES,
        default="new",
        help="expansion: edits the account's contract live on the deal's start date; renewal: "
        "the next contract after the newest one a won deal made (needs --rate-card)",
    )
    add_deal.add_argument("--won", action="store_true", help="close the deal at once")
    for sub in (add, add_deal):
        _add_deal_terms(sub)
    close = edits.add_parser("close", help="win the account's open deal (Closed Won)")
    close.add_argument("account_id")
    reopen = edits.add_parser("reopen", help="move the account's won deal back to open")
    reopen.add_argument("account_id")
    rename = edits.add_parser("rename", help="rename the account")
    rename.add_argument("account_id")
    rename.add_argument("name")
    for sub in (add, add_deal, close, reopen, rename):
        sub.add_argument(
            "--salesforce-url",
            help="the sandbox's Salesforce URL (default: CRMSYNC_SALESFORCE_EMULATOR_URL, "
            f"else http://127.0.0.1:{DEFAULT_SALESFORCE_PORT})",
        )
        sub.set_defaults(func=run_edit)
    for listing, what in (("customers", "customers"), ("contracts", "contracts")):
        shown = edits.add_parser(listing, help=f"the {what} the Metronome emulator holds")
        shown.add_argument(
            "--metronome-url",
            help="the sandbox's Metronome URL (default: METRONOME_BASE_URL when it is a sandbox "
            f"configuration, else http://127.0.0.1:{DEFAULT_METRONOME_PORT})",
        )
        shown.add_argument("--json", action="store_true", help="print one JSON array")
        shown.set_defaults(func=run_listing)


def _add_deal_terms(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--rate-card",
        help="Metronome rate card alias for the deal (the emulator has standard, enterprise, "
        "startup): once won it also makes a contract",
    )
    parser.add_argument("--term-months", type=int, help="contract length (default: evergreen)")
    parser.add_argument(
        "--line-item",
        action="append",
        default=[],
        metavar="SPEC",
        help="a product sold on the deal, repeatable: PRODUCT_CODE[,quantity=N][,price=DOLLARS]"
        "[,discount=PERCENT] on the org's products (SEAT seats, COMMIT prepaid commit, COMPUTE "
        "usage, ONBOARD one-time fee), e.g. SEAT,quantity=50 or COMMIT,price=120000: the "
        "contract's terms",
    )


def env_block(
    metronome_url: str, salesforce_url: str, pubsub_address: str | None, args: argparse.Namespace
) -> list[str]:
    """The variables that point crmsync at this sandbox, with their values."""
    lines = [
        f"METRONOME_BASE_URL={metronome_url}",
        f"METRONOME_BEARER_TOKEN={args.metronome_token}",
        f"CRMSYNC_SALESFORCE_EMULATOR_URL={salesforce_url}",
        f"SALESFORCE_USERNAME={args.salesforce_user}",
        f"SALESFORCE_PASSWORD={args.salesforce_password}",
        f"SALESFORCE_SECURITY_TOKEN={args.salesforce_token}",
        "CRMSYNC_POLL_INTERVAL_S=5",
        "CRMSYNC_DATA_DIR=.crmsync-data",
    ]
    if pubsub_address is not None:
        lines.insert(6, f"CRMSYNC_PUBSUB_EMULATOR_ADDRESS={pubsub_address}")
    return lines


def ports(args: argparse.Namespace) -> tuple[int, int, int | None]:
    """Metronome, Salesforce and Pub/Sub ports: Pub/Sub only when asked for, or when no port
    was given at all (then all three defaults)."""
    pubsub = args.pubsub_port
    if pubsub is None and args.metronome_port is None and args.salesforce_port is None:
        pubsub = DEFAULT_PUBSUB_PORT
    return (
        args.metronome_port or DEFAULT_METRONOME_PORT,
        args.salesforce_port or DEFAULT_SALESFORCE_PORT,
        pubsub,
    )


def run(args: argparse.Namespace) -> int:
    import signal

    def stop(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt  # SIGTERM stops the emulators as Ctrl-C does (exit 0)

    metronome, salesforce = start_emulators(args)
    # SIGINT too: a process started with SIGINT ignored (a background job of a script, a
    # pytest-xdist worker's child) keeps it ignored, and Ctrl-C or `kill -INT` never stopped it.
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        announce(args, metronome, salesforce)
        metronome.wait()
    except KeyboardInterrupt:
        pass
    finally:
        salesforce.stop()
        metronome.stop()
    return 0


def start_emulators(args: argparse.Namespace) -> tuple[MetronomeEmulator, SalesforceEmulator]:
    """Both emulators, started; a port in use is one line naming it (what did start stops)."""
    from worker.sandbox.metronome import MetronomeEmulator
    from worker.sandbox.salesforce import SalesforceEmulator

    metronome_port, salesforce_port, pubsub_port = ports(args)
    credentials = SandboxCredentials(
        username=args.salesforce_user,
        password=args.salesforce_password,
        security_token=args.salesforce_token,
        consumer_key=args.salesforce_client_id,
        consumer_secret=args.salesforce_client_secret,
    )
    _require_free(args.host, metronome_port, "--metronome-port")
    _require_free(args.host, salesforce_port, "--salesforce-port")
    if pubsub_port is not None:
        _require_free(args.host, pubsub_port, "--pubsub-port")
    metronome = MetronomeEmulator(
        token=args.metronome_token, host=args.host, port=metronome_port
    ).start()
    try:
        salesforce = SalesforceEmulator(
            credentials, host=args.host, port=salesforce_port, pubsub_port=pubsub_port
        ).start()
    except BaseException:
        metronome.stop()
        raise
    # Always: the org's products (Product2: SEAT, COMMIT, COMPUTE, ONBOARD) are what
    # `add-account --line-item` sells, so an org without seeded accounts has them too.
    salesforce.seed(args.seed_accounts)
    return metronome, salesforce


def _require_free(host: str, port: int, flag: str) -> None:
    """A port another program holds is the usual start-up failure: say which, in one line."""
    import errno
    import socket

    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            raise StartupFailure(
                f"crmsync: port {port} on {host} is in use (another `crmsync sandbox`?): stop "
                f"that program, or choose another port with {flag} N"
            ) from None


def announce(
    args: argparse.Namespace, metronome: MetronomeEmulator, salesforce: SalesforceEmulator
) -> None:
    credentials = salesforce.credentials
    pubsub = salesforce.pubsub_address if salesforce.serves_pubsub else None
    print(f"Metronome emulator:  {metronome.url}  (inspect: {metronome.url}/_sandbox/customers)")
    print(f"Salesforce emulator: {salesforce.url}  (user {credentials.username})")
    if pubsub is not None:
        print(f"Salesforce Pub/Sub:  {pubsub}  (plaintext gRPC, change events)")
    print()
    print("# 1. Save these lines as .env in a directory of your own (or export them):")
    for line in env_block(metronome.url, salesforce.url, pubsub, args):
        print(line)
    print()
    print("# 2. Then, in that directory, in another terminal (and, optional, the listener in one")
    print("#    more):")
    print("#    crmsync run                              # worker + beat, polls every 5 s")
    print("#    crmsync listen                           # a close syncs by change event in ~1 s")
    print("# 3. And in a third one, check, act as a sales rep and watch the customers:")
    print("#    crmsync check                            # one ok line per check")
    print('#    crmsync sandbox add-account "Acme Corp" --rate-card standard  # prints its id')
    print("#        (add --line-item SEAT,quantity=50 to sell seats; see add-account --help)")
    print("#    crmsync sandbox close ACCOUNT_ID         # won: the next poll creates it")
    print('#    crmsync sandbox rename ACCOUNT_ID "Acme Inc"')
    print("#    crmsync sandbox reopen ACCOUNT_ID        # needs attention; nothing archived")
    print("#    crmsync sandbox customers; crmsync sandbox contracts; crmsync status")
    print("Ctrl-C stops them.", flush=True)


def run_edit(args: argparse.Namespace) -> int:
    import requests

    from worker.sandbox import deals
    from worker.sandbox.reach import salesforce_login
    from worker.sandbox.salesforce.client import build_sandbox_salesforce

    line_items = _line_items(args)
    url, credentials = salesforce_login(
        args.salesforce_url, f"http://127.0.0.1:{DEFAULT_SALESFORCE_PORT}"
    )
    try:
        sf = build_sandbox_salesforce(url, credentials)
        if args.sandbox_action == "add-account":
            edit = deals.add_account(
                sf,
                args.name,
                provider=args.provider,
                email=args.email,
                rate_card=args.rate_card,
                term_months=args.term_months,
                line_items=line_items,
                won=args.won,
            )
        elif args.sandbox_action == "add-deal":
            edit = deals.add_deal(
                sf,
                args.account_id,
                deal_type=args.type,
                rate_card=args.rate_card,
                term_months=args.term_months,
                line_items=line_items,
                won=args.won,
            )
        elif args.sandbox_action == "close":
            edit = deals.close(sf, args.account_id)
        elif args.sandbox_action == "reopen":
            edit = deals.reopen(sf, args.account_id)
        else:
            edit = deals.rename(sf, args.account_id, args.name)
    except requests.ConnectionError as exc:
        raise UsageError(
            f"no sandbox answers at {url}: start `crmsync sandbox` first, or pass --salesforce-url"
        ) from exc
    except (deals.SandboxEditError, LineItemError) as exc:
        raise UsageError(str(exc)) from exc
    print(f"{edit.account_id}: {edit.what}")
    return 0


def _line_items(args: argparse.Namespace) -> list[LineItemSpec]:
    """Every ``--line-item``, parsed before the sandbox is even asked: a malformed one is one
    line naming it (exit 2), and nothing is created."""
    from worker.sandbox.line_items import parse_line_item

    try:
        return [parse_line_item(text) for text in getattr(args, "line_item", [])]
    except LineItemError as exc:
        raise UsageError(str(exc)) from exc


def run_listing(args: argparse.Namespace) -> int:
    """``sandbox customers|contracts``: what the Metronome emulator holds, via its inspection
    endpoint (``/_sandbox/customers``, ``/_sandbox/contracts``)."""
    import json

    import httpx

    from worker.sandbox.listing import describe_contract, describe_customer
    from worker.sandbox.reach import metronome_url

    url = metronome_url(args.metronome_url, f"http://127.0.0.1:{DEFAULT_METRONOME_PORT}")
    what = args.sandbox_action
    try:
        answer = httpx.get(f"{url}/_sandbox/{what}", timeout=10).json()
    except httpx.HTTPError as exc:
        raise UsageError(
            f"no sandbox answers at {url}: start `crmsync sandbox` first, or pass --metronome-url"
        ) from exc
    items: list[dict[str, Any]] = list(answer.get("data", []))
    if args.json:
        print(json.dumps(items, sort_keys=True))
        return 0
    if not items:
        print(f"no {what} yet")
    for item in items:
        print(describe_customer(item) if what == "customers" else describe_contract(item))
    return 0
