"""Normalisers: named, composable value transformations applied to a compared field on one side.

A survival spec names them (``normalise: [trim, upper]`` or ``{date: {century: 1900}}``); this
module builds each into a plain function and composes a field's list into one memoised chain,
because the same few thousand dates, codes and names recur across a million records.

A value a normaliser cannot read (``31/02/19``) becomes :class:`Unreadable`: it is compared like
any other value (so it can never silently equal a real one) and shows the raw text in a diff.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from pathlib import Path
from typing import Any

from continuity.domain.dates import (
    DateError,
    DateRule,
    PartialDate,
    date_parser,
    datetime_parser,
    london_to_utc,
)
from continuity.domain.names import name_key

Normaliser = Callable[[Any], Any]

_ZERO_DATES = frozenset({"0000-00-00", "0000-00-00 00:00:00"})


class UnreadableValue(ValueError):
    """Raised inside a normaliser for a value it cannot read."""


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A source or target value no normaliser could read; equal only to the same raw text."""

    raw: str

    def __str__(self) -> str:
        return f"<unreadable: {self.raw}>"


# --- builders: each takes the spec's arguments and returns the normaliser -------------------


def _trim() -> Normaliser:
    def trim(v: Any) -> Any:
        if isinstance(v, str):
            return " ".join(v.split()) or None
        return v

    return trim


def _upper() -> Normaliser:
    return lambda v: v.upper() if isinstance(v, str) else v


def _lower() -> Normaliser:
    return lambda v: v.casefold() if isinstance(v, str) else v


def _null_if(*values: Any) -> Normaliser:
    """Placeholders meaning "not known" (``NFA``, ``UNKNOWN``, empty text) become NULL."""
    blanks = {str(x).strip().upper() for x in values}

    def null_if(v: Any) -> Any:
        if v is None or (isinstance(v, str) and v.strip().upper() in blanks):
            return None
        return v

    return null_if


def _name_key() -> Normaliser:
    """Cleansed name for comparison: no diacritics, case, apostrophes, hyphens or spaces."""
    return lambda v: name_key(v) if isinstance(v, str) else v


def _whitespace_case() -> Normaliser:
    """Case- and whitespace-insensitive text that keeps every letter (diacritics included)."""

    def whitespace_case(v: Any) -> Any:
        if not isinstance(v, str):
            return v
        return " ".join(v.split()).casefold() or None

    return whitespace_case


@lru_cache(maxsize=64)  # one per distinct (pivot, century) in the specs
def _reader(pivot: int, century: int | None) -> Callable[[str], dt.date | PartialDate]:
    """The shared domain parser (memoised per rule) for a ``date`` normaliser's arguments."""
    parse = date_parser(DateRule(pivot=pivot, century=century, unknown="year"))

    def read(text: str) -> dt.date | PartialDate:
        try:
            day = parse(text)
        except DateError:
            raise UnreadableValue(text) from None
        if type(day) is PartialDate and day.month is not None:
            # A known month with an unknown day: the specs compare a date or a year, nothing
            # between, so it stays unreadable rather than silently becoming its year.
            raise UnreadableValue(text)
        return day

    return read


def parse_date(text: str, pivot: int = 70, century: int | None = None) -> dt.date | PartialDate:
    """Read the date forms old systems write, with the parser every stage shares.

    ``YYYY-MM-DD``; ``DD/MM/YY`` (two-digit years below ``pivot`` are 20YY, unless ``century``
    fixes it, as for dates of birth); ``DD/MM/YYYY``; ``DD-MON-YYYY``; and ``00/00/YYYY``, a
    date known only to its year (:mod:`continuity.domain.dates`, ``unknown="year"``).
    """
    return _reader(pivot, century)(text)


def _whole(name: str, value: Any) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise ValueError(f"{name} must be a whole number, not {value!r}")


def _date(pivot: int = 70, century: int | None = None) -> Normaliser:
    _whole("pivot", pivot)
    _whole("century", century)
    read = _reader(pivot, century)

    def date(v: Any) -> Any:
        if v is None:
            return None
        if isinstance(v, dt.datetime):
            return v.date()
        if isinstance(v, dt.date):
            return v
        text = str(v).strip()
        if not text or text in _ZERO_DATES:
            return None
        if len(text) > 10 and text[4] == "-" and text[10] in " T":  # a timestamp as text
            text = text[:10]
        return read(text)

    return date


#: "HH:MM" -> (the same wall time an hour earlier, whether that falls on the day before)
_HOUR_EARLIER = {
    f"{h:02d}:{m:02d}": (f"{(h - 1) % 24:02d}:{m:02d}", h == 0)
    for h in range(24)
    for m in range(60)
}


def _datetime(pivot: int = 70, local: str | None = None) -> Normaliser:
    """Read a timestamp (text ``<date> HH:MM[:SS]`` or a datetime) to the minute, as text.

    ``local: Europe/London`` converts wall-clock times to UTC, as legacy systems stored them.
    The result is ``YYYY-MM-DD HH:MM``: every side's timestamps compare as the same text.

    Timestamps hardly repeat but their dates do: each date is read once (with whether London
    was on summer time all that day), and a time of day is then only shifted as text.
    """
    _whole("pivot", pivot)
    if local not in (None, "Europe/London"):
        raise ValueError(f"unsupported time zone {local!r}: only Europe/London")
    read_date = _date(pivot)
    # The clock-change days and unusual times go through the shared timestamp parser.
    parse = datetime_parser(DateRule(pivot=pivot), local)
    days: dict[str, tuple[str, str, int]] = {}  # date text -> (ISO, day before, offset kind)

    def day_of(date_text: str) -> tuple[str, str, int]:
        info = days.get(date_text)
        if info is None:
            day = read_date(date_text)
            if not isinstance(day, dt.date):
                raise UnreadableValue(date_text)
            start = london_to_utc(dt.datetime(day.year, day.month, day.day))
            end = london_to_utc(dt.datetime(day.year, day.month, day.day, 23, 59))
            gap = (dt.datetime(day.year, day.month, day.day) - start).total_seconds()
            same = gap == (dt.datetime(day.year, day.month, day.day, 23, 59) - end).total_seconds()
            kind = (1 if gap == 3600 else 0) if same else 2  # 2: the clocks change that day
            info = (day.isoformat(), (day - dt.timedelta(days=1)).isoformat(), kind)
            if len(days) < 100_000:
                days[date_text] = info
        return info

    def slow(text: str) -> str:
        try:
            return parse(text).isoformat(" ", "minutes")
        except DateError:
            raise UnreadableValue(text) from None

    def datetime_(v: Any) -> Any:
        if v is None:
            return None
        if isinstance(v, dt.datetime):
            if v.tzinfo is not None:  # an aware timestamp (timestamptz): compare in UTC
                return v.astimezone(dt.UTC).replace(tzinfo=None).isoformat(" ", "minutes")
            return (london_to_utc(v) if local else v).isoformat(" ", "minutes")
        text = str(v).strip()
        if not text or text in _ZERO_DATES:
            return None
        if len(text) > 10 and text[10] == "T":
            text = f"{text[:10]} {text[11:]}"
        date_text, _, time_text = text.partition(" ")
        hhmm = time_text[:5] if time_text else "00:00"
        if hhmm not in _HOUR_EARLIER or (len(time_text) > 5 and time_text[5] != ":"):
            return slow(text)
        try:
            iso, before, kind = day_of(date_text)
        except UnreadableValue:
            raise UnreadableValue(text) from None
        if not local or kind == 0:
            return f"{iso} {hhmm}"
        if kind == 2:
            return slow(text)
        earlier, back = _HOUR_EARLIER[hhmm]
        return f"{before if back else iso} {earlier}"

    def texts(values: Any, fallback: Callable[[Any], str]) -> list[str]:
        """A column's canonical texts: the common case (a text timestamp of a date read
        before, on a day without a clock change) inline, the rest through ``fallback``."""
        out: list[str] = []
        append = out.append
        earlier_of = _HOUR_EARLIER
        get = days.get
        null = fallback(None)
        for v in values:
            if v is None:
                append(null)
                continue
            if type(v) is str:
                date_text, _, time_text = v.partition(" ")
                hhmm = time_text[:5]
                info = get(date_text)
                if (
                    info is not None
                    and hhmm in earlier_of
                    and (len(time_text) == 5 or time_text[5] == ":")
                ):
                    iso, before, kind = info
                    if not local or kind == 0:
                        append(f"{iso} {hhmm}")
                        continue
                    if kind == 1:
                        earlier, back = earlier_of[hhmm]
                        append(f"{before if back else iso} {earlier}")
                        continue
            append(fallback(v))
        return out

    datetime_.texts = texts  # type: ignore[attr-defined]
    return datetime_


_TRUE = frozenset({"Y", "YES", "1", "TRUE", "T"})
_FALSE = frozenset({"N", "NO", "0", "FALSE", "F"})


def _boolean(empty: bool | None = None) -> Normaliser:
    """Y/N, 1/0, true/false to a boolean; empty text to ``empty`` (default NULL)."""

    def boolean(v: Any) -> Any:
        if v is None or isinstance(v, bool):
            return empty if v is None else v
        if isinstance(v, int):
            return bool(v)
        if isinstance(v, bytes) and len(v) == 1:  # MariaDB BIT(1)
            return v != b"\x00"
        text = str(v).strip().upper()
        if not text:
            return empty
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise UnreadableValue(str(v))

    return boolean


def _integer() -> Normaliser:
    def integer(v: Any) -> Any:
        if v is None or isinstance(v, int):
            return int(v) if isinstance(v, bool) else v
        text = str(v).strip()
        if not text:
            return None
        try:
            return int(text)
        except ValueError:
            pass
        try:  # 3.0 from a REAL or NUMERIC column is the whole number 3
            number = Decimal(text)
        except InvalidOperation as exc:
            raise UnreadableValue(text) from exc
        if number != number.to_integral_value():
            raise UnreadableValue(text)
        return int(number)

    return integer


def _text_digest() -> Normaliser:
    """Length and SHA-256 of a text: truncation and encoding damage show, the text does not."""

    def text_digest(v: Any) -> Any:
        if v is None:
            return None
        data = str(v).encode("utf-8")
        return f"{len(str(v))}:{hashlib.sha256(data).hexdigest()[:16]}"

    return text_digest


def _map(values: Mapping[str, Any] | None = None, unmapped: str = "flag") -> Normaliser:
    """Translate codes through an inline table; an unmapped code is flagged, never passed on."""
    table = {str(k): v for k, v in (values or {}).items()}
    return _lookup(table, unmapped)


def _lookup(table: Mapping[str, Any], unmapped: str) -> Normaliser:
    if unmapped not in ("flag", "keep"):
        raise ValueError("unmapped must be 'flag' or 'keep'")

    def lookup(v: Any) -> Any:
        if v is None:
            return None
        key = str(v).strip()
        if key in table:
            return table[key]
        if unmapped == "keep":
            return v
        raise UnreadableValue(f"unmapped code {key}")

    return lookup


def _crosswalk(
    file: str, column_from: str = "from", column_to: str = "to", **kw: Any
) -> Normaliser:
    """Translate codes through a versioned CSV code table (``from,to`` columns by default)."""
    base: Path = kw.pop("_base")
    path = (base / file).resolve()
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise ValueError(f"cannot read code table {path}: {exc.strerror}") from exc
    if rows and (column_from not in rows[0] or column_to not in rows[0]):
        raise ValueError(f"code table {path} needs columns {column_from!r} and {column_to!r}")
    table = {r[column_from].strip(): r[column_to].strip() for r in rows}
    return _lookup(table, kw.pop("unmapped", "flag"))


def _dob() -> Normaliser:
    """A date of birth, or its year alone when it is estimated or year-only.

    Takes a date (or date text), or a pair ``(date, estimated flag)`` read from two columns.
    """
    read = _date(century=1900)

    def dob(v: Any) -> Any:
        estimated = False
        if isinstance(v, tuple):
            v, flag = v
            estimated = bool(flag) and str(flag).upper() not in _FALSE
        day = read(v)
        if day is None or isinstance(day, PartialDate):
            return day
        return PartialDate(day.year) if estimated else day

    return dob


def _ended_by(as_of: dt.date | str) -> Normaliser:
    """An end date on or before ``as_of`` (usually ``$as_of``) reads ``ENDED``; otherwise NULL.

    Compares a system that shows only live records (a warning in a WARN column) with one that
    keeps end dates: the warning must still be live in the target.
    """
    limit = as_of if isinstance(as_of, dt.date) else dt.date.fromisoformat(str(as_of))
    read = _date()

    def ended_by(v: Any) -> Any:
        day = read(v)
        if isinstance(day, dt.date) and day <= limit:
            return f"ENDED {day.isoformat()}"
        return None

    return ended_by


BUILDERS: dict[str, Callable[..., Normaliser]] = {
    "ended_by": _ended_by,
    "trim": _trim,
    "upper": _upper,
    "lower": _lower,
    "null_if": _null_if,
    "name_key": _name_key,
    "whitespace_case": _whitespace_case,
    "date": _date,
    "datetime": _datetime,
    "boolean": _boolean,
    "integer": _integer,
    "text_digest": _text_digest,
    "map": _map,
    "crosswalk": _crosswalk,
    "dob": _dob,
}
#: Normalisers whose spec entry is a list of values rather than keyword arguments.
_POSITIONAL = frozenset({"null_if"})
#: Normalisers that read files relative to the spec.
_FILE_BASED = frozenset({"crosswalk"})


def build(name: str, args: Any, base: Path) -> Normaliser:
    """Build one normaliser; raises ValueError/TypeError with a readable message on bad args."""
    builder = BUILDERS[name]
    if name in _FILE_BASED:
        return builder(**{**(args or {}), "_base": base})
    if name in _POSITIONAL:
        return builder(*(args if isinstance(args, list) else [] if args is None else [args]))
    return builder(**(args or {}))


def chain(steps: list[Normaliser]) -> Normaliser:
    """Compose ``steps`` into one function; a value a step cannot read becomes Unreadable.

    Memoisation is the caller's (a column's values, :mod:`reconcile.columns`).
    """
    if len(steps) == 1:
        (step,) = steps

        def one(value: Any) -> Any:
            try:
                return step(value)
            except UnreadableValue:
                return Unreadable(str(value))

        if hasattr(step, "texts"):  # a whole column at once (see reconcile.columns)
            one.texts = step.texts  # type: ignore[attr-defined]
        return one

    def apply(value: Any) -> Any:
        raw = value
        try:
            for step in steps:
                value = step(value)
        except UnreadableValue:
            return Unreadable(str(raw))
        return value

    return apply
