"""Normalise a batch column by column: the hot loop of reconciliation.

A batch of rows is transposed once, then each compared field is turned into canonical text for
the whole column at a time, through a memo keyed on the raw value: codes, flags, dates and
statuses repeat across a million records, so most values cost one dictionary lookup done in C.
A column whose values hardly repeat (timestamps, references) stops being memoised after its
first batch, so the memo never grows with the records.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any

from continuity.domain.digest import canonical
from reconcile.normalisers import Normaliser, PartialDate, Unreadable
from reconcile.spec import Rule

SEP = "\x1f"  # between fields of the canonical text
ESCAPE = str.maketrans({"\n": "\\n", "\r": "\\r", "\t": "\\t", SEP: " "})
#: A column is memoised while it has at most this share of distinct values in its first batch
#: (dates, about half distinct in a batch, still gain; timestamps and references do not).
MEMO_SHARE = 0.8
MEMO_LIMIT = 200_000


def text(value: Any) -> str:
    """Canonical text of a normalised value, safe inside one spill line."""
    if type(value) is str:
        return value if value.isprintable() else value.translate(ESCAPE)
    if isinstance(value, Unreadable):
        return "\x00!" + value.raw.translate(ESCAPE)
    if isinstance(value, PartialDate):
        return str(value)
    return canonical(value)


class _TextMemo(dict[Any, str]):
    """raw value -> canonical text, computed on a miss (``dict.__missing__``)."""

    def __init__(self, norm: Normaliser) -> None:
        super().__init__()
        self.norm = norm

    def __missing__(self, raw: Any) -> str:
        out = text(self.norm(raw))
        if len(self) < MEMO_LIMIT:
            self[raw] = out
        return out


class ColumnText:
    """One compared field of a batch as canonical texts: a constant, one column or several."""

    def __init__(self, norm: Normaliser, positions: Sequence[int], const: Any = None) -> None:
        self.norm = norm
        self.positions = list(positions)
        self.const = text(norm(const)) if not positions else None
        self.memo = _TextMemo(norm)
        self.memoised = True
        self.batches = 0

    def __call__(self, columns: list[tuple[Any, ...]], n: int) -> list[str]:
        if self.const is not None:
            return [self.const] * n
        values: Any = (
            columns[self.positions[0]]
            if len(self.positions) == 1
            else list(zip(*(columns[p] for p in self.positions), strict=True))
        )
        if not self.memoised:
            norm = self.norm
            texts = getattr(norm, "texts", None)
            if texts is not None:
                return texts(values, lambda v: text(norm(v)))
            return [text(norm(v)) for v in values]
        try:
            out = list(map(self.memo.__getitem__, values))
        except TypeError:  # an unhashable value (a memoryview): no memo for this column
            self.memoised = False
            return self(columns, n)
        self.batches += 1
        # A normaliser that reads a whole column inline (timestamps) beats the memo unless
        # nearly every value repeats; another gains from it as long as a fair share does.
        share = MEMO_SHARE if getattr(self.norm, "texts", None) is None else 1 - MEMO_SHARE
        if self.batches == 1 and len(self.memo) > share * n and n >= 1000:
            self.memoised = False  # high cardinality: the memo would only cost
            self.memo.clear()
        return out


class RuleVerdicts:
    """(exclusion rule, deferral rule) names per row, memoised on the raw attribute values."""

    def __init__(
        self,
        exclude: Sequence[Rule],
        defer: Sequence[Rule],
        readers: list[tuple[str, Normaliser, list[int], Any]],
        as_of: dt.date,
        decide: Callable[[Sequence[Rule], dict[str, Any], dt.date], Rule | None],
    ) -> None:
        self.exclude, self.defer, self.readers, self.as_of = exclude, defer, readers, as_of
        self.decide = decide
        self.memo: dict[tuple[Any, ...], tuple[str | None, str | None]] = {}

    @property
    def active(self) -> bool:
        return bool(self.exclude or self.defer)

    def __call__(
        self, columns: list[tuple[Any, ...]], n: int
    ) -> list[tuple[str | None, str | None]]:
        if not self.active:
            return [(None, None)] * n
        positions = [p for _, _, ps, _ in self.readers for p in ps]
        raw_rows = zip(*(columns[p] for p in positions), strict=True)
        memo, out = self.memo, []
        for raw in raw_rows:
            try:
                verdict = memo.get(raw)
            except TypeError:  # an unhashable value (a memoryview): decide without the memo
                out.append(self.verdict(raw))
                continue
            if verdict is None:
                verdict = self.verdict(raw)
                if len(memo) < MEMO_LIMIT:
                    memo[raw] = verdict
            out.append(verdict)
        return out

    def verdict(self, raw: tuple[Any, ...]) -> tuple[str | None, str | None]:
        attrs: dict[str, Any] = {}
        i = 0
        for name, norm, ps, const in self.readers:
            if not ps:
                value = const
            elif len(ps) == 1:
                value = raw[i]
            else:
                value = tuple(raw[i : i + len(ps)])
            attrs[name] = norm(value)
            i += len(ps)
        ex = self.decide(self.exclude, attrs, self.as_of)
        de = self.decide(self.defer, attrs, self.as_of)
        return (ex.name if ex else None), (de.name if de else None)


def joined(texts: list[list[str]], n: int) -> list[str]:
    """The canonical text of each row: its fields' texts joined."""
    if not texts:
        return [""] * n
    return list(map(SEP.join, zip(*texts, strict=True)))
