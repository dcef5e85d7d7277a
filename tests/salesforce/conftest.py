"""The Salesforce emulator fixtures (tests/support/salesforce_emulator.py) for our client."""

from tests.support.salesforce_emulator import emulator, make_client, sf  # noqa: F401 (fixtures)
