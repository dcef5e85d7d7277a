"""Salesforce record ids, under the name the worker's modules have always imported.

The rule itself (15 -> 18 characters, the case-safe checksum suffix) is ``mappings/ids.py``: one
rule for the mapping, the jobs, the CLI and the emulator. New code imports it from there.
"""

from mappings.ids import InvalidSalesforceId, checksum_suffix, normalize_salesforce_id

__all__ = ["InvalidSalesforceId", "checksum_suffix", "normalize_salesforce_id"]
