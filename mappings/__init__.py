"""The declarative mapping: how Salesforce accounts become Metronome customers.

Pure (no I/O, no clock, no randomness) except :mod:`mappings.loader`, which reads the file.

Importing the package imports none of its modules (PEP 562, names resolved on first use):
``mappings.ids`` and ``mappings.errors`` are needed by processes that never build the mapping's
models.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

#: Each public name and the module that defines it.
_DEFINED_IN = {
    "BillingProviderConfiguration": "mappings.desired",
    "DesiredCustomer": "mappings.desired",
    "MappingError": "mappings.errors",
    "MappingFileError": "mappings.errors",
    "load_default_mapping": "mappings.loader",
    "load_mapping": "mappings.loader",
    "parse_mapping": "mappings.loader",
    "Mapping": "mappings.model",
    "record_from_account": "mappings.model",
}


def __getattr__(name: str) -> Any:
    try:
        module = _DEFINED_IN[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    return getattr(import_module(module), name)
