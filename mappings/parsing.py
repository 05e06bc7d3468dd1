"""Mapping steps built on the domain's parsers: dates, date-times and postcodes.

The same parsers serve reconciliation (``continuity.domain``), so a date the migration reads one
way is never judged by reconciliation read another way.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from mappings.operations import ArgumentProblem, Reject, Step

_UNKNOWN = ("reject", "first", "year", "null")


def _rule(args: Any) -> tuple[Any, str | None, str]:
    """The domain's DateRule for a step's arguments, its time zone and the unknown-date mode."""
    from continuity.domain import dates

    spec = dict(args or {})
    unknown = spec.pop("unknown", "reject")
    unknown = "null" if unknown is None else unknown  # YAML's bare null
    if unknown not in _UNKNOWN:
        raise ArgumentProblem(f"unknown is one of {', '.join(_UNKNOWN)}")
    zone = spec.pop("zone", "Europe/London")
    kwargs: dict[str, Any] = {}
    for name in ("formats", "times"):
        if name in spec:
            value = spec.pop(name)
            if not isinstance(value, list) or not all(isinstance(f, str) for f in value):
                raise ArgumentProblem(f"{name} is a list of formats")
            kwargs[name] = tuple(value)
    for name in ("pivot", "century"):
        if name in spec:
            kwargs[name] = spec.pop(name)
    if "not_after" in spec:
        value = spec.pop("not_after")
        try:
            kwargs["not_after"] = (
                dt.date.today() if value == "$today" else dt.date.fromisoformat(str(value))
            )
        except ValueError:
            raise ArgumentProblem(f"not_after is a date or $today, not {value!r}") from None
    if spec:
        raise ArgumentProblem(f"unknown argument(s) {', '.join(sorted(spec))}")
    # "null" reads an unknown day/month as known to its year, then carries nothing.
    mode = "year" if unknown == "null" else unknown
    try:
        rule = dates.DateRule(unknown=mode, **kwargs)
    except ValueError as exc:  # DateRuleError: a bad format or value
        raise ArgumentProblem(str(exc)) from None
    return rule, zone, unknown


def parse_date_step(args: Any) -> Step:
    """``parse_date``: date text to a date (docs/dates.md has the rule's options).

    ``unknown`` decides what ``00/00/1971`` becomes: ``reject`` (the record is quarantined),
    ``year`` (a date known to its year, for ``is_partial``), ``first`` (1 January 1971,
    estimated) or ``null``.
    """
    from continuity.domain import dates

    rule, _, unknown = _rule(args)
    parse = dates.date_parser(rule)
    partial = dates.PartialDate

    def parse_date(v: Any) -> Any:
        if v is None:
            return None
        if isinstance(v, dt.datetime):
            return v.date()
        if isinstance(v, dt.date):
            return v
        text = str(v).strip()
        if not text:
            return None
        try:
            day = parse(text)
        except ValueError as exc:
            raise Reject(str(exc)) from None
        if unknown == "null" and isinstance(day, partial):
            return None
        return day

    return parse_date


def parse_datetime_step(args: Any) -> Step:
    """``parse_datetime``: local date-time text to naive UTC (``zone: null`` keeps it as is)."""
    from continuity.domain import dates

    rule, zone, _ = _rule(args)
    try:
        parse = dates.datetime_parser(rule, zone)
    except ValueError as exc:
        raise ArgumentProblem(str(exc)) from None

    def parse_datetime(v: Any) -> Any:
        if v is None or isinstance(v, dt.datetime):
            return v
        text = str(v).strip()
        if not text:
            return None
        try:
            return parse(text)
        except ValueError as exc:
            raise Reject(str(exc)) from None

    return parse_datetime


def is_partial_step(args: Any) -> Step:
    """``is_partial``: whether a parsed date is not known to the day (``unknown: year/first``)."""
    from continuity.domain import dates

    estimated = (dates.PartialDate, dates.EstimatedDate)

    def is_partial(v: Any) -> Any:
        return None if v is None else isinstance(v, estimated)

    return is_partial


def postcode_step(args: Any) -> Step:
    """``postcode``: a UK postcode in its canonical form (``m11ae`` -> ``M1 1AE``); given several
    lines (a ``lookup`` of address lines), the one postcode written in them."""
    from continuity.domain import addresses

    invalid = (args or {}).get("invalid", "keep") if isinstance(args, dict) else "keep"
    invalid = "null" if invalid is None else invalid  # YAML's bare null
    if invalid not in ("keep", "null", "reject"):
        raise ArgumentProblem("invalid is one of keep, null, reject")

    def postcode(v: Any) -> Any:
        if v is None:
            return None
        if isinstance(v, tuple | list):
            found = addresses.find_postcode(tuple(x for x in v if isinstance(x, str)))
            if found is None and invalid == "reject" and any(v):
                raise Reject(f"no postcode in {v!r}")
            return found
        found = addresses.normalise_postcode(str(v))
        if found is not None:
            return found
        if invalid == "reject":
            raise Reject(f"not a postcode: {v!r}")
        return None if invalid == "null" else v

    return postcode
