"""Date and time helpers shared by every stage."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

LONDON = ZoneInfo("Europe/London")
UTC = dt.UTC
_HOUR = dt.timedelta(hours=1)
_BST: dict[int, tuple[dt.datetime, dt.datetime] | None] = {}


def _offset(local: dt.datetime) -> dt.timedelta:
    return local.replace(tzinfo=LONDON).utcoffset() or dt.timedelta(0)


def _first_hour(start: dt.datetime, days: int, in_bst: bool) -> dt.datetime | None:
    """The first wall-clock hour from ``start`` (within ``days``) whose BST-ness is ``in_bst``."""
    for day in range(days):
        noon = start + dt.timedelta(days=day, hours=12)
        if (_offset(noon) == _HOUR) == in_bst:
            hour = noon - dt.timedelta(hours=36)
            while (_offset(hour) == _HOUR) != in_bst:
                hour += _HOUR
            return hour
    return None


def bst_window(year: int) -> tuple[dt.datetime, dt.datetime] | None:
    """Wall-clock [start, end) of British Summer Time in ``year``, read off the tz database.

    Clocks change on the hour, so the window is found hour by hour once per year and cached;
    converting a timestamp is then two comparisons.
    """
    if year not in _BST:
        start = _first_hour(dt.datetime(year, 2, 1), 120, in_bst=True)
        end = _first_hour(dt.datetime(year, 8, 15), 120, in_bst=False) if start else None
        _BST[year] = (start, end) if start and end else None
    return _BST[year]


def london_to_utc(local: dt.datetime) -> dt.datetime:
    """Convert a naive Europe/London wall time to naive UTC.

    An hour repeated when clocks go back is read as its first occurrence (``fold=0``), the
    convention the legacy system's users followed; a skipped hour is read with the offset before
    the change. Years with no summer time (or with double summer time) are read from the tz
    database directly.
    """
    window = bst_window(local.year)
    if window is None or not 1972 <= local.year <= 2037:
        return local - _offset(local)
    return local - _HOUR if window[0] <= local < window[1] else local


def dob_text(day: dt.date | None, estimated: bool) -> str | None:
    """A date of birth as reconciliation compares it: ISO, or the year alone if estimated."""
    if day is None:
        return None
    return f"{day.year:04d}" if estimated else day.isoformat()


def dob_evidence_agrees(a: str, b: str) -> bool:
    """Whether two dates of birth (ISO, or a year alone) could be one person's.

    Equal, day and month swapped, or an estimate within a year. Any other difference is evidence
    of two different people: a merge resting on it is wrong.
    """
    try:
        if len(a) == 10 and len(b) == 10:
            da, db = dt.date.fromisoformat(a), dt.date.fromisoformat(b)
            return da == db or (da.year == db.year and da.day == db.month and da.month == db.day)
        return abs(int(a[:4]) - int(b[:4])) <= 1
    except ValueError:
        return False
