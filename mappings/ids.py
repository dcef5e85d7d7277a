"""Salesforce record ids: the 18-character, case-safe form is our identity key.

Salesforce hands out ids in two spellings: the 15-character case-sensitive one (what the UI
and some reports show) and the 18-character one whose last three characters encode the case of
the first fifteen. Only the 18-character form survives case-insensitive systems, and it is what
the REST API returns, so every identity we derive (the identity alias, ``sfdc_account_id``,
``salesforce_account_id``) uses it: a 15-character id would give the same account a second
customer.
"""

from __future__ import annotations

import re
import string

_ID_RE = re.compile(r"[A-Za-z0-9]{15}(?:[A-Z0-5]{3})?")
_SUFFIX_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
#: Placeholder an id-derived alias must contain: without it every account would share one alias.
_ID_PLACEHOLDER = "account_id"
#: ``ingest_aliases`` items are at most 128 characters (POST /v1/customers).
_ALIAS_MAX_CHARS = 128


def _case_suffix(id15: str) -> str:
    """The three checksum characters: one per 5-character chunk, a bit per upper-case letter."""
    suffix = []
    for start in range(0, 15, 5):
        chunk = id15[start : start + 5]
        index = sum(1 << bit for bit, char in enumerate(chunk) if "A" <= char <= "Z")
        suffix.append(_SUFFIX_ALPHABET[index])
    return "".join(suffix)


def to_18(record_id: str) -> str:
    """Return the 18-character form of a Salesforce id, or raise ``ValueError``.

    An 18-character id whose suffix does not match the case of its first fifteen characters is
    refused: it is a mistyped or case-mangled id, and accepting it would mint a second identity
    for the same account.
    """
    if not isinstance(record_id, str) or _ID_RE.fullmatch(record_id) is None:
        raise ValueError("not a Salesforce id (15 or 18 letters and digits)")
    suffix = _case_suffix(record_id[:15])
    if len(record_id) == 15:
        return record_id + suffix
    if record_id[15:] != suffix:
        raise ValueError("18-character Salesforce id with a wrong case checksum")
    return record_id


def is_valid_id(record_id: object) -> bool:
    """True when ``record_id`` is a 15- or 18-character Salesforce id that :func:`to_18` takes."""
    if not isinstance(record_id, str):
        return False
    try:
        to_18(record_id)
    except ValueError:
        return False
    return True


def check_id_alias_format(template: str) -> str:
    """An id alias template: exactly ``{account_id}`` once, and short enough for Metronome."""
    fields = [
        (name, spec, conversion)
        for _, name, spec, conversion in string.Formatter().parse(template)
        if name is not None
    ]
    if fields != [(_ID_PLACEHOLDER, "", None)]:
        raise ValueError("must contain {account_id} exactly once and no other {placeholder}")
    rendered = render_id_alias(template, "X" * 18)
    if len(rendered) > _ALIAS_MAX_CHARS:
        raise ValueError(f"renders to {len(rendered)} characters; Metronome allows 128")
    return template


def render_id_alias(template: str, account_id: str) -> str:
    """Fill ``{account_id}``; done by hand so the template can never reach an attribute."""
    pieces = []
    for text, name, _, _ in string.Formatter().parse(template):
        pieces.append(text)
        if name is not None:
            pieces.append(account_id)
    return "".join(pieces)
