"""``crmsync sandbox``: both emulators in the foreground, for manual use and local clients."""

from __future__ import annotations

import argparse

from worker.sandbox.salesforce.auth import SandboxCredentials

_DEFAULTS = SandboxCredentials()


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "sandbox",
        help="serve the Metronome and Salesforce emulators on 127.0.0.1 until interrupted",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (loopback)")
    parser.add_argument("--metronome-port", type=int, default=8081, help="Metronome API port")
    parser.add_argument(
        "--salesforce-port", type=int, default=8082, help="Salesforce REST/SOAP port"
    )
    parser.add_argument(
        "--pubsub-port", type=int, default=8083, help="Salesforce Pub/Sub API port (gRPC)"
    )
    parser.add_argument(
        "--metronome-token", default="sandbox-metronome-token", help="bearer token accepted"
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
        "--seed-accounts", type=int, default=0, help="seed the Salesforce org with N accounts"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from worker.sandbox.metronome import MetronomeEmulator
    from worker.sandbox.salesforce import SalesforceEmulator

    credentials = SandboxCredentials(
        username=args.salesforce_user,
        password=args.salesforce_password,
        security_token=args.salesforce_token,
        consumer_key=args.salesforce_client_id,
        consumer_secret=args.salesforce_client_secret,
    )
    metronome = MetronomeEmulator(
        token=args.metronome_token, host=args.host, port=args.metronome_port
    ).start()
    salesforce = SalesforceEmulator(
        credentials, host=args.host, port=args.salesforce_port, pubsub_port=args.pubsub_port
    ).start()
    if args.seed_accounts:
        salesforce.seed(args.seed_accounts)
    print(f"Metronome emulator:  {metronome.url}  (inspect: {metronome.url}/_sandbox/customers)")
    print(f"Salesforce emulator: {salesforce.url}  (user {credentials.username})")
    print(f"Salesforce Pub/Sub:  {salesforce.pubsub_address}  (plaintext gRPC, change events)")
    print("Point crmsync at them with:")
    print(f"  METRONOME_BASE_URL={metronome.url} METRONOME_BEARER_TOKEN=<--metronome-token>")
    print(f"  CRMSYNC_SALESFORCE_EMULATOR_URL={salesforce.url} SALESFORCE_USERNAME=... ")
    print(f"  CRMSYNC_PUBSUB_EMULATOR_ADDRESS={salesforce.pubsub_address}  (crmsync listen)")
    print("Ctrl-C stops them.", flush=True)
    try:
        metronome.wait()
    except KeyboardInterrupt:
        pass
    finally:
        salesforce.stop()
        metronome.stop()
    return 0
