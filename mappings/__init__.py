"""The declarative mapping: how Salesforce accounts become Metronome customers.

Pure (no I/O, no clock, no randomness) except :mod:`mappings.loader`, which reads the file.
"""

from mappings.desired import BillingProviderConfiguration, DesiredCustomer
from mappings.errors import MappingError, MappingFileError
from mappings.loader import load_default_mapping, load_mapping, parse_mapping
from mappings.model import Mapping, record_from_account

__all__ = [
    "BillingProviderConfiguration",
    "DesiredCustomer",
    "Mapping",
    "MappingError",
    "MappingFileError",
    "load_default_mapping",
    "load_mapping",
    "parse_mapping",
    "record_from_account",
]
