"""Masking: a report circulated beyond its owner shows no name, date of birth or address.

A masked report keeps every key, placement, integrity, field *name* and count (what an owner
needs to see that a record was lost or damaged, and which one), and hides the values of personal
fields and the detail of reasons (which can quote a value). The owner's own copy
(``--unmasked``) shows them, and making one is recorded in the audit ledger.
"""

from __future__ import annotations

import re
from typing import Any

#: Field names whose values are personal data (names, dates of birth, addresses).
PERSONAL_FIELD = re.compile(
    r"name|forename|surname|alias|dob|birth|address|line[0-9]|postcode|street|building|"
    r"locality|town|premises|summary|mo_text|conditions",
    re.IGNORECASE,
)

MASK = "•••"


def is_personal(field_name: str) -> bool:
    return PERSONAL_FIELD.search(field_name) is not None


def mask_diffs(diffs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Field diffs with the values of personal fields hidden (the field names stay)."""
    return [
        {**d, "source": MASK, "target": MASK} if is_personal(str(d.get("field", ""))) else d
        for d in diffs
    ]


#: A rule's words: lower case, as reconciliation and the mappings name their rules. Free text
#: (a name, a date) does not look like this, and is hidden.
_RULE = re.compile(r"^[a-z][a-z _/()'-]{0,80}$")


def mask_reason(reason: str | None) -> str | None:
    """A reason's rule, without the detail after its first colon (which may quote a value);
    a reason that does not read as a rule's words is hidden whole."""
    if reason is None:
        return None
    rule, sep, _ = reason.partition(":")
    rule = rule.strip()
    if not _RULE.match(rule):
        return MASK
    return f"{rule}: {MASK}" if sep else rule
