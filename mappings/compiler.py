"""Compile a mapping, against the real source and target columns, into one function per batch.

Compilation resolves every column name to a position, builds every operation once and checks
what only the databases can tell (a source column that does not exist, a field that is not a
target column, a NOT NULL target column nobody fills) before the first row is read. The result
maps a batch of source rows into target rows, crosswalk entries, quarantined records and
excluded records in one tight loop: a mapping is one stage, whatever its number of fields.
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from operator import itemgetter
from typing import Any, Protocol

from continuity.domain.errors import MappingError
from continuity.domain.keys import target_key, target_key_maker
from continuity.domain.yamlsource import raise_all
from mappings import operations
from mappings.operations import Head, Reject, Step
from mappings.spec import Condition, MappingSpec, RecordRule, SourceMapping, resolve_value
from mappings.spec import Step as StepSpec


class KeyIndex(Protocol):
    """Where source records went: the crosswalk, as the run knows it so far."""

    def target_of(self, source: str, table: str, key: str) -> str | None:
        """The target key of ``source``'s record ``key`` of ``table``, or None if it has none."""

    def fate_of(self, source: str, table: str, key: str) -> tuple[str, str] | None:
        """Why a record has no target key: ("rejected" or "excluded", reason), or None if it
        is not known at all."""

    def copy_fate(self, source: str, table: str, key: str) -> tuple[str, str] | None:
        """How the newer copy of a record went: ("loaded", its target key), ("excluded" or
        "rejected", reason), or None if it has no newer copy."""


class NoKeys:
    """A key index that knows no record (mappings with no ``ref``)."""

    def target_of(self, source: str, table: str, key: str) -> str | None:
        return None

    def fate_of(self, source: str, table: str, key: str) -> tuple[str, str] | None:
        return None

    def copy_fate(self, source: str, table: str, key: str) -> tuple[str, str] | None:
        return None


@dataclass
class BatchOut:
    """What a batch of source rows became."""

    rows: list[tuple[Any, ...]] = field(default_factory=list)
    crosswalk: list[tuple[Any, ...]] = field(default_factory=list)
    quarantine: list[tuple[str, str, str, str]] = field(default_factory=list)
    excluded: list[tuple[str, str, str, str]] = field(default_factory=list)
    #: Records that are newer copies of another source's record: (that source, its table,
    #: its key, "loaded" / "rejected" / "excluded", the target key or the reason).
    copies: list[tuple[str, str, str, str, str]] = field(default_factory=list)
    #: Field values asked for by ``map_batch(collect=...)``: (source key, values).
    collected: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)
    #: Every record that reached the target (its own row, or another's): (source, table, key).
    placed: list[tuple[str, str, str]] = field(default_factory=list)
    #: Rows ``row_when`` does not choose: written only where no row of that key exists yet
    #: (a merged person whose cluster's first record is not in this wave stands in for it).
    fallback_rows: list[tuple[Any, ...]] = field(default_factory=list)

    def clear(self) -> None:
        self.fallback_rows.clear()
        self.placed.clear()
        self.collected.clear()
        self.copies.clear()
        self.rows.clear()
        self.crosswalk.clear()
        self.quarantine.clear()
        self.excluded.clear()


class _Final(Reject):
    """A rejection whose message is already the quarantine reason (a step declared it)."""


def key_text(parts: Sequence[Any]) -> str:
    """A (composite) source key as the crosswalk and quarantine hold it: parts joined by ``|``."""
    return "|".join("" if p is None else str(p) for p in parts)


class Rejected:
    """A field's value that could not be carried: the reason, in place of the value.

    ``excluded`` marks a record that follows its excluded parent (a link to a crime MoPI
    excludes): it is excluded with it, not quarantined.
    """

    __slots__ = ("excluded", "reason")

    def __init__(self, reason: str, excluded: bool = False) -> None:
        self.reason = reason
        self.excluded = excluded


class _Excluded(Reject):
    """The record follows a referenced record that was excluded."""


#: A field compiled to work on a whole batch: (rows, columns) -> one value per row, a value
#: that cannot be carried being a :class:`Rejected`.
ColumnFn = Callable[[Sequence[tuple[Any, ...]], list[tuple[Any, ...]]], Sequence[Any]]

#: The owner part of target keys made from field values (``identity``).
IDENTITY_OWNER = "="

#: Types whose equal values may be written differently (1 and 1.0), and so map differently.
_SPELLED = frozenset({float, decimal.Decimal})

#: Distinct values a field remembers before it starts again (bounds memory on wide columns).
MEMO_LIMIT = 50_000


@dataclass
class FieldColumn:
    """One compiled field and whether it produced a rejection in the batch just mapped."""

    name: str
    run: ColumnFn
    flag: list[bool]  # [True] while a rejection may be among its values

    def rejections(self, values: Sequence[Any]) -> list[tuple[int, Rejected]]:
        if not self.flag[0]:
            return []
        return [(j, v) for j, v in enumerate(values) if v.__class__ is Rejected]


@dataclass
class CompiledSource:
    """One source of one mapping, ready to run.

    Rows are mapped a batch at a time and a column at a time: a field that reads one column
    through pure steps is computed once per distinct value (legacy data repeats its codes,
    flags and dates endlessly), and the per-row work left is building the output tuples.
    """

    spec: MappingSpec
    mapping: SourceMapping
    columns: tuple[str, ...]
    target_columns: tuple[str, ...]
    _fields: list[FieldColumn]
    _out_index: list[int | None]  # per target column: index into field values, None = key, -1
    _key_getter: Callable[[tuple[Any, ...]], Any]
    _copy_getter: Callable[[tuple[Any, ...]], Any] | None
    _each: list[int] | None
    _rejects: list[tuple[RecordRule, RuleFn]]
    _excludes: list[tuple[RecordRule, RuleFn]]
    _row_when: RuleFn | None
    _identity: list[tuple[list[int], int | None, str, int | None]]
    keys: KeyIndex
    _names: list[str]

    @property
    def label(self) -> str:
        return self.mapping.label()

    def _records(
        self, rows: Sequence[tuple[Any, ...]]
    ) -> tuple[Sequence[tuple[Any, ...]], list[str]]:
        """The batch's records and their source keys (one per value for ``each``)."""
        getter = self._key_getter
        composite = len(self.mapping.key) > 1
        if self._each is None:
            if composite:
                return rows, [key_text(getter(r)) for r in rows]
            return rows, ["" if (k := getter(r)) is None else str(k) for r in rows]
        only = self.mapping.each.only if self.mapping.each else None
        names = (
            dict(zip(self._each, self.mapping.each.columns, strict=True))
            if self.mapping.each
            else {}
        )
        records: list[tuple[Any, ...]] = []
        keys: list[str] = []
        for raw in rows:
            base = key_text(getter(raw)) if composite else str(getter(raw))
            for i in self._each:
                v = raw[i]
                if isinstance(v, str):
                    v = v.strip()
                if v is None or v == "" or (only is not None and str(v) not in only):
                    continue
                records.append((*raw, v, names[i]))
                keys.append(f"{base}|{v}")
        return records, keys

    def map_batch(
        self,
        rows: Sequence[tuple[Any, ...]],
        out: BatchOut,
        collect: Sequence[str] | None = None,
        collect_dropped: bool = False,
    ) -> None:
        """Map ``rows`` (tuples in :attr:`columns` order) into ``out``.

        Every record ends in exactly one of ``out.rows`` (with its crosswalk entry),
        ``out.quarantine`` or ``out.excluded``, or, when another record carries it (a newer
        copy, a resolved person, ``row_when``), in ``out.crosswalk`` alone.

        Args:
            collect: fields whose values to keep in ``out.collected`` as (source key, values)
                for the records not dropped (resolution reads them).
        """
        m = self.mapping
        system, table, entity = m.source, m.as_table, self.spec.entity
        records, keys = self._records(rows)
        n = len(records)
        if n == 0:
            return
        cols = list(zip(*records, strict=True))
        values: list[Sequence[Any]] = []
        for f in self._fields:
            vs = f.run(records, cols)
            values.append(vs)
            cols.append(vs)  # type: ignore[arg-type]  # a later field may start from it
        # Dropped records: position -> ("rejected" or "excluded", reason).
        dropped: dict[int, tuple[str, str]] = {}
        for f, vs in zip(self._fields, values, strict=True):
            for j, rejected in f.rejections(vs):
                if j not in dropped:
                    dropped[j] = ("excluded" if rejected.excluded else "rejected", rejected.reason)
        for rule, test in self._rejects:
            for j in test(values, n):
                dropped.setdefault(j, ("rejected", rule.reason))
        for rule, test in self._excludes:
            for j in test(values, n):
                dropped.setdefault(j, ("excluded", f"{rule.name}: {rule.reason}"))
        no_row: set[int] = set()
        fallback: set[int] = set()  # rows written only where no record has written one
        if self._row_when is not None:
            fallback = set(range(n)).difference(self._row_when(values, n))
        owner = [system] * n
        identities = list(keys)
        rules = ["anchor"] * n
        scores: list[Any] | None = None
        given: dict[int, str] = {}  # records whose target key a newer copy decided
        if m.superseded_by is not None:
            # The newer copy decides first: its values are what the target holds, so this
            # record's own (older) values can neither quarantine nor exclude it.
            copy_fate = self.keys.copy_fate
            for j in range(n):
                fate = copy_fate(system, table, keys[j])
                if fate is None or fate[0] == "rejected":
                    continue  # no readable newer copy: this record is the one to carry
                if fate[0] == "excluded":
                    dropped[j] = fate
                else:
                    dropped.pop(j, None)
                    given[j] = fate[1]
                    no_row.add(j)
        copied: list[tuple[int, str]] = []
        if self._copy_getter is not None and m.copy_of is not None:
            copy_rule, other = f"precedence:{system}", m.copy_of.source
            for j, record in enumerate(records):
                copy = self._copy_getter(record)
                parts = copy if isinstance(copy, tuple) else (copy,)
                if all(p is not None and p != "" for p in parts):
                    identities[j], owner[j], rules[j] = key_text(parts), other, copy_rule
                    copied.append((j, identities[j]))
        if self._identity:
            for j in range(n):
                for number, (idx, rule_index, fixed_rule, score_index) in enumerate(self._identity):
                    same = [values[i][j] for i in idx]
                    if all(p is not None and p != "" for p in same):
                        identities[j] = key_text(same)
                        owner[j] = f"{IDENTITY_OWNER}{number}"
                        rules[j] = fixed_rule if rule_index is None else str(values[rule_index][j])
                        if score_index is not None:
                            if scores is None:
                                scores = [None] * n
                            scores[j] = values[score_index][j]
                        break
        target_keys: list[Any] = [None] * n
        if self.spec.key_column is not None:
            if self._copy_getter is None and not self._identity:
                target_keys = list(map(target_key_maker(entity, system), identities))
            else:
                target_keys = [
                    target_key(entity, o, k) for o, k in zip(owner, identities, strict=True)
                ]
            for j, tk in given.items():
                target_keys[j] = tk
            crosswalk = zip(
                repeat(system),
                repeat(table),
                keys,
                repeat(entity),
                target_keys,
                rules,
                repeat(None) if scores is None else scores,
            )
            if dropped:
                out.crosswalk += [x for j, x in enumerate(crosswalk) if j not in dropped]
            else:
                out.crosswalk += crosswalk
        if copied and m.copy_of is not None:
            where = m.copy_of
            for j, copy_key in copied:
                went = dropped.get(j) or ("loaded", target_keys[j])
                out.copies.append((where.source, where.table, copy_key, *went))
        for j, (how, reason) in dropped.items():
            (out.excluded if how == "excluded" else out.quarantine).append(
                (system, table, keys[j], reason)
            )
        if collect:
            at = [self._names.index(c) for c in collect]
            if collect_dropped:  # every record, a value that could not be carried as None
                out.collected += [
                    (keys[j], tuple(_carried(values[i][j]) for i in at)) for j in range(n)
                ]
            else:
                out.collected += [
                    (keys[j], tuple(values[i][j] for i in at)) for j in range(n) if j not in dropped
                ]
        out.placed += [(system, table, keys[j]) for j in range(n) if j not in dropped]
        skip = dropped.keys() | no_row
        nothing = [None] * n
        out_cols = [
            target_keys if i is None else values[i] if i >= 0 else nothing for i in self._out_index
        ]
        mapped = zip(*out_cols, strict=True)
        if skip or fallback:
            for j, r in enumerate(mapped):
                if j in skip:
                    continue
                (out.fallback_rows if j in fallback else out.rows).append(r)
        else:
            out.rows += mapped


def compile_source(
    spec: MappingSpec,
    mapping: SourceMapping,
    columns: Sequence[str],
    target_columns: Sequence[str],
    target_required: set[str],
    keys: KeyIndex | None = None,
    as_of: dt.date | None = None,
    parsers: Mapping[str, Callable[[Any], Step]] | None = None,
    resources: Mapping[str, Any] | None = None,
) -> CompiledSource:
    """Compile one source of a mapping; raise MappingError naming every problem at once.

    Args:
        spec: the mapping.
        mapping: one of ``spec.sources``.
        columns: the source selection's columns, in the order rows will arrive.
        target_columns: the target table's columns, in the order rows are loaded.
        target_required: target columns that are NOT NULL.
        keys: where referenced records went (for ``ref``).
        as_of: the wave's date, for ``$as_of`` in rules.
        parsers: builders of the context steps (``parse_date``, ``parse_datetime``,
            ``postcode``); defaults to the domain's.
        resources: what operations look things up in, by name (``gazetteer:SOURCE.TABLE``:
            a :class:`continuity.domain.addresses.Gazetteer`).
    """
    compiler = _Compiler(spec, mapping, tuple(columns), keys or NoKeys(), parsers, resources)
    fields = [compiler.column(f.name, f.steps) for f in mapping.fields]
    names = [f.name for f in fields]
    if mapping.each is not None:
        # The unpivoted value (and its column's name) are fields of their own when no field
        # of that name maps them.
        for at, extra in enumerate((mapping.each.as_field, mapping.each.column_as)):
            if extra is not None and extra not in names:
                fields.append(FieldColumn(extra, _column_at(len(columns) + at), [False]))
                names.append(extra)
    errors = compiler.errors
    target = list(target_columns)
    for f in mapping.fields:
        if not f.name.startswith("_") and f.name not in target:
            errors.append(
                f"{f.at}: {f.name!r} is not a column of target table {spec.entity!r} "
                "(helper fields start with _)"
            )
    if spec.key_column is not None and spec.key_column not in target:
        errors.append(f"{spec.key_at}: {spec.key_column!r} is not a column of {spec.entity!r}")
    out_index: list[int | None] = []
    for column in target:
        if column == spec.key_column:
            out_index.append(None)
        elif column in names:
            out_index.append(names.index(column))
        else:
            if column in target_required:
                errors.append(
                    f"{mapping.at}: target column {spec.entity}.{column} is NOT NULL "
                    "and no field fills it"
                )
            out_index.append(-1)
    key_getter = compiler.getter(mapping.key, "key")
    copy_getter = compiler.getter(mapping.copy_of.key, "copy_of.key") if mapping.copy_of else None
    each = (
        [compiler.index(c, "each.columns") for c in mapping.each.columns] if mapping.each else None
    )
    day = as_of or dt.date.today()
    rejects = [(r, _rule_test(r, names, day)) for r in mapping.reject]
    excludes = [(r, _rule_test(r, names, day)) for r in mapping.exclude]
    row_when = (
        _rule_test(RecordRule("row_when", mapping.row_when, (), ""), names, day)
        if mapping.row_when
        else None
    )
    identity = [
        (
            [names.index(f) for f in i.fields if f in names],
            names.index(i.rule_field) if i.rule_field in names else None,
            i.rule or "anchor",
            names.index(i.score_field) if i.score_field in names else None,
        )
        for i in mapping.identity
    ]
    raise_all(errors, MappingError)
    return CompiledSource(
        spec,
        mapping,
        tuple(columns),
        tuple(target),
        fields,
        out_index,
        key_getter,
        copy_getter,
        [i for i in each if i is not None] if each else None,
        rejects,
        excludes,
        row_when,
        identity,
        keys or NoKeys(),
        names,
    )


def _carried(value: Any) -> Any:
    return None if isinstance(value, Rejected) else value


def lookup_resource(args: Mapping[str, Any]) -> str:
    """The resources name a ``lookup`` is loaded under (its source, relation, key and value)."""
    what = {k: args.get(k) for k in ("source", "table", "query", "key", "value", "then")}
    return "lookup:" + json.dumps(what, sort_keys=True)


def needed_columns(mapping: SourceMapping) -> list[str]:
    """Every source column a mapping reads (key, copy key, each columns, from/ref/concat)."""
    seen: dict[str, None] = dict.fromkeys(mapping.key)
    if mapping.copy_of:
        seen.update(dict.fromkeys(mapping.copy_of.key))
    if mapping.each:
        seen.update(dict.fromkeys(mapping.each.columns))
    helpers = {mapping.each.as_field, mapping.each.column_as} if mapping.each else set()
    for f in mapping.fields:
        for step in f.steps:
            for column in _columns_of(step.op, step.args):
                if column not in helpers:
                    seen[column] = None
    return list(seen)


def _columns_of(op: str, args: Any) -> list[str]:
    if op == "from":
        return [args]
    if op == "ref":
        return list(args["key"])
    if op in ("gazetteer", "address_key"):
        return list(args["lines"])
    if op == "lookup":
        return list(args["on"])
    if op in ("concat", "coalesce"):
        parts: list[Any] = (args.get("of") if isinstance(args, dict) else args) or []
        out: list[str] = []
        for part in parts:
            items = part if isinstance(part, list) else [part]
            first = items[0]
            if isinstance(first, str):
                out.append(first)
            elif isinstance(first, dict):
                name, value = next((k, v) for k, v in first.items() if k != "reason")
                out += _columns_of(name, value)
        return out
    return []


class _Compiler:
    def __init__(
        self,
        spec: MappingSpec,
        mapping: SourceMapping,
        columns: tuple[str, ...],
        keys: KeyIndex,
        parsers: Mapping[str, Callable[[Any], Step]] | None,
        resources: Mapping[str, Any] | None = None,
    ) -> None:
        self.spec = spec
        self.mapping = mapping
        self.columns = columns
        self.keys = keys
        self.parsers = parsers if parsers is not None else default_parsers()
        self.errors: list[str] = []
        self.extra = mapping.each.as_field if mapping.each else None
        self.resources = resources or {}
        # Field values join the batch's columns as they are computed, so that a later field can
        # start from an earlier one (``field: _match``).
        self.field_base = len(columns) + (2 if self.extra else 0)
        self.extra_column = mapping.each.column_as if mapping.each else None
        self.fields_so_far: list[str] = []

    def index(self, column: str, at: str) -> int | None:
        if column == self.extra:
            return len(self.columns)
        if column is not None and column == self.extra_column:
            return len(self.columns) + 1
        try:
            return self.columns.index(column)
        except ValueError:
            self.errors.append(
                f"{self.mapping.at}: {at}: no column {column!r} in "
                f"{self.mapping.source}.{self.mapping.table or 'query'} "
                f"(columns: {', '.join(self.columns)})"
            )
            return None

    def getter(self, names: Sequence[str], at: str) -> Callable[[tuple[Any, ...]], Any]:
        idx = [self.index(n, at) for n in names]
        if any(i is None for i in idx):
            return lambda row: None
        return itemgetter(*[i for i in idx if i is not None])

    def earlier_field(self, name: str, at: str) -> int | None:
        if name not in self.fields_so_far:
            self.errors.append(
                f"{at}: field: {name!r} is not a field written before this one "
                f"({', '.join(self.fields_so_far) or 'none'})"
            )
            return None
        return self.field_base + self.fields_so_far.index(name)

    def column(self, name: str, steps: Sequence[StepSpec]) -> FieldColumn:
        """A field compiled to run over a batch (see :class:`FieldColumn`)."""
        try:
            return self._column(name, steps)
        finally:
            self.fields_so_far.append(name)

    def _column(self, name: str, steps: Sequence[StepSpec]) -> FieldColumn:
        flag = [False]
        if not steps:
            return FieldColumn(name, lambda rows, cols: [None] * len(rows), flag)
        first = steps[0]
        built = [self.step(s) for s in steps[1:]]
        if first.op == "const" and not built:
            value = first.args
            return FieldColumn(name, lambda rows, cols: [value] * len(rows), flag)
        if first.op in ("from", "field"):
            i = (
                self.index(first.args, f"{name}.from")
                if first.op == "from"
                else self.earlier_field(first.args, first.at)
            )
            if i is None:
                return FieldColumn(name, lambda rows, cols: [None] * len(rows), flag)
            if not built:
                return FieldColumn(name, lambda rows, cols: cols[i], flag)
            return FieldColumn(
                name,
                _memoised(
                    i, self._safe(name, _steps(built), flag), flag, typed=first.op == "field"
                ),
                flag,
            )
        if first.op in ("concat", "coalesce"):
            return self._combined(name, first, built, flag)
        if first.op == "ref" and not built and len(first.args["key"]) == 1:
            fast = self._ref_column(first, name, flag)
            if fast is not None:
                return fast
        head = self.head(first, name)
        safe = self._safe(name, operations.chain(head, built), flag)
        return FieldColumn(name, lambda rows, cols: [safe(r) for r in rows], flag)

    def _combined(
        self, name: str, first: StepSpec, built: list[Step], flag: list[bool]
    ) -> FieldColumn:
        """``concat`` and ``coalesce``: their parts are columns of their own, combined."""
        spec = first.args if isinstance(first.args, dict) else {"of": first.args}
        parts = [self._column(name, self._part_steps(p, first.at)) for p in spec["of"]]
        sep = str(spec.get("sep", " "))
        coalesce = first.op == "coalesce"

        def combine(values: tuple[Any, ...]) -> Any:
            for v in values:
                if v.__class__ is Rejected:
                    return v
            texts = [str(v) for v in values if v is not None and v != ""]
            return sep.join(texts) if texts else None

        rest = self._safe(name, _steps(built), flag) if built else None

        def first_set(rows: Sequence[tuple[Any, ...]], cols: list[tuple[Any, ...]]) -> list[Any]:
            # Lazily: a part is computed only for the records every earlier part left null (a
            # gazetteer search only for the locations that came without a UPRN).
            found = list(parts[0].run(rows, cols))
            todo = [j for j, v in enumerate(found) if v is None]
            for part in parts[1:]:
                if not todo:
                    break
                sub_rows = [rows[j] for j in todo]
                sub_cols: list[Any] = [[col[j] for j in todo] for col in cols]
                left = []
                for j, v in zip(todo, part.run(sub_rows, sub_cols), strict=True):
                    if v is None:
                        left.append(j)
                    else:
                        found[j] = v
                todo = left
            return found

        def run(rows: Sequence[tuple[Any, ...]], cols: list[tuple[Any, ...]]) -> Sequence[Any]:
            if coalesce:
                combined = first_set(rows, cols)
            else:
                combined = [
                    combine(vs) for vs in zip(*(p.run(rows, cols) for p in parts), strict=True)
                ]
            if any(p.flag[0] for p in parts):
                flag[0] = True
            if rest is None:
                return combined
            return [v if v.__class__ is Rejected else rest(v) for v in combined]

        return FieldColumn(name, run, flag)

    def _part_steps(self, expr: Any, at: str) -> list[StepSpec]:
        """A part of concat/coalesce as steps: a column name, one step, or a chain."""
        items = expr if isinstance(expr, list) else [expr]
        specs: list[StepSpec] = []
        for i, item in enumerate(items):
            if isinstance(item, str):
                specs.append(
                    StepSpec("from" if i == 0 else item, item if i == 0 else None, None, at)
                )
            else:
                reason = item.get("reason")
                op, args = next((k, v) for k, v in item.items() if k != "reason")
                specs.append(StepSpec(op, args, reason, at))
        return specs

    @staticmethod
    def _safe(name: str, fn: Callable[[Any], Any], flag: list[bool]) -> Callable[[Any], Any]:
        """``fn`` returning a :class:`Rejected` (and raising the flag) instead of raising."""

        def safe(v: Any) -> Any:
            try:
                return fn(v)
            except _Excluded as exc:
                flag[0] = True
                return Rejected(str(exc), excluded=True)
            except _Final as exc:
                flag[0] = True
                return Rejected(str(exc))
            except Reject as exc:
                flag[0] = True
                return Rejected(f"{name}: {exc}")

        return safe

    def head(self, s: StepSpec, name: str) -> Head:
        if s.op == "from":
            i = self.index(s.args, f"{name}.from")
            return (lambda row: None) if i is None else itemgetter(i)
        if s.op == "const":
            value = s.args
            return lambda row: value
        if s.op == "source_key":
            return self.key_text_of(self.mapping.key, name)
        if s.op == "ref":
            return self.ref(s, name)
        if s.op == "gazetteer":
            return self.gazetteer(s, name)
        if s.op == "address_key":
            return self.address_key(s, name)
        if s.op == "lookup":
            return self.lookup(s, name)
        if s.op == "resolved":
            return self.resolved(s, name)
        if s.op == "key_hash":
            return self.key_hash(s, name)
        self.errors.append(f"{s.at}: {s.op} cannot start a field")  # pragma: no cover
        return lambda row: None

    def key_text_of(self, names: Sequence[str], at: str) -> Head:
        idx = [self.index(n, at) for n in names]
        if any(i is None for i in idx):
            return lambda row: None
        if len(idx) == 1:
            (i,) = idx

            def one(row: tuple[Any, ...]) -> Any:
                v = row[i]  # type: ignore[index]
                return None if v is None else str(v)

            return one

        def many(row: tuple[Any, ...]) -> Any:
            parts = [row[i] for i in idx]  # type: ignore[index]
            return None if all(p is None for p in parts) else key_text(parts)

        return many

    def ref(self, s: StepSpec, name: str) -> Head:
        args = s.args
        source, table = args["source"], args["table"]
        of = self.key_text_of(args["key"], f"{name}.ref.key")
        target_of, fate_of = self.keys.target_of, self.keys.fate_of
        missing = args.get("missing", "reject") or "null"  # YAML's bare null means "null"
        what = args.get("name", table)
        follow = args.get("follow", True)

        def ref(row: tuple[Any, ...]) -> Any:
            key = of(row)
            if key is None:
                return None
            found = target_of(source, table, key)
            if found is not None or missing != "reject":
                return found
            fate = fate_of(source, table, key)
            if fate is not None and not follow:
                return None  # an attribute, not a parent: the record stays, without it
            if fate is None:
                raise _Final(
                    (s.reason and f"{s.reason}: {key}")
                    or f"dangling reference: {what} {key} does not exist"
                )
            # A record follows its parent: a link to a quarantined crime is quarantined with the
            # crime's reason, a link to an excluded crime is excluded with it.
            if fate[0] == "excluded":
                raise _Excluded(f"parent {what} excluded: {fate[1]}")
            raise _Final(f"parent {what} rejected: {fate[1]}")

        return ref

    def _ref_column(self, s: StepSpec, name: str, flag: list[bool]) -> FieldColumn | None:
        """``ref`` on a one-column key over a whole batch: one dictionary lookup per record,
        the slow path (why a record is not found) only for those that are not."""
        args = s.args
        table_of = getattr(self.keys, "table", None)
        known = table_of(args["source"], args["table"]) if table_of is not None else None
        if known is None:
            return None
        i = self.index(args["key"][0], f"{name}.ref.key")
        if i is None:
            return None
        slow = self._safe(name, self.ref(s, name), flag)

        def run(rows: Sequence[tuple[Any, ...]], cols: list[tuple[Any, ...]]) -> Sequence[Any]:
            keys = cols[i]
            get = known.get
            found = [None if k is None else get(k if k.__class__ is str else str(k)) for k in keys]
            for j, value in enumerate(found):
                if value is None and keys[j] is not None:
                    found[j] = slow(rows[j])
            return found

        return FieldColumn(name, run, flag)

    def gazetteer(self, s: StepSpec, name: str) -> Head:
        """Resolve the address in the named columns against a gazetteer: a Resolution."""
        args = s.args
        resource = f"gazetteer:{args['source']}.{args['table']}"
        found = self.resources.get(resource)
        if found is None:
            self.errors.append(f"{s.at}: gazetteer {args['source']}.{args['table']} is not loaded")
            return lambda row: None
        idx = [self.index(c, f"{name}.gazetteer.lines") for c in args["lines"]]
        if any(i is None for i in idx):
            return lambda row: None
        lines = itemgetter(*[i for i in idx if i is not None])
        resolve = found.resolve

        def gazetteer(row: tuple[Any, ...]) -> Any:
            got = lines(row)
            return resolve(got if isinstance(got, tuple) else (got,))

        return gazetteer

    def lookup(self, s: StepSpec, name: str) -> Head:
        """The value(s) another table holds for this record (``on`` matched to ``key``)."""
        table = self.resources.get(lookup_resource(s.args))
        if table is None:
            self.errors.append(f"{s.at}: lookup in {s.args['source']} is not loaded")
            return lambda row: None
        of = self.key_text_of(s.args["on"], f"{name}.lookup.on")
        get = table.get

        def lookup(row: tuple[Any, ...]) -> Any:
            k = of(row)
            return None if k is None else get(k)

        return lookup

    def address_key(self, s: StepSpec, name: str) -> Head:
        """An exact address as text (number, street, building, areas), or None when it lacks a
        number, a street or any area: too little to say two addresses are one place.

        The postcode is left out: it follows from the house, and legacy addresses often omit it.
        """
        from continuity.domain.addresses import address_key

        idx = [self.index(c, f"{name}.address_key.lines") for c in s.args["lines"]]
        if any(i is None for i in idx):
            return lambda row: None
        lines = itemgetter(*[i for i in idx if i is not None])

        def key(row: tuple[Any, ...]) -> Any:
            got = lines(row)
            k = address_key(got if isinstance(got, tuple) else (got,))
            if not (k.number and k.street and k.areas):
                return None
            return "|".join([k.number, k.street, k.building or "", *k.areas])

        return key

    def key_hash(self, s: StepSpec, name: str) -> Head:
        """A stable 31-bit number from the record's identity (and ``args``, a salt): a
        sequence number for child rows that many records add to one parent."""
        m = self.mapping
        of = self.key_text_of(m.key, f"{name}.key_hash")
        prefix = f"{m.source}|{m.as_table}|{s.args if s.args is not None else ''}|"

        def key_hash(row: tuple[Any, ...]) -> Any:
            text = prefix + (of(row) or "")
            digest = hashlib.blake2b(text.encode("utf-8"), digest_size=4).digest()
            return int.from_bytes(digest, "big") & 0x7FFFFFFF

        return key_hash

    def resolved(self, s: StepSpec, name: str) -> Head:
        """The record's resolution: its cluster's anchor identity, its merge rule, its role.

        None while the resolution is being made (the pre-pass reads the other fields only).
        """
        entity, _, what = str(s.args).rpartition(".")
        resolution = self.resources.get(f"resolution:{entity or self.spec.entity}")
        if resolution is None:
            if self.resources.get("resolving"):
                return lambda row: None  # the pre-pass making the resolution reads no more
            self.errors.append(
                f"{s.at}: resolved: no resolution of {entity or self.spec.entity!r} "
                "(its mapping declares no resolve:)"
            )
            return lambda row: None
        m = self.mapping
        of = self.key_text_of(m.key, f"{name}.resolved")
        prefix = f"{m.source}|{m.table or m.as_table}|"  # as the resolution keys them
        lookup = resolution.resolved

        def resolved(row: tuple[Any, ...]) -> Any:
            found = lookup(prefix + (of(row) or ""))
            return None if found is None else getattr(found, what)

        return resolved

    def step(self, s: StepSpec) -> Step:
        if s.op in operations.STEPS:
            built = operations.STEPS[s.op](s.args)
        elif s.op == "code":
            table = self.spec.codes[s.args]
            built = operations.lookup_step(
                table.codes, "reject", table.excluded, f"{table.name} v{table.version}"
            )
        elif s.op in self.parsers:
            try:
                built = self.parsers[s.op](s.args)
            except (ValueError, TypeError) as exc:
                self.errors.append(f"{s.at}: {s.op}: {exc}")
                return lambda v: v
        else:
            self.errors.append(f"{s.at}: {s.op} cannot follow another step")  # pragma: no cover
            return lambda v: v
        if s.reason is None:
            return built
        reason = s.reason

        def declared(v: Any) -> Any:
            try:
                return built(v)
            except Reject as exc:
                raise _Final(f"{reason}: {exc}") from None

        return declared


def _column_at(i: int) -> ColumnFn:
    """The batch's column ``i`` as it is."""

    def column(rows: Sequence[tuple[Any, ...]], cols: list[tuple[Any, ...]]) -> Sequence[Any]:
        return cols[i]

    return column


def _steps(steps: Sequence[Step]) -> Step:
    """One function applying ``steps`` in turn to a value."""
    if len(steps) == 1:
        return steps[0]

    def run(v: Any) -> Any:
        for s in steps:
            v = s(v)
        return v

    return run


def _memoised(i: int, fn: Callable[[Any], Any], flag: list[bool], typed: bool = False) -> ColumnFn:
    """Column ``i`` through ``fn``, computed once per distinct value while that pays.

    A column with few distinct values (codes, flags, dates) is served from a dictionary; one
    whose values are mostly new (free text, references) is computed directly, and the memo
    is dropped when it outgrows :data:`MEMO_LIMIT`.

    ``typed`` keys the memo by type and value: an earlier field's values may be equal and
    of different types (an estimated date equals the plain date of the same day), and a
    step may tell them apart. A source column holds one type, so its values need not be.
    """
    memo: dict[Any, Any] = {}
    state = {"useful": True}

    def run(rows: Sequence[tuple[Any, ...]], cols: list[tuple[Any, ...]]) -> Sequence[Any]:
        col = cols[i]
        if not state["useful"]:
            return [fn(v) for v in col]
        keys: Sequence[Any]
        sample = next((v for v in col if v is not None), "")
        if typed or sample.__class__ is not str:
            # Equal values may differ (a date and an estimate of it: by type; Decimal 1 and
            # 1.0: by their text too): each is computed as itself.
            keys = [
                (v.__class__, v, str(v)) if v.__class__ in _SPELLED else (v.__class__, v)
                for v in col
            ]
        else:
            keys = col
        try:
            return [memo[k] for k in keys]
        except KeyError:
            pass
        new = set(keys).difference(memo)
        if len(new) > len(col) // 2 and len(col) >= 1000:
            state["useful"] = False  # mostly values never seen before: a memo does not pay
            return [fn(v) for v in col]
        if len(memo) + len(new) > MEMO_LIMIT:
            memo.clear()
            flag[0] = False
            new = set(keys)
        for k in new:
            memo[k] = fn(k[1] if k.__class__ is tuple else k)
        return [memo[k] for k in keys]

    return run


RuleFn = Callable[[list[Sequence[Any]], int], list[int]]


def _rule_test(rule: RecordRule, names: list[str], as_of: dt.date) -> RuleFn:
    """The rule over a batch: the positions of the records it applies to."""
    when = [_condition(c, names, as_of) for c in rule.when]
    unless = [_condition(c, names, as_of) for c in rule.unless]

    def test(values: list[Sequence[Any]], n: int) -> list[int]:
        hits: Sequence[int] = range(n)
        for t in when:
            holds = t(values)
            hits = [j for j in hits if holds[j]]
        if unless and hits:
            spared: Sequence[int] = hits
            for t in unless:
                holds = t(values)
                spared = [j for j in spared if holds[j]]
            if spared:
                skip = set(spared)
                hits = [j for j in hits if j not in skip]
        return list(hits)

    return test


def _comparable(v: Any, value: Any) -> Any:
    """A condition's value in the field's type: ISO text against dates and times."""
    if isinstance(value, str) and isinstance(v, dt.date):
        try:
            if isinstance(v, dt.datetime):
                return dt.datetime.fromisoformat(value)
            return dt.date.fromisoformat(value)
        except ValueError:
            return value
    if isinstance(value, dt.date) and isinstance(v, dt.datetime):
        return dt.datetime.combine(value, dt.time())
    return value


def _condition(
    c: Condition, names: list[str], as_of: dt.date
) -> Callable[[list[Sequence[Any]]], list[bool]]:
    """A condition over a batch: whether it holds, per record (memoised per distinct value)."""
    i = names.index(c.field)
    value = resolve_value(c.value, as_of)
    op = c.op
    members = [resolve_value(x, as_of) for x in value] if op in ("in", "not_in") else []

    def holds(v: Any) -> bool:
        if v.__class__ is Rejected:
            return False
        if op == "is_null":
            return (v is None) == bool(value)
        if op in ("in", "not_in"):
            return (v in members) == (op == "in")
        if v is None:
            return (op == "eq" and value is None) or (op == "ne" and value is not None)
        other = _comparable(v, value)
        try:
            if op == "eq":
                return bool(v == other)
            if op == "ne":
                return bool(v != other)
            if op == "lt":
                return bool(v < other)
            if op == "le":
                return bool(v <= other)
            if op == "gt":
                return bool(v > other)
            return bool(v >= other)
        except TypeError:
            return False

    memo: dict[Any, bool] = {}

    def column(values: list[Sequence[Any]]) -> list[bool]:
        col = values[i]
        try:
            return [memo[v] for v in col]
        except KeyError:
            pass
        if len(memo) > MEMO_LIMIT:
            memo.clear()
        for v in set(col).difference(memo):
            memo[v] = holds(v)
        return [memo[v] for v in col]

    return column


def default_parsers() -> dict[str, Callable[[Any], Step]]:
    """The context steps built on the domain's date and postcode parsers."""
    from mappings import parsing

    return {
        "parse_date": parsing.parse_date_step,
        "parse_datetime": parsing.parse_datetime_step,
        "postcode": parsing.postcode_step,
        "is_partial": parsing.is_partial_step,
    }
