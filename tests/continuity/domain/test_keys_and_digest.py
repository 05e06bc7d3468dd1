"""Deterministic keys and dialect-independent digests."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from continuity.domain.digest import canonical, rows_digest
from continuity.domain.keys import CONTINUITY_NAMESPACE, target_key, uuid5_text


@given(st.text())
def test_fast_uuid5_is_the_standard_uuid5(name: str) -> None:
    assert uuid5_text(CONTINUITY_NAMESPACE.bytes, name) == str(
        uuid.uuid5(CONTINUITY_NAMESPACE, name)
    )


def test_target_key_depends_on_every_part_of_the_source_identity() -> None:
    base = target_key("person", "legacy", "N1")
    assert base == target_key("person", "legacy", "N1")
    assert (
        len(
            {
                base,
                target_key("event", "legacy", "N1"),
                target_key("person", "policeworks", "N1"),
                target_key("person", "legacy", "N2"),
            }
        )
        == 4
    )


def test_canonical_maps_each_dialects_types_to_one_text() -> None:
    # SQLite returns 1, PostgreSQL True; MariaDB returns a zero date as text.
    assert canonical(True) == canonical(1) == "1"
    assert canonical(dt.date(2020, 1, 2)) == "2020-01-02"
    assert canonical(dt.datetime(2020, 1, 2, 3, 4, 5)) == "2020-01-02 03:04:05"
    assert canonical("0000-00-00") == canonical(None) == "\\N"
    assert canonical(Decimal("1.50")) == "1.5"
    assert canonical("") != canonical(None)


def test_rows_digest_is_order_sensitive_and_content_sensitive() -> None:
    a, b = ("x", 1), ("y", None)
    assert rows_digest([a, b]) != rows_digest([b, a])
    assert rows_digest([a, b]) != rows_digest([a, ("y", "")])
