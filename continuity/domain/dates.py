"""Date and time helpers shared by every stage: London time, and the one legacy date parser.

Legacy systems write dates as text in several shapes (``DD/MM/YY`` whose century depends on the
field, ``DD-MON-YYYY``, ``00/00/1971`` for an unknown day and month, ISO). A :class:`DateRule`
says how one field reads them; it is compiled once and then applied to millions of values
through a memo (:func:`date_parser`, :func:`datetime_parser`), because legacy data repeats the
same few thousand dates. ``docs/dates.md`` documents the rule.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from continuity.domain.errors import ConfigError, ContinuityError

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


# --- the legacy date parser -----------------------------------------------------------------

MONTHS: dict[str, int] = {
    m: i
    for i, m in enumerate(
        ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"), 1
    )
}
_MONTH_NAMES: dict[str, int] = {
    name: i
    for i, name in enumerate(
        (
            "JANUARY",
            "FEBRUARY",
            "MARCH",
            "APRIL",
            "MAY",
            "JUNE",
            "JULY",
            "AUGUST",
            "SEPTEMBER",
            "OCTOBER",
            "NOVEMBER",
            "DECEMBER",
        ),
        1,
    )
}

#: The shapes the legacy crime system and the databases write, most frequent first. No two can
#: match the same text, so the order only decides speed.
DEFAULT_FORMATS: tuple[str, ...] = ("%d/%m/%y", "%d-%b-%Y", "%d/%m/%Y", "%Y-%m-%d", "%d-%b-%y")
#: Times of day that may follow a date (after spaces, or ``T`` in ISO timestamps).
DEFAULT_TIMES: tuple[str, ...] = ("%H:%M", "%H:%M:%S", "%H:%M:%S.%f")
#: What a zero day (``00/MM/YYYY``) or zero day and month (``00/00/YYYY``) may mean.
UNKNOWN_MODES: tuple[str, ...] = ("reject", "year", "first")
#: "7", "07" -> 7: a look-up is a few times cheaper than int() in the hot path.
_NUMBER: dict[str, int] = {
    **{str(i): i for i in range(10)},
    **{f"{i:02d}": i for i in range(100)},
}
#: Most distinct texts one parser remembers (per rule, and per time zone for timestamps).
MEMO_SIZE = 1 << 16

# directive -> (field, regular expression, how the format reads in a message)
_DATE_DIRECTIVES = {
    "d": ("day", "([0-9]{1,2})", "DD"),
    "m": ("month", "([0-9]{1,2})", "MM"),
    "b": ("month", f"({'|'.join(MONTHS)})", "MON"),
    "B": ("month", f"({'|'.join(_MONTH_NAMES)})", "MONTH"),
    "y": ("year", "([0-9]{2})", "YY"),
    "Y": ("year", "([0-9]{4})", "YYYY"),
}
_TIME_DIRECTIVES = {
    "H": ("hour", "([0-9]{1,2})", "HH"),
    "M": ("minute", "([0-9]{2})", "MM"),
    "S": ("second", "([0-9]{2})", "SS"),
    "f": ("fraction", "([0-9]{1,6})", "FFFFFF"),
}


class DateError(ContinuityError, ValueError):
    """A value that is no date (or timestamp) under the field's rule; the message quotes it.

    ``unreadable date '31/02/2001': 2001-02 has no day 31``: ``value`` is the text as given,
    ``reason`` what is wrong with it, ``kind`` ``date`` or ``timestamp``.
    """

    def __init__(self, value: object, reason: str, kind: str = "date") -> None:
        self.value = value
        self.reason = reason
        self.kind = kind
        super().__init__(f"unreadable {kind} {_quote(value)}: {reason}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.value, self.reason, self.kind))


class DateRuleError(ConfigError, ValueError):
    """A :class:`DateRule` that cannot be built (unknown directive, mode or time zone)."""


def _quote(value: object) -> str:
    if isinstance(value, str) and len(value) > 40:
        value = value[:40] + "…"
    return repr(value)


@dataclass(frozen=True, slots=True)
class PartialDate:
    """A date known only to its year, or to its year and month (``00/00/1971``, ``00/05/1971``)."""

    year: int
    month: int | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.year <= 9999 or (self.month is not None and not 1 <= self.month <= 12):
            raise ValueError(f"no such partial date: year {self.year}, month {self.month}")

    def __str__(self) -> str:
        if self.month is None:
            return f"{self.year:04d}"
        return f"{self.year:04d}-{self.month:02d}"


class EstimatedDate(dt.date):
    """The 1st of the month (or 1 January) standing in for an unknown day (and month).

    It is a :class:`datetime.date` and equals the plain date of the same day; ``estimated`` (or
    ``isinstance(day, EstimatedDate)``) tells a migration to set the target's estimated flag.
    """

    __slots__ = ()
    estimated: ClassVar[bool] = True


@dataclass(frozen=True, slots=True)
class _Shape:
    """One format as a regular expression, with where each field's group sits in it."""

    label: str  # the format as a message names it: DD/MM/YY
    pattern: str
    fields: dict[str, tuple[int, str]]  # field -> (group index in the shape from 0, directive)


def _compile(fmt: str, directives: dict[str, tuple[str, str, str]], kind: str) -> _Shape:
    """Read a strptime-like format; ``kind`` is ``date`` or ``time``."""
    if not isinstance(fmt, str) or not fmt:
        raise DateRuleError(f"{kind} format {fmt!r} is not a format")
    pattern: list[str] = []
    label: list[str] = []
    groups: dict[str, tuple[int, str]] = {}
    i = 0
    while i < len(fmt):
        c = fmt[i]
        if c == "%":
            d = fmt[i + 1 : i + 2]
            if d == "%":
                pattern.append("%")
                label.append("%")
            elif d in directives:
                name, regex, shown = directives[d]
                if name in groups:
                    raise DateRuleError(f"{kind} format {fmt!r} gives the {name} twice")
                groups[name] = (len(groups), d)
                pattern.append(regex)
                label.append(shown)
            else:
                known = " ".join(f"%{k}" for k in directives)
                raise DateRuleError(
                    f"{kind} format {fmt!r}: unknown directive %{d} (known: {known} %%)"
                )
            i += 2
        elif c.isspace():
            while i < len(fmt) and fmt[i].isspace():
                i += 1
            pattern.append(r"\s+")
            label.append(" ")
        else:
            pattern.append(re.escape(c))
            label.append(c)
            i += 1
    names = _fields(directives)
    needed = names if kind == "date" else names[:2]  # a time needs hours and minutes
    if missing := [n for n in needed if n not in groups]:
        raise DateRuleError(f"{kind} format {fmt!r} has no {' or '.join(missing)}")
    if "fraction" in groups and "second" not in groups:
        raise DateRuleError(f"{kind} format {fmt!r} has a fraction without seconds")
    return _Shape("".join(label), "".join(pattern), groups)


def _fields(directives: dict[str, tuple[str, str, str]]) -> list[str]:
    return list(dict.fromkeys(name for name, _, _ in directives.values()))


#: Where one format's fields sit in the combined expression: a group number per field (-1: the
#: format has none) and the directive letter that filled it.
_Plan = tuple[tuple[int, ...], tuple[str, ...]]


def _combine(
    shapes: tuple[_Shape, ...], names: list[str]
) -> tuple[Callable[[str], re.Match[str] | None], dict[int, _Plan]]:
    """One expression trying every format in order, and each format's plan by its group.

    A single match call replaces a loop over the formats; ``Match.lastindex`` is the group
    wrapping the format that matched, because it closes last.
    """
    parts: list[str] = []
    plans: dict[int, _Plan] = {}
    outer = 1
    for shape in shapes:
        parts.append(f"({shape.pattern})")
        plans[outer] = (
            tuple(outer + 1 + shape.fields[n][0] if n in shape.fields else -1 for n in names),
            tuple(shape.fields[n][1] if n in shape.fields else "" for n in names),
        )
        outer += 1 + len(shape.fields)
    return re.compile("|".join(parts), re.IGNORECASE | re.ASCII).fullmatch, plans


def _strings(name: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, tuple | list) or not value:
        raise DateRuleError(f"date rule: {name} must be a non-empty list of formats")
    return tuple(value)


def _whole(name: str, value: Any) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise DateRuleError(f"date rule: {name} must be a whole number, not {value!r}")


@dataclass(frozen=True)
class DateRule:
    """How one field's dates are written; build once, apply to every row.

    Attributes:
        formats: date formats tried in order: strptime-like, with ``%d`` (day, 1-2 digits),
            ``%m`` (month, 1-2 digits), ``%b`` (``JAN``), ``%B`` (``JANUARY``), ``%y`` (two-digit
            year), ``%Y`` (four-digit year) and ``%%``; any other character stands for itself
            (letters in any case, a space for one or more spaces). Surrounding spaces are ignored.
        pivot: a two-digit year below ``pivot`` is 20YY, any other 19YY ...
        century: ... unless the field fixes the century (dates of birth: 1900).
        unknown: what a zero day (``00/05/1971``) or zero day and month (``00/00/1971``) means:
            ``reject`` (a :class:`DateError`), ``year`` (a :class:`PartialDate`) or ``first``
            (the 1st of the month, or 1 January, as an :class:`EstimatedDate`).
        not_after: a date read after this day is an error (a date of birth in the future).
        times: formats of the time of day that may follow a date in a timestamp (``%H``, ``%M``,
            ``%S``, ``%f``); used by :func:`parse_datetime` only.

    Raises:
        DateRuleError: a format with an unknown directive or a missing field, an unknown mode.
    """

    formats: tuple[str, ...] = DEFAULT_FORMATS
    pivot: int = 70
    century: int | None = None
    unknown: str = "reject"
    not_after: dt.date | None = None
    times: tuple[str, ...] = DEFAULT_TIMES
    _shapes: tuple[_Shape, ...] = field(init=False, repr=False, compare=False)
    _time_shapes: tuple[_Shape, ...] = field(init=False, repr=False, compare=False)
    _match: Callable[[str], re.Match[str] | None] = field(init=False, repr=False, compare=False)
    _plans: dict[int, _Plan] = field(init=False, repr=False, compare=False)
    _match_time: Callable[[str], re.Match[str] | None] = field(
        init=False, repr=False, compare=False
    )
    _time_plans: dict[int, _Plan] = field(init=False, repr=False, compare=False)
    _read: Callable[[str], dt.date | PartialDate] = field(init=False, repr=False, compare=False)
    _memo: Callable[[str], dt.date | PartialDate] = field(init=False, repr=False, compare=False)
    _timestamps: dict[str | None, Callable[[str], dt.datetime]] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        formats, times = _strings("formats", self.formats), _strings("times", self.times)
        _whole("pivot", self.pivot)
        _whole("century", self.century)
        if self.pivot is None:
            raise DateRuleError("date rule: pivot must be a whole number, not None")
        if self.unknown not in UNKNOWN_MODES:
            modes = ", ".join(UNKNOWN_MODES)
            raise DateRuleError(f"date rule: unknown must be one of {modes}, not {self.unknown!r}")
        not_after = self.not_after
        if isinstance(not_after, dt.datetime):
            not_after = not_after.date()
        elif not_after is not None and not isinstance(not_after, dt.date):
            raise DateRuleError(f"date rule: not_after must be a date, not {not_after!r}")
        shapes = tuple(_compile(f, _DATE_DIRECTIVES, "date") for f in formats)
        time_shapes = tuple(_compile(f, _TIME_DIRECTIVES, "time") for f in times)
        put = object.__setattr__  # frozen: the compiled parts are set once, here
        put(self, "formats", formats)
        put(self, "times", times)
        put(self, "not_after", not_after)
        put(self, "_shapes", shapes)
        put(self, "_time_shapes", time_shapes)
        matcher = _combine(shapes, _fields(_DATE_DIRECTIVES))
        put(self, "_match", matcher[0])
        put(self, "_plans", matcher[1])
        matcher = _combine(time_shapes, _fields(_TIME_DIRECTIVES))
        put(self, "_match_time", matcher[0])
        put(self, "_time_plans", matcher[1])
        put(self, "_read", self._reader())
        put(self, "_memo", lru_cache(maxsize=MEMO_SIZE)(self._read))
        put(self, "_timestamps", {})

    def __reduce__(self) -> tuple[Any, ...]:
        # The memo is not picklable; a copy in another process compiles its own.
        fields = (self.formats, self.pivot, self.century, self.unknown, self.not_after, self.times)
        return (type(self), fields)

    @property
    def expected(self) -> str:
        """The formats as a reader would name them: ``DD/MM/YY, DD-MON-YYYY, ...``."""
        return ", ".join(s.label for s in self._shapes)

    @property
    def expected_times(self) -> str:
        """The time formats as a reader would name them: ``HH:MM, HH:MM:SS, ...``."""
        return ", ".join(s.label for s in self._time_shapes)

    def _reader(self) -> Callable[[str], dt.date | PartialDate]:
        """The parser of one text, without the memo; everything it needs bound locally."""
        match, not_after, day_of = self._match, self.not_after, self._day
        if self.century is not None:
            years = {f"{yy:02d}": self.century + yy for yy in range(100)}
        else:
            years = {f"{yy:02d}": (2000 if yy < self.pivot else 1900) + yy for yy in range(100)}
        # per format: day group, month group, month table, upper-case it, year group, years
        plans: dict[int, tuple[int, int, dict[str, int], bool, int, dict[str, int] | None]] = {}
        for outer, ((day_at, month_at, year_at), (_, month_kind, year_kind)) in self._plans.items():
            months = {"m": _NUMBER, "b": MONTHS, "B": _MONTH_NAMES}[month_kind]
            table = years if year_kind == "y" else None
            plans[outer] = (day_at, month_at, months, month_kind != "m", year_at, table)
        expected = self.expected
        date = dt.date

        def read(text: str) -> dt.date | PartialDate:
            if not isinstance(text, str):
                raise DateError(text, "not text")
            found = match(text.strip())
            if found is None:
                raise DateError(text, f"not in any of the formats {expected}")
            day_at, month_at, months, upper, year_at, table = plans[found.lastindex or 0]
            month = months[found[month_at].upper() if upper else found[month_at]]
            year = table[found[year_at]] if table is not None else int(found[year_at])
            day = _NUMBER[found[day_at]]
            if day and not_after is None:  # the common case; anything else is checked by _day
                try:
                    return date(year, month, day)
                except ValueError:
                    pass
            return day_of(text, year, month, day)

        return read

    def _day(self, text: str, year: int, month: int, day: int) -> dt.date | PartialDate:
        if not 1 <= year <= 9999:
            raise DateError(text, f"there is no year {year}")
        if month > 12:
            raise DateError(text, f"there is no month {month}")
        value: dt.date | PartialDate
        if day == 0:
            unknown = "day and month" if month == 0 else "day"
            if self.unknown == "reject":
                raise DateError(text, f"unknown {unknown} (the field's rule rejects it)")
            if self.unknown == "year":
                value = PartialDate(year, month or None)
            else:
                value = EstimatedDate(year, month or 1, 1)
        elif month == 0:
            raise DateError(text, "a day without a month")
        else:
            try:
                value = dt.date(year, month, day)
            except ValueError:
                raise DateError(text, f"{year:04d}-{month:02d} has no day {day}") from None
        limit = self.not_after
        if limit is not None:
            first = value if isinstance(value, dt.date) else dt.date(year, month or 1, 1)
            if first > limit:
                raise DateError(text, f"reads {value}, after {limit.isoformat()} (not_after)")
        return value

    def _time(self, text: str, whole: str) -> tuple[int, int, int, int] | None:
        """(hour, minute, second, microsecond) of a time of day; None if no format fits."""
        found = self._match_time(text)
        if found is None:
            return None
        (hour_at, minute_at, second_at, fraction_at), _ = self._time_plans[found.lastindex or 0]
        hour, minute = int(found[hour_at]), int(found[minute_at])
        second = int(found[second_at]) if second_at >= 0 else 0
        micro = int(found[fraction_at].ljust(6, "0")) if fraction_at >= 0 else 0
        if hour > 23 or minute > 59 or second > 59:
            raise DateError(whole, f"there is no time {text}", "timestamp")
        return (hour, minute, second, micro)


DEFAULT = DateRule()


def date_parser(rule: DateRule = DEFAULT) -> Callable[[str], dt.date | PartialDate]:
    """The memoised parser of ``rule``: call it on every value of the field.

    One memo (an LRU of :data:`MEMO_SIZE` texts) per rule, kept by the rule itself, so building
    the same rule twice does not share it but asking twice for one rule's parser does.

    Returns:
        A function from text to :class:`datetime.date` (an :class:`EstimatedDate` under
        ``unknown="first"``) or :class:`PartialDate`, raising :class:`DateError`.
    """
    return rule._memo


def parse_date(text: str, rule: DateRule = DEFAULT) -> dt.date | PartialDate:
    """Read one date under ``rule`` (memoised, see :func:`date_parser`).

    Args:
        text: the value as the source holds it; surrounding spaces are ignored.
        rule: the field's rule; the default reads every legacy shape, 20YY below 70.

    Raises:
        DateError: no format fits, no such day, an unknown day under ``unknown="reject"``, or a
            day after ``not_after``; the message quotes the value.
    """
    return rule._memo(text)


def _converter(zone: str | None) -> Callable[[dt.datetime], dt.datetime] | None:
    """Naive wall time in ``zone`` to naive UTC; None when no conversion is wanted."""
    if zone is None:
        return None
    if zone == "Europe/London":
        return london_to_utc
    try:
        tz = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise DateRuleError(f"unknown time zone {zone!r}") from None

    def to_utc(local: dt.datetime) -> dt.datetime:
        # fold=0: a repeated hour is its first occurrence, a skipped one keeps the old offset,
        # as london_to_utc reads London.
        return local.replace(tzinfo=tz).astimezone(UTC).replace(tzinfo=None)

    return to_utc


_NOT_A_TIME = object()


def _timestamp_parser(rule: DateRule, zone: str | None) -> Callable[[str], dt.datetime]:
    """Build the parser behind :func:`datetime_parser`.

    Timestamps hardly repeat but their dates and times of day do: each date text is read once,
    to the UTC time of its local midnight when one offset held all that day (on a day the clocks
    change, each time is converted on its own), and each time text once, to the time since
    midnight; a timestamp then costs one addition.
    """
    convert = _converter(zone)
    read_date = rule._memo
    days: dict[str, tuple[dt.datetime, dt.datetime | None]] = {}  # -> (midnight, in UTC)
    clocks: dict[str, dt.timedelta | None] = {}  # time text -> since midnight; None: no time
    zero = dt.timedelta(0)
    then = f"each optionally followed by a time {rule.expected_times}"

    def day_of(date_text: str, text: str) -> tuple[dt.datetime, dt.datetime | None]:
        try:
            day = read_date(date_text)
        except DateError as exc:
            if date_text != text.strip():  # the date part alone is wrong
                raise DateError(
                    text, f"date {_quote(date_text)}: {exc.reason}", "timestamp"
                ) from None
            if exc.reason.startswith("not in any"):
                raise DateError(text, f"{exc.reason}, {then}", "timestamp") from None
            raise DateError(text, exc.reason, "timestamp") from None
        if type(day) is not dt.date:
            raise DateError(text, "its day or month is unknown", "timestamp")
        midnight = dt.datetime(day.year, day.month, day.day)
        utc: dt.datetime | None = midnight
        if convert is not None:
            end = midnight.replace(hour=23, minute=59, second=59)
            try:
                utc = convert(midnight)
                if end - convert(end) != midnight - utc:
                    utc = None  # the clocks change that day
            except (OverflowError, ValueError):
                raise DateError(text, "out of range in UTC", "timestamp") from None
        info = (midnight, utc)
        if len(days) < MEMO_SIZE:
            days[date_text] = info
        return info

    def clock_of(time_text: str, text: str) -> dt.timedelta | None:
        found = rule._time(time_text, text)
        since = None
        if found is not None:
            hour, minute, second, micro = found
            since = dt.timedelta(hours=hour, minutes=minute, seconds=second, microseconds=micro)
        if len(clocks) < MEMO_SIZE:
            clocks[time_text] = since
        return since

    def parse(text: str) -> dt.datetime:
        if not isinstance(text, str):
            raise DateError(text, "not text", "timestamp")
        s = text.strip()
        date_text, since = s, zero
        head, sep, tail = s.rpartition(" ")
        if not sep:
            head, sep, tail = s.rpartition("T")
        if sep:
            found = clocks.get(tail, _NOT_A_TIME)
            if found is _NOT_A_TIME:
                found = clock_of(tail, text)
            if found is not None:
                since = found  # type: ignore[assignment]
                date_text = head.rstrip()
        info = days.get(date_text)
        if info is None:
            info = day_of(date_text, text)
        midnight, utc = info
        try:
            if utc is not None:
                return utc + since
            assert convert is not None
            return convert(midnight + since)
        except (OverflowError, ValueError):
            raise DateError(text, "out of range in UTC", "timestamp") from None

    return parse


def datetime_parser(
    rule: DateRule = DEFAULT, zone: str | None = "Europe/London"
) -> Callable[[str], dt.datetime]:
    """The memoised timestamp parser of ``rule`` for wall-clock times in ``zone``.

    A timestamp is a date in one of ``rule.formats``, then optionally spaces (or ``T``) and a
    time in one of ``rule.times``; a date alone is midnight. The result is naive UTC: the wall
    time converted from ``zone`` (``Europe/London`` by :func:`london_to_utc`, any other IANA
    zone by the tz database, both reading a repeated hour as its first occurrence), or taken
    as it is when ``zone`` is None. A day or month that is unknown is an error whatever
    ``rule.unknown`` says: a timestamp needs a whole date.

    Raises:
        DateRuleError: an unknown time zone.
    """
    parsers = rule._timestamps
    parser = parsers.get(zone)
    if parser is None:
        parser = parsers[zone] = _timestamp_parser(rule, zone)
    return parser


def parse_datetime(
    text: str, rule: DateRule = DEFAULT, zone: str | None = "Europe/London"
) -> dt.datetime:
    """Read one timestamp under ``rule`` to naive UTC (see :func:`datetime_parser`).

    Raises:
        DateError: the text is no timestamp; the message quotes it.
        DateRuleError: an unknown time zone.
    """
    return datetime_parser(rule, zone)(text)
