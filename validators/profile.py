"""Profiling a source table: what a team must know about legacy data before writing mappings.

One streaming pass over the rows (any extractor's batches: a database table or a file), with
bounded memory per column: null and blank counts, distinct values (exact up to
:data:`DISTINCT_CAP`, then "more than"), the values of coded fields (few distinct values) with
their counts, the *shapes* of text values (digits as ``9``, letters as ``A``: ``99/99/99`` and
``99-AAA-9999`` are two date formats) and the placeholder values legacy systems use for "not
known" (``UNKNOWN``, ``NFA``, ``00/00/1971`` ...).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

#: Distinct values counted exactly per column; beyond it the profile says "more than".
DISTINCT_CAP = 1000
#: A column with at most this many distinct values is a coded field: its values are listed.
CODED_MAX = 30
#: Shapes kept per column (the commonest).
SHAPES_SHOWN = 8

#: Values that stand for "not known" in legacy systems (compared upper-cased, trimmed).
PLACEHOLDERS = frozenset(
    {"UNKNOWN", "UNK", "NFA", "N/A", "NA", "NONE", "NULL", "TBC", "TBA", "-", "?", "XXX", "NK"}
)
_PLACEHOLDER_DATE = re.compile(r"^(00[/-]00[/-][0-9]{2,4}|0000-00-00|01/01/1900|1900-01-01)$")
_YEAR = re.compile(r"(?<=[/-])[0-9]{2,4}$")
_DIGITS = re.compile(r"[0-9]")
_LETTERS = re.compile(r"[A-Za-z]")
_RUNS = re.compile(r"(A{4,}|9{5,})")


def shape(value: str) -> str:
    """A value's shape: digits as 9, letters as A, long runs shortened (``AAAA+``)."""
    s = _LETTERS.sub("A", _DIGITS.sub("9", value.strip()))
    return _RUNS.sub(lambda m: m.group(1)[:4] + "+", s)


@dataclass
class ColumnProfile:
    """What one column holds."""

    name: str
    rows: int = 0
    nulls: int = 0
    blanks: int = 0
    distinct: set[Any] = field(default_factory=set)
    capped: bool = False
    values: Counter[Any] = field(default_factory=Counter)
    shapes: Counter[str] = field(default_factory=Counter)
    placeholders: Counter[str] = field(default_factory=Counter)
    types: Counter[str] = field(default_factory=Counter)

    def add(self, value: Any) -> None:
        self.rows += 1
        if value is None:
            self.nulls += 1
            return
        self.types[type(value).__name__] += 1
        if not self.capped:
            self.distinct.add(value)
            self.values[value] += 1
            if len(self.distinct) > DISTINCT_CAP:
                self.capped = True
                self.values.clear()
        if isinstance(value, str):
            text = value.strip()
            if not text:
                self.blanks += 1
                return
            if len(self.shapes) < 10_000 or text in self.shapes:
                self.shapes[shape(text)] += 1
            upper = text.upper()
            if upper in PLACEHOLDERS:
                self.placeholders[text] += 1
            elif _PLACEHOLDER_DATE.match(upper):  # 00/00/1971: counted by form, not by year
                self.placeholders[_YEAR.sub("yyyy", text)] += 1

    @property
    def coded(self) -> bool:
        return not self.capped and 0 < len(self.distinct) <= CODED_MAX

    def to_dict(self) -> dict[str, Any]:
        return {
            "column": self.name,
            "rows": self.rows,
            "nulls": self.nulls,
            "blanks": self.blanks,
            "distinct": min(len(self.distinct), DISTINCT_CAP),
            "distinct_more_than_cap": self.capped,
            "types": dict(self.types),
            "coded_values": (
                {str(k): v for k, v in self.values.most_common()} if self.coded else None
            ),
            "shapes": dict(self.shapes.most_common(SHAPES_SHOWN)),
            "placeholders": dict(self.placeholders.most_common(SHAPES_SHOWN)),
        }


@dataclass
class TableProfile:
    """What one table holds, column by column."""

    source: str
    table: str
    rows: int
    columns: list[ColumnProfile]

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "table": self.table,
            "rows": self.rows,
            "columns": [c.to_dict() for c in self.columns],
        }


def profile_rows(
    source: str, table: str, columns: Sequence[str], batches: Iterable[Sequence[Sequence[Any]]]
) -> TableProfile:
    """Profile a table from its batches of rows (one pass)."""
    cols = [ColumnProfile(name) for name in columns]
    rows = 0
    for batch in batches:
        rows += len(batch)
        for i, c in enumerate(cols):
            add = c.add
            for row in batch:
                add(row[i])
    return TableProfile(source, table, rows, cols)


def format_profile(profiles: Sequence[TableProfile]) -> str:
    """A readable profile: per table, per column, what a mapping author needs to see."""
    out: list[str] = []
    for p in profiles:
        out.append(f"{p.source}.{p.table}: {p.rows:,} rows")
        for c in p.columns:
            d = c.to_dict()
            distinct = f"more than {DISTINCT_CAP:,}" if c.capped else f"{d['distinct']:,}"
            distinct += " distinct"
            null_share = f"{c.nulls / c.rows:.1%}" if c.rows else "-"
            line = f"  {c.name:<24} nulls {c.nulls:>9,} ({null_share}), {distinct}"
            if c.blanks:
                line += f", {c.blanks:,} blank"
            out.append(line)
            if d["coded_values"]:
                codes = ", ".join(f"{k!r} {v:,}" for k, v in d["coded_values"].items())
                out.append(f"      coded: {codes}")
            shown = sum(d["shapes"].values())
            judged = c.rows - c.nulls - c.blanks
            # a few shapes covering most values are formats; many are free text (MO, names)
            if len(d["shapes"]) > 1 and not d["coded_values"] and shown >= 0.8 * judged:
                shapes = ", ".join(f"{k!r} {v:,}" for k, v in d["shapes"].items())
                out.append(f"      shapes: {shapes}")
            if d["placeholders"]:
                found = ", ".join(f"{k!r} {v:,}" for k, v in d["placeholders"].items())
                out.append(f"      placeholders: {found}")
        out.append("")
    return "\n".join(out).rstrip()
