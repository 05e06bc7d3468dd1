"""Canonical, dialect-independent digests of rows.

SQLite, PostgreSQL and MariaDB return the same stored value as different Python types (``1`` or
``True``, ``datetime.date`` or ``str``, a MariaDB zero date as a string). :func:`canonical` maps
them to one text form so that digests of the same content agree across databases.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

#: Environment variable holding the fingerprint key (keyed fingerprints of personal data cannot
#: be reversed by guessing names and dates). Without it a fixed development key is used.
KEY_VARIABLE = "CONTINUITY_FINGERPRINT_KEY"
_DEV_KEY = b"continuity-development-key-not-secret"


def fingerprint_key() -> bytes:
    """The key of keyed fingerprints (reconciliation's HMAC-MD5, change detection's BLAKE2b)."""
    value = os.environ.get(KEY_VARIABLE)
    return value.encode("utf-8")[:64] if value else _DEV_KEY


_ZERO_DATES = frozenset({"0000-00-00", "0000-00-00 00:00:00"})


def canonical(value: Any) -> str:
    """Return the canonical text of one stored value (``"\\N"`` for NULL and zero dates)."""
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=None).isoformat(sep=" ", timespec="seconds")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    text = str(value)
    if text in _ZERO_DATES:
        return "\\N"
    return text


def row_text(row: Sequence[Any]) -> str:
    """Join a row's canonical values with a unit separator (never found in the data)."""
    return "\x1f".join(canonical(v) for v in row)


def rows_digest(rows: Iterable[Sequence[Any]]) -> str:
    """SHA-256 over rows in the order given; callers order them by key."""
    h = hashlib.sha256()
    for row in rows:
        h.update(row_text(row).encode("utf-8"))
        h.update(b"\x1e")
    return h.hexdigest()
