"""Salesforce record ids: the 18-character, case-safe form is our identity key.

Salesforce hands out ids in two spellings: the 15-character case-sensitive one (what the UI
and some reports show) and the 18-character one whose last three characters encode the case of
the first fifteen. Only the 18-character form survives case-insensitive systems, and it is what
the REST API returns, so every identity we derive (the identity alias, ``sfdc_account_id``,
``salesforce_account_id``) uses it: a 15-character id would give the same account a second
customer.

This is the one id rule of crmsync (the mapping, the jobs, the CLI and the emulator all use it),
so it lives here, in the pure bottom layer. What Salesforce documents, and what the rule does:

* the suffix is a checksum of the case of the first fifteen characters, one character per
  5-character chunk from ``A-Z0-5``, always issued in upper case, so that case-insensitive
  applications can compare 18-character ids safely. A suffix that comes back in lower case has
  been through such an application; it still checks the fifteen characters, so it is accepted
  and returned in upper case (the same record, the same identity key);
* the first fifteen characters stay case-sensitive: Salesforce does not repair an id whose
  letters were re-cased (it finds no record), so a suffix that does not match them is refused.
  Accepting it would address a different record, or mint a second identity for this one.

Why ids are checked before any SOQL is built: an id is pasted into a query (quoted by
``format_soql``, but still), and a malformed one would otherwise cost an API call that
Salesforce answers with ``MALFORMED_QUERY`` or, worse, a query that matches nothing and looks
like "account not found".
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable

_ID_RE = re.compile(r"[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?")
_SUFFIX_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
#: Placeholder an id-derived alias must contain: without it every account would share one alias.
_ID_PLACEHOLDER = "account_id"
#: ``ingest_aliases`` items are at most 128 characters (POST /v1/customers).
_ALIAS_MAX_CHARS = 128


class InvalidSalesforceId(ValueError):
    """Raised for a value that is not a 15- or 18-character Salesforce id (bad checksum too)."""


def checksum_suffix(id15: str) -> str:
    """The 3 characters Salesforce appends to a 15-character id.

    Each 5-character chunk gives one character: bit ``i`` is set when character ``i`` of the
    chunk is an upper-case letter, and the 5-bit number indexes ``A-Z0-5``.
    """
    suffix = []
    for start in range(0, 15, 5):
        chunk = id15[start : start + 5]
        index = sum(1 << bit for bit, char in enumerate(chunk) if "A" <= char <= "Z")
        suffix.append(_SUFFIX_ALPHABET[index])
    return "".join(suffix)


def to_18(record_id: str) -> str:
    """Return the 18-character form of a Salesforce id, or raise :class:`InvalidSalesforceId`.

    The message does not repeat the value: it is reported next to the field it came from.
    """
    if not isinstance(record_id, str) or _ID_RE.fullmatch(record_id) is None:
        raise InvalidSalesforceId("not a Salesforce id (15 or 18 letters/digits)")
    id15 = record_id[:15]
    suffix = checksum_suffix(id15)
    if len(record_id) == 18 and record_id[15:].upper() != suffix:
        raise InvalidSalesforceId("Salesforce id has a wrong checksum suffix")
    return id15 + suffix


def normalize_salesforce_id(value: str) -> str:
    """:func:`to_18` for an id on its own (typed by an operator, read from a message): the
    error message names the value, since nothing else around it would."""
    try:
        return to_18(value)
    except InvalidSalesforceId as exc:
        raise InvalidSalesforceId(f"{exc}: {value!r}") from None


def normalize_salesforce_ids(values: Iterable[str]) -> list[str]:
    """:func:`normalize_salesforce_id` for ids an operator listed: 18-character, each once, in
    the order given; the first malformed one raises."""
    return list(dict.fromkeys(normalize_salesforce_id(value) for value in values))


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
