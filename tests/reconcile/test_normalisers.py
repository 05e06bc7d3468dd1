"""Normalisers read what old systems write, and never make an unreadable value equal a real one."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from continuity.domain.dates import london_to_utc
from reconcile.columns import text
from reconcile.normalisers import PartialDate, Unreadable, build, chain, parse_date

MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")


def norm(*steps: object) -> object:
    built = []
    for step in steps:
        name, args = (step, None) if isinstance(step, str) else next(iter(step.items()))  # type: ignore[union-attr]
        built.append(build(name, args, Path(".")))
    return chain(built)


@given(st.dates(dt.date(1900, 1, 1), dt.date(2099, 12, 31)))
def test_every_written_form_of_a_date_reads_back(day: dt.date) -> None:
    assert parse_date(day.isoformat()) == day
    assert parse_date(f"{day.day:02d}-{MONTHS[day.month - 1]}-{day.year}") == day
    assert parse_date(f"{day.day:02d}/{day.month:02d}/{day.year}") == day
    two = f"{day.day:02d}/{day.month:02d}/{day.year % 100:02d}"
    if 1970 <= day.year < 2070:  # the default pivot: 70-99 are 19YY, 00-69 are 20YY
        assert parse_date(two) == day
    if day.year < 2000:  # dates of birth: always 19YY
        assert parse_date(two, century=1900) == day


def test_unknown_day_and_month_is_a_year() -> None:
    assert parse_date("00/00/1971") == PartialDate(1971)
    assert text(PartialDate(1971)) == "1971"


@pytest.mark.parametrize("bad", ["31/02/19", "00/13/19", "32/01/19", "12-XYZ-2001", "yesterday"])
def test_garbage_dates_are_unreadable_not_dropped(bad: str) -> None:
    value = norm("date")(bad)  # type: ignore[operator]
    assert isinstance(value, Unreadable) and value.raw == bad
    assert text(value) != text(None) and bad in text(value)


@given(st.datetimes(dt.datetime(1972, 1, 1), dt.datetime(2037, 12, 31)))
def test_legacy_local_times_become_utc_to_the_minute(moment: dt.datetime) -> None:
    written = f"{moment.day:02d}-{MONTHS[moment.month - 1]}-{moment.year} {moment:%H:%M}"
    got = norm({"datetime": {"local": "Europe/London"}})(written)  # type: ignore[operator]
    want = london_to_utc(moment.replace(second=0, microsecond=0))
    assert got == want.isoformat(" ", "minutes")


_TIMESTAMP_TEXTS = st.one_of(
    st.datetimes(dt.datetime(1972, 1, 1), dt.datetime(2037, 12, 31)).flatmap(
        lambda m: st.sampled_from(
            [
                f"{m.day:02d}-{MONTHS[m.month - 1]}-{m.year} {m:%H:%M}",
                f"{m:%d/%m/%y %H:%M}",
                f"{m:%Y-%m-%d %H:%M:%S}",
                f"{m:%Y-%m-%dT%H:%M}",
                f" {m:%Y-%m-%d %H:%M} ",
                f"{m:%Y-%m-%d}",
                f"{m:%Y-%m-%d %H:%M}x",
            ]
        )
    ),
    st.sampled_from(["", "0000-00-00 00:00:00", "31/02/19 10:00", "2024-03-31 01:30", None]),
    st.text(max_size=20),
    st.datetimes(dt.datetime(1972, 1, 1), dt.datetime(2037, 12, 31)),
)


@given(st.lists(_TIMESTAMP_TEXTS, max_size=40), st.booleans())
def test_a_column_of_timestamps_reads_as_one_value_at_a_time(values: list, local: bool) -> None:
    """The column path (dates read before, inline) gives each value's own canonical text."""
    one = norm({"datetime": {"local": "Europe/London"}} if local else "datetime")
    want = [text(one(v)) for v in values]  # type: ignore[operator]
    got = one.texts(values, lambda v: text(one(v)))  # type: ignore[attr-defined, operator]
    assert got == want
    assert one.texts(values, lambda v: text(one(v))) == want  # type: ignore[attr-defined, operator]


def test_sqlite_text_timestamps_read_like_datetimes() -> None:
    read = norm("datetime")
    minute = "2020-03-01 10:15"
    assert read("2020-03-01 10:15:42.000000") == minute  # type: ignore[operator]
    assert read("2020-03-01T10:15:42") == minute  # type: ignore[operator]
    assert read(dt.datetime(2020, 3, 1, 10, 15, 42)) == minute  # type: ignore[operator]


@pytest.mark.parametrize(
    ("raw", "want"), [("Y", True), ("n", False), (1, True), (0, False), ("", False), (None, False)]
)
def test_flags(raw: object, want: bool) -> None:
    assert norm({"boolean": {"empty": False}})(raw) is want  # type: ignore[operator]


def test_names_compare_without_case_accents_or_punctuation() -> None:
    key = norm("name_key")
    assert key("O'Brien") == key("OBRIEN") == key(" o brien ".strip()) == "obrien"  # type: ignore[operator]
    assert key("Siobhán") == key("SIOBHAN")  # type: ignore[operator]
    mangled = "Siobhán".encode().decode("latin-1")
    assert key(mangled) != key("Siobhán")  # type: ignore[operator]


def test_text_digest_sees_truncation_and_encoding_damage() -> None:
    digest = norm("text_digest")
    mo = "Offender entered through an insecure rear door — café window"
    assert digest(mo) == digest(mo)  # type: ignore[operator]
    assert digest(mo) != digest(mo[:30])  # type: ignore[operator]
    assert digest(mo) != digest(mo.encode().decode("latin-1"))  # type: ignore[operator]


def test_an_unmapped_code_is_flagged(tmp_path: Path) -> None:
    (tmp_path / "codes.csv").write_text("from,to\n8/1,8N\n", encoding="utf-8")
    read = chain([build("crosswalk", {"file": "codes.csv"}, tmp_path)])
    assert read("8/1") == "8N"
    assert isinstance(read("99/9"), Unreadable)


def test_ended_by_compares_a_live_only_system() -> None:
    ended = norm({"ended_by": {"as_of": "2026-06-30"}})
    assert ended(None) is None and ended(dt.date(2027, 1, 1)) is None  # type: ignore[operator]
    assert ended(dt.date(2026, 5, 31)) == "ENDED 2026-05-31"  # type: ignore[operator]


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="pivot must be a whole number"):
        build("date", {"pivot": "soon"}, Path("."))
    with pytest.raises(TypeError):
        build("trim", {"width": 3}, Path("."))
