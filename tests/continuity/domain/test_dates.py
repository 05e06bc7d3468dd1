"""Dates: London wall time to UTC, and the one legacy date parser every stage shares.

The parser is checked format by format, mode by mode, against garbage, by properties (every date
written in every format reads back; nothing but DateError escapes; London timestamps agree with
the tz database) and on every date column of the estate's legacy database against its truth.
"""

from __future__ import annotations

import datetime as dt
import pickle
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from continuity.domain.dates import (
    DEFAULT,
    DEFAULT_FORMATS,
    DEFAULT_TIMES,
    LONDON,
    DateError,
    DateRule,
    DateRuleError,
    EstimatedDate,
    PartialDate,
    date_parser,
    datetime_parser,
    london_to_utc,
    parse_date,
    parse_datetime,
)
from continuity.domain.errors import ConfigError, ContinuityError

DOB = DateRule(century=1900, unknown="year")


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


# --- formats ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("03/02/15", dt.date(2015, 2, 3)),  # %d/%m/%y
        ("03-FEB-2015", dt.date(2015, 2, 3)),  # %d-%b-%Y
        ("03/02/2015", dt.date(2015, 2, 3)),  # %d/%m/%Y
        ("2015-02-03", dt.date(2015, 2, 3)),  # %Y-%m-%d
        ("03-FEB-15", dt.date(2015, 2, 3)),  # %d-%b-%y
        ("3/2/2015", dt.date(2015, 2, 3)),  # one-digit day and month
        ("03-feb-2015", dt.date(2015, 2, 3)),  # month names in any case
        ("  03/02/2015\t", dt.date(2015, 2, 3)),  # surrounding spaces
        ("29/02/00", dt.date(2000, 2, 29)),
    ],
)
def test_each_default_format(text: str, want: dt.date) -> None:
    got = parse_date(text)
    assert got == want and type(got) is dt.date


def test_every_default_format_is_covered_above() -> None:
    assert set(DEFAULT_FORMATS) == {"%d/%m/%y", "%d-%b-%Y", "%d/%m/%Y", "%Y-%m-%d", "%d-%b-%y"}


def test_the_century_of_a_two_digit_year_depends_on_the_field() -> None:
    assert parse_date("01/02/15", DOB) == dt.date(1915, 2, 1)  # a date of birth: 19YY
    assert parse_date("01/02/15") == dt.date(2015, 2, 1)  # a recorded date, pivot 70
    assert parse_date("01/02/69") == dt.date(2069, 2, 1)
    assert parse_date("01/02/70") == dt.date(1970, 2, 1)
    assert parse_date("01-FEB-15", DOB) == dt.date(1915, 2, 1)
    assert parse_date("01/02/45", DateRule(pivot=30)) == dt.date(1945, 2, 1)
    assert parse_date("01/02/2015", DOB) == dt.date(2015, 2, 1)  # four digits say it all


def test_custom_formats() -> None:
    rule = DateRule(formats=("%d %B %Y", "%d.%m.%Y", "%Y%m%d", "%%%d/%m/%Y"))
    assert parse_date("3 february   2015", rule) == dt.date(2015, 2, 3)
    assert parse_date("03.02.2015", rule) == dt.date(2015, 2, 3)
    assert parse_date("20150203", rule) == dt.date(2015, 2, 3)
    assert parse_date("%03/02/2015", rule) == dt.date(2015, 2, 3)
    for other in ("03x02x2015", "03/02/2015", "3 feb 2015"):  # a dot is a dot; no defaults
        with pytest.raises(DateError, match=r"DD MONTH YYYY, DD\.MM\.YYYY, YYYYMMDD"):
            parse_date(other, rule)


# --- unknown day and month -------------------------------------------------------------------


@pytest.mark.parametrize("text", ["00/00/1971", "00-00-1971", "0/0/1971", "1971-00-00"])
def test_unknown_day_and_month_under_every_mode(text: str) -> None:
    rule = DateRule(formats=(*DEFAULT_FORMATS, "%d-%m-%Y"))
    with pytest.raises(DateError, match="unknown day and month") as caught:
        parse_date(text, rule)
    assert repr(text) in str(caught.value)
    year = parse_date(text, DateRule(formats=rule.formats, unknown="year"))
    assert year == PartialDate(1971) and str(year) == "1971"
    first = parse_date(text, DateRule(formats=rule.formats, unknown="first"))
    assert isinstance(first, EstimatedDate) and first.estimated
    assert first == dt.date(1971, 1, 1)


def test_unknown_day_of_a_known_month_under_every_mode() -> None:
    with pytest.raises(DateError, match="unknown day "):
        parse_date("00/05/1971")
    year = parse_date("00-MAY-1971", DateRule(unknown="year"))
    assert year == PartialDate(1971, 5) and str(year) == "1971-05"
    first = parse_date("00/05/1971", DateRule(unknown="first"))
    assert type(first) is EstimatedDate and first == dt.date(1971, 5, 1)
    assert not isinstance(parse_date("01/05/1971", DateRule(unknown="first")), EstimatedDate)


def test_a_two_digit_unknown_year_takes_the_fields_century() -> None:
    assert parse_date("00/00/71", DateRule(century=1900, unknown="year")) == PartialDate(1971)
    assert parse_date("00/00/15", DateRule(unknown="year")) == PartialDate(2015)


def test_every_year_with_unknown_day_and_month_is_that_year() -> None:
    year_only, first = DateRule(unknown="year"), DateRule(unknown="first")
    for year in range(1, 10_000):
        text = f"00/00/{year:04d}"
        assert parse_date(text, year_only) == PartialDate(year)
        assert parse_date(text, first) == dt.date(year, 1, 1)


@given(st.integers(1, 9999), st.sampled_from(["00/00/{}", "00-00-{}", " 0/0/{} "]))
def test_unknown_day_and_month_property(year: int, shape: str) -> None:
    rule = DateRule(formats=(*DEFAULT_FORMATS, "%d-%m-%Y"), unknown="year")
    assert parse_date(shape.format(f"{year:04d}"), rule) == PartialDate(year)


# --- garbage ---------------------------------------------------------------------------------

GARBAGE = [
    "31/02/2001",
    "99/99/99",
    "NFA",
    "UNKNOWN",
    "",
    "   ",
    "32/01/19",
    "00/13/19",
    "12-XYZ-2001",
    "05/00/1971",
    "0000-01-01",
    "2001-13-01",
    "1/2/3",
    "01/02/2001 10:00",
    "٠١/٠٢/٢٠٠١",  # Arabic-Indic digits are not the legacy system's
]


@pytest.mark.parametrize("text", GARBAGE)
@pytest.mark.parametrize(
    "rule", [DEFAULT, DOB, DateRule(unknown="first")], ids=["default", "dob", "first"]
)
def test_garbage_is_a_date_error_naming_the_value(text: str, rule: DateRule) -> None:
    with pytest.raises(DateError) as caught:
        parse_date(text, rule)
    error = caught.value
    assert isinstance(error, ContinuityError) and isinstance(error, ValueError)
    assert error.value == text and repr(text) in str(error)
    assert "\n" not in str(error)


def test_garbage_messages_say_what_is_wrong() -> None:
    cases = {
        "31/02/2001": "unreadable date '31/02/2001': 2001-02 has no day 31",
        "00/13/19": "unreadable date '00/13/19': there is no month 13",
        "NFA": "unreadable date 'NFA': not in any of the formats DD/MM/YY, DD-MON-YYYY",
    }
    for text, message in cases.items():
        with pytest.raises(DateError) as caught:
            parse_date(text)
        assert str(caught.value).startswith(message)


def test_a_long_value_is_quoted_shortened_on_one_line() -> None:
    with pytest.raises(DateError) as caught:
        parse_date("x" * 500 + "\n" + "y")
    assert len(str(caught.value)) < 200 and "\n" not in str(caught.value)


def test_a_date_after_not_after_is_an_error() -> None:
    today = dt.date(2026, 6, 30)
    guessed = DateRule(not_after=today)  # a DOB read with the recorded-date pivot
    with pytest.raises(DateError, match=r"'01/02/30': reads 2030-02-01, after 2026-06-30"):
        parse_date("01/02/30", guessed)
    assert parse_date("30/06/26", guessed) == today
    assert parse_date("00/00/2026", DateRule(unknown="year", not_after=today)) == PartialDate(2026)
    with pytest.raises(DateError, match="after"):
        parse_date("00/07/2026", DateRule(unknown="year", not_after=today))
    with pytest.raises(DateError, match="after"):
        parse_date("00/00/2027", DateRule(unknown="first", not_after=today))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"formats": ("%d/%q/%Y",)}, "unknown directive %q"),
        ({"formats": ("%d/%Y",)}, "has no month"),
        ({"formats": ("%d/%m/%y/%Y",)}, "gives the year twice"),
        ({"formats": ("%d/%m/%Y%",)}, "unknown directive %"),
        ({"formats": ()}, "non-empty list"),
        ({"times": ("%H",)}, "has no minute"),
        ({"times": ("%H:%M.%f",)}, "fraction without seconds"),
        ({"unknown": "guess"}, "unknown must be one of reject, year, first"),
        ({"pivot": "soon"}, "pivot must be a whole number"),
        ({"century": 19.5}, "century must be a whole number"),
        ({"not_after": "2026-06-30"}, "not_after must be a date"),
    ],
)
def test_a_bad_rule_is_a_config_error(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(DateRuleError, match=message) as caught:
        DateRule(**kwargs)  # type: ignore[arg-type]
    assert isinstance(caught.value, ConfigError) and isinstance(caught.value, ValueError)


# --- memo and copies -------------------------------------------------------------------------


def test_one_memoised_parser_per_rule() -> None:
    rule = DateRule(pivot=50)
    parse = date_parser(rule)
    assert date_parser(rule) is parse
    before = parse.cache_info().hits  # type: ignore[attr-defined]
    first = parse("01/02/49")
    assert parse("01/02/49") is first and parse_date("01/02/49", rule) is first
    assert parse.cache_info().hits == before + 2  # type: ignore[attr-defined]
    for _ in range(2):  # errors are not remembered, but raised every time
        with pytest.raises(DateError):
            parse("31/02/49")
    assert datetime_parser(rule) is datetime_parser(rule)
    assert datetime_parser(rule) is not datetime_parser(rule, None)


def test_rules_and_errors_survive_pickling() -> None:
    rule = DateRule(century=1900, unknown="year", not_after=dt.date(2026, 6, 30))
    copy = pickle.loads(pickle.dumps(rule))
    assert copy == rule and parse_date("01/02/15", copy) == dt.date(1915, 2, 1)
    error = pickle.loads(pickle.dumps(DateError("NFA", "not a date")))
    assert str(error) == "unreadable date 'NFA': not a date" and error.value == "NFA"


# --- timestamps ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "utc"),
    [
        ("01/07/20 14:30", dt.datetime(2020, 7, 1, 13, 30)),  # summer: an hour ahead
        ("01-JAN-2020 14:30", dt.datetime(2020, 1, 1, 14, 30)),
        ("01-JUL-2020 14:30:15", dt.datetime(2020, 7, 1, 13, 30, 15)),
        ("2020-07-01T14:30:15.5", dt.datetime(2020, 7, 1, 13, 30, 15, 500000)),
        ("2020-07-01 14:30:15.000000", dt.datetime(2020, 7, 1, 13, 30, 15)),
        ("2020-07-01", dt.datetime(2020, 6, 30, 23, 0)),  # a date alone is midnight
        ("01-OCT-2020", dt.datetime(2020, 9, 30, 23, 0)),  # the T of OCT is no separator
        ("25/10/20 01:30", dt.datetime(2020, 10, 25, 0, 30)),  # repeated: first occurrence
        ("29/03/20 01:30", dt.datetime(2020, 3, 29, 1, 30)),  # skipped: the offset before
        ("01/07/2020   9:05", dt.datetime(2020, 7, 1, 8, 5)),
    ],
)
def test_timestamps_are_read_to_utc(text: str, utc: dt.datetime) -> None:
    assert parse_datetime(text) == utc
    local = parse_datetime(text, zone=None)
    assert london_to_utc(local) == utc


def test_timestamps_in_another_zone_and_an_unknown_zone() -> None:
    assert parse_datetime("01/07/20 12:00", zone="America/New_York") == dt.datetime(
        2020, 7, 1, 16, 0
    )
    with pytest.raises(DateRuleError, match="unknown time zone 'Mars/Olympus'"):
        parse_datetime("01/07/20 12:00", zone="Mars/Olympus")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("01/02/2001 25:00", "there is no time 25:00"),
        ("01/02/2001 10:61", "there is no time 10:61"),
        ("31/02/19 00:00", "date '31/02/19': 2019-02 has no day 31"),
        ("00/00/1971 10:00", "date '00/00/1971': unknown day and month"),
        ("NFA", "not in any of the formats DD/MM/YY, .*followed by a time HH:MM"),
        ("", "not in any of the formats"),
        ("01/02/2001 xx", "not in any of the formats"),
    ],
)
def test_garbage_timestamps_are_date_errors(text: str, message: str) -> None:
    with pytest.raises(DateError, match=message) as caught:
        parse_datetime(text)
    assert str(caught.value).startswith(f"unreadable timestamp {text!r}: ")


def test_an_unknown_day_is_no_timestamp_whatever_the_rule() -> None:
    for mode in ("year", "first"):
        with pytest.raises(DateError, match="day or month is unknown"):
            parse_datetime("00/00/1971 10:00", DateRule(unknown=mode))


# --- properties ------------------------------------------------------------------------------


def _rules_for(fmt: str, year: int) -> list[DateRule]:
    """The rules under which ``year`` written in ``fmt`` must read back."""
    if "%y" not in fmt:
        return [DEFAULT, DOB]
    rules = [DateRule(century=1900)] if year < 2000 else [DateRule(century=2000)]
    if 1970 <= year < 2070:
        rules.append(DEFAULT)  # the pivot: 70-99 are 19YY, 00-69 are 20YY
    return rules


@given(st.dates(dt.date(1900, 1, 1), dt.date(2069, 12, 31)), st.sampled_from(DEFAULT_FORMATS))
@example(dt.date(1969, 12, 31), "%d/%m/%y")
@example(dt.date(1970, 1, 1), "%d/%m/%y")
@example(dt.date(2000, 2, 29), "%d-%b-%y")
def test_every_date_written_in_every_format_reads_back(day: dt.date, fmt: str) -> None:
    text = day.strftime(fmt)  # the C library writes it, not the code under test
    for rule in _rules_for(fmt, day.year):
        for written in (text, text.upper(), text.lower()):
            got = parse_date(written, rule)
            assert got == day and type(got) is dt.date, (written, rule)


#: Fragments of dates and of garbage, so that arbitrary text often nearly matches a format.
_PIECES = st.sampled_from(["0", "00", "1", "12", "29", "31", "99", "2001", "0000", "1e3"]) | (
    st.sampled_from(["/", "-", ":", ".", "T", "JAN", "feb", "XYZ", "é", "٣", "+", "NFA", " ", "\n"])
)


@given(st.one_of(st.text(), st.lists(_PIECES, max_size=12).map("".join)))
@example("00/00/0000")
@example("00/00/00 24:00")
@example("31/12/9999 23:59")
@example("01/01/0001 00:00")
def test_nothing_but_date_error_escapes(text: str) -> None:
    for rule in (DEFAULT, DOB, DateRule(unknown="first", century=9900)):
        try:
            got = parse_date(text, rule)
        except DateError as exc:
            assert exc.value == text
        else:
            assert isinstance(got, dt.date | PartialDate)
    for zone in ("Europe/London", None, "Asia/Tokyo", "America/Los_Angeles"):
        try:
            stamp = parse_datetime(text, zone=zone)
        except DateError as exc:
            assert exc.value == text
        else:
            assert type(stamp) is dt.datetime and stamp.tzinfo is None


@given(
    st.datetimes(dt.datetime(1900, 1, 1), dt.datetime(2069, 12, 31, 23, 59, 59)),
    st.sampled_from(DEFAULT_FORMATS),
    st.sampled_from(DEFAULT_TIMES),
    st.sampled_from([" ", "  ", "T"]),
)
@example(dt.datetime(2020, 10, 25, 0, 59), "%d/%m/%y", "%H:%M", " ")
@example(dt.datetime(2020, 3, 29, 2, 0), "%d-%b-%Y", "%H:%M", " ")
@example(dt.datetime(2020, 10, 1, 2, 0), "%d-%b-%Y", "%H:%M", "T")  # the T of OCT
@example(dt.datetime(1947, 4, 16, 3, 0), "%Y-%m-%d", "%H:%M", " ")  # double summer time
def test_london_timestamps_agree_with_the_tz_database(
    local: dt.datetime, date_fmt: str, time_fmt: str, sep: str
) -> None:
    local = local.replace(fold=0)  # text has no fold: the tz database reads it as fold 0
    first, second = local.replace(tzinfo=LONDON), local.replace(tzinfo=LONDON, fold=1)
    assume(first.utcoffset() == second.utcoffset())  # it exists, and only once
    if time_fmt == "%H:%M":
        local = local.replace(second=0, microsecond=0)
    elif time_fmt == "%H:%M:%S":
        local = local.replace(microsecond=0)
    text = local.strftime(date_fmt) + sep + local.strftime(time_fmt)
    rule = _rules_for(date_fmt, local.year)[0]
    want = local.replace(tzinfo=LONDON).astimezone(dt.UTC).replace(tzinfo=None)
    assert parse_datetime(text, rule) == want, text
    assert parse_datetime(text, rule, zone=None) == local


# --- the estate's legacy database ------------------------------------------------------------

#: (table, key column, date column, how it is read) for every date column of the legacy system.
LEGACY_DATES = [
    ("NOMINAL", "NOMINAL_REF", "DOB", "dob"),
    ("CRIME", "CRIME_NO", "COMMITTED_FROM", "timestamp"),
    ("CRIME", "CRIME_NO", "COMMITTED_TO", "timestamp"),
    ("CRIME", "CRIME_NO", "REPORTED", "timestamp"),
    ("CRIME", "CRIME_NO", "RECORDED", "timestamp"),
    ("CRIME", "CRIME_NO", "OUTCOME_DATE", "date"),
    ("CRIME", "CRIME_NO", "REVIEW_DATE", "date"),
    ("BAIL", "CRIME_NO || '|' || NOMINAL_REF", "RETURN_DATE", "date"),
]


def _rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    with closing(sqlite3.connect(path)) as db:
        return db.execute(sql).fetchall()


def test_every_legacy_date_reads_but_the_planted_garbage(small_estate: Path) -> None:
    legacy, truth, target = (small_estate / f"{n}.sqlite" for n in ("legacy", "truth", "target"))
    read = {
        "dob": date_parser(DOB),
        "date": date_parser(DEFAULT),
        "timestamp": datetime_parser(DEFAULT, "Europe/London"),
    }
    parsed: dict[tuple[str, str, str], object] = {}
    failed: set[tuple[str, str, str]] = set()
    for table, key, column, kind in LEGACY_DATES:
        for k, text in _rows(legacy, f"SELECT {key}, {column} FROM {table}"):
            if text is None or text == "":  # no date recorded: not a date to read
                continue
            try:
                parsed[(table, column, str(k))] = read[kind](str(text))
            except DateError as exc:
                assert repr(text) in str(exc)
                failed.add((table, column, str(k)))
    garbage = {
        ("CRIME", "RECORDED", str(k))
        for (k,) in _rows(
            truth,
            "SELECT source_key FROM quarantine WHERE system = 'legacy' AND source_table = 'CRIME'"
            " AND reason = 'unparseable recorded date'",
        )
    }
    assert garbage, "the estate plants unreadable recorded dates"
    assert failed == garbage
    assert len(parsed) > 10_000

    # What was read is what the truth says: dates of birth, and a migrated crime's dates as the
    # ideal target holds them (times in UTC).
    dobs = _rows(
        truth,
        "SELECT source_key, dob FROM person_record WHERE system = 'legacy' AND dob IS NOT NULL",
    )
    partial = 0
    for k, iso in dobs:
        got, want = parsed[("NOMINAL", "DOB", str(k))], dt.date.fromisoformat(str(iso))
        if isinstance(got, PartialDate):
            partial += 1
            assert got.year == want.year and got.month is None
        else:
            assert got == want, k
    assert 0 < partial < len(dobs) / 10
    events = {
        str(row[0]): row[1:]
        for row in _rows(
            target,
            "SELECT event_id, committed_from, committed_to, reported_at, recorded_at,"
            " outcome_date, mopi_review_date FROM event",
        )
    }
    columns = ("COMMITTED_FROM", "COMMITTED_TO", "REPORTED", "RECORDED")
    checked = 0
    for key, event_id in _rows(
        truth,
        "SELECT legacy_key, target_event_id FROM crime"
        " WHERE era = 'legacy' AND disposition = 'MIGRATED'",
    ):
        held = events[str(event_id)]
        for column, value in zip(columns, held[:4], strict=True):
            got = parsed.get(("CRIME", column, str(key)))
            assert got == (dt.datetime.fromisoformat(str(value)) if value else None), key
        for column, value in zip(("OUTCOME_DATE", "REVIEW_DATE"), held[4:], strict=True):
            got = parsed.get(("CRIME", column, str(key)))
            assert got == (dt.date.fromisoformat(str(value)) if value else None), key
        checked += 1
    assert checked > 500
