"""The journal writes before-images and keys as JSON with their types kept (``to_json`` as the
encoder's ``default``): a rollback must read back exactly the values that were there."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
import uuid
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from continuity.rollback import from_json, to_json

VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(),
    st.dates(),
    st.datetimes(),
    st.decimals(allow_nan=False, allow_infinity=False),
    st.uuids(),
    st.binary(max_size=20),
)


@given(st.lists(st.lists(VALUES, max_size=8).map(tuple), max_size=8))
def test_rows_written_whole_read_back_as_they_were(rows: list[tuple[Any, ...]]) -> None:
    text = json.dumps(rows, default=to_json)
    # the same text as converting value by value
    assert text == json.dumps([[to_json(v) for v in r] for r in rows])
    back = [tuple(from_json(v) for v in r) for r in json.loads(text)]
    assert back == [tuple(bytes(v) if isinstance(v, bytes) else v for v in r) for r in rows]
    for got, was in zip((v for r in back for v in r), (v for r in rows for v in r), strict=True):
        assert type(got) is type(was) or (isinstance(was, bytes) and isinstance(got, bytes))


def test_each_kept_type_is_tagged() -> None:
    row = (
        dt.date(2020, 1, 2),
        dt.datetime(2020, 1, 2, 3, 4),
        decimal.Decimal("1.50"),
        uuid.UUID(int=7),
    )
    assert json.loads(json.dumps([row], default=to_json)) == [
        [
            {"$date": "2020-01-02"},
            {"$datetime": "2020-01-02T03:04:00"},
            {"$decimal": "1.50"},
            {"$uuid": str(uuid.UUID(int=7))},
        ]
    ]
    assert math.isnan(from_json(json.loads(json.dumps(float("nan"), default=to_json))))


def test_a_json_columns_value_reads_back_as_itself() -> None:
    """A list or an object (a JSON column of a vendor's schema) is written as JSON and read
    back as it was, not taken for a tagged value."""
    row = ([1, "a"], {"k": 1, "j": [2]}, {"only": "one"})
    back = [from_json(v) for v in json.loads(json.dumps(row, default=to_json))]
    assert back == list(row)
