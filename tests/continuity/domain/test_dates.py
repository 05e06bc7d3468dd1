"""London wall time to UTC: the per-year BST window agrees with the tz database every hour."""

from __future__ import annotations

import datetime as dt

import pytest

from continuity.domain.dates import LONDON, london_to_utc


@pytest.mark.parametrize("year", [1975, 1980, 1981, 1995, 2019, 2026])
def test_every_hour_of_the_year_matches_zoneinfo(year: int) -> None:
    hour = dt.datetime(year, 1, 1)
    while hour.year == year:
        expected = hour.replace(tzinfo=LONDON).astimezone(dt.UTC).replace(tzinfo=None)
        assert london_to_utc(hour) == expected, hour
        assert london_to_utc(hour.replace(minute=37)) == expected.replace(minute=37), hour
        hour += dt.timedelta(hours=1)


def test_summer_is_an_hour_ahead_and_the_repeated_hour_is_read_as_summer_time() -> None:
    assert london_to_utc(dt.datetime(2020, 7, 1, 14, 30)) == dt.datetime(2020, 7, 1, 13, 30)
    assert london_to_utc(dt.datetime(2020, 1, 1, 14, 30)) == dt.datetime(2020, 1, 1, 14, 30)
    # 25 October 2020: 01:30 happened twice; the first time was still BST.
    assert london_to_utc(dt.datetime(2020, 10, 25, 1, 30)) == dt.datetime(2020, 10, 25, 0, 30)
