"""Salesforce record ids: validation and the 15 -> 18 character conversion.

Why this runs before any SOQL is built: an id is pasted into a query (quoted by
``format_soql``, but still), and a malformed one would otherwise cost an API call that
Salesforce answers with ``MALFORMED_QUERY`` or, worse, a query that matches nothing and looks
like "account not found". The 18-character form is the identity key everywhere (DESIGN.md
"Salesforce facts"): the 15-character form is case-sensitive, so two ids that differ only in
case are different records, and only the 3-character checksum suffix keeps them apart once a
case-insensitive system (Metronome aliases, a spreadsheet) has seen them.
"""

from __future__ import annotations

import re

_ID_RE = re.compile(r"^[a-zA-Z0-9]{15}(?:[a-zA-Z0-9]{3})?$")
_SUFFIX_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"


class InvalidSalesforceId(ValueError):
    """Raised for a value that is not a 15- or 18-character Salesforce id (bad checksum too)."""


def checksum_suffix(id15: str) -> str:
    """The 3 characters Salesforce appends to a 15-character id.

    Each 5-character chunk gives one character: bit ``i`` is set when character ``i`` of the
    chunk is an upper-case letter, and the 5-bit number indexes ``A-Z0-5``.
    """
    suffix = []
    for start in (0, 5, 10):
        bits = 0
        for offset, char in enumerate(id15[start : start + 5]):
            if "A" <= char <= "Z":
                bits |= 1 << offset
        suffix.append(_SUFFIX_ALPHABET[bits])
    return "".join(suffix)


def normalize_salesforce_id(value: str) -> str:
    """Return the 18-character form of ``value`` or raise :class:`InvalidSalesforceId`.

    An 18-character id must carry the right checksum for its first 15 characters (compared
    case-insensitively, as Salesforce does): a mismatch means the id was re-cased or mangled
    on the way here, and using it would silently address a different record.
    """
    if not isinstance(value, str) or not _ID_RE.fullmatch(value):
        raise InvalidSalesforceId(f"not a Salesforce id (15 or 18 letters/digits): {value!r}")
    id15 = value[:15]
    suffix = checksum_suffix(id15)
    if len(value) == 18 and value[15:].upper() != suffix:
        raise InvalidSalesforceId(f"Salesforce id has a wrong checksum suffix: {value!r}")
    return id15 + suffix
