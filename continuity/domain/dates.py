"""Date and time helpers shared by every stage."""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from zoneinfo import ZoneInfo

LONDON = ZoneInfo("Europe/London")
UTC = dt.UTC


@lru_cache(maxsize=65536)
def _offset_at(day: dt.date, hour: int) -> dt.timedelta:
    local = dt.datetime(day.year, day.month, day.day, hour, tzinfo=LONDON)
    return local.utcoffset() or dt.timedelta(0)


def london_to_utc(local: dt.datetime) -> dt.datetime:
    """Convert a naive Europe/London wall time to naive UTC.

    An hour repeated when clocks go back is read as its first occurrence (``fold=0``), the
    convention the legacy system's users followed; a skipped hour is read with the offset before
    the change.
    """
    return local - _offset_at(local.date(), local.hour)
