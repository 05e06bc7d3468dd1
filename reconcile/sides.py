"""The two sides of a reconciliation, each read and fingerprinted in its own process.

Each side streams its rows once, normalises the compared fields, and writes for every row a line
``match key, canonical fields, facts`` into one of ``segments`` spill files chosen by a hash of the
match key. It also keeps, per segment, the count and the sum of the rows' keyed fingerprints
(HMAC-MD5): the cheap aggregate that lets the comparison
skip every segment whose two sides agree, so that work and memory grow with the differences.

Spill files live in a private temporary directory that is removed after the run.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from hashlib import md5
from pathlib import Path
from typing import Any, TextIO

import sqlalchemy as sa
from sqlalchemy import Engine

from continuity.domain.connect import engine_for
from continuity.domain.digest import canonical
from continuity.domain.errors import ReconcileError
from reconcile.columns import ESCAPE, SEP, ColumnText, RuleVerdicts, joined
from reconcile.normalisers import Normaliser, PartialDate, Unreadable
from reconcile.spec import (
    Binding,
    Condition,
    FieldSpec,
    NormaliserSpec,
    Population,
    Quarantine,
    Rule,
    SourceSpec,
    SurvivalSpec,
    resolve,
)
from reconcile.sql import Relation, _where_columns, fetch_all, stream, where

WILDCARD = "\x00*"  # a field that is not compared for this record (a superseded copy)
NULL = canonical(None)
MASK64 = (1 << 64) - 1


def year_of(text: str) -> str:
    """The year a canonical date or timestamp text falls in ("unknown", "unreadable")."""
    if text in (NULL, WILDCARD):
        return "unknown"
    if text.startswith("\x00!"):
        return "unreadable"
    return text[:4]


def segment_of(match_key: str, segments: int) -> int:
    """The hash segment of a match key: the first four bytes of its MD5, modulo ``segments``
    (a database computes the same, see :mod:`reconcile.pushdown`)."""
    return int.from_bytes(md5(match_key.encode("utf-8")).digest()[:4]) % segments


@dataclass
class SideSummary:
    """What one side returns to the comparison: aggregates, counts and small lists."""

    counts: list[int]
    sums: list[int]
    read: dict[str, int] = field(default_factory=dict)  # per source system
    #: per source system, per segment: rows counted into the segment aggregates
    system_counts: dict[str, list[int]] = field(default_factory=dict)
    flagged: list[tuple[str, str, str, str, str]] = field(default_factory=list)
    merged: list[tuple[str, str, str]] = field(default_factory=list)  # match key, target key, rule
    unreached: list[tuple[str, str, str | None]] = field(default_factory=list)
    duplicates: list[tuple[str, str]] = field(default_factory=list)  # copy key, original key
    #: source side: records the target's deletions table says were deleted at source since a
    #: wave migrated them, and the source no longer holds: (system, key, target key, action)
    deleted: list[tuple[str, str, str, str]] = field(default_factory=list)
    #: source side: records declared deleted that the source still holds: (system, key)
    still_held: set[tuple[str, str]] = field(default_factory=set)
    target_total: int = 0
    #: the target side's aggregates were computed in the database; its spill holds only the
    #: segments :func:`spill_target_segments` was asked for
    pushed: bool = False
    #: segments of rows read out for other segments (the database and Python disagreed on a
    #: row's segment): the read-out cannot be trusted, and the comparison reads the target whole
    stray: set[int] = field(default_factory=set)
    target_reached: int = 0  # target records some crosswalk entry of the class leads to
    reached_copies: set[str] = field(default_factory=set)  # of those, copies of another
    landed_twice: set[str] = field(default_factory=set)  # target keys of either copy
    #: (system, year) -> rows, and on the source side rows not expected in the target
    years: Counter[tuple[str, str]] = field(default_factory=Counter)
    years_flagged: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: source side: (system, year, segment) -> rows counted into that segment's aggregate
    years_counted: Counter[tuple[str, str, int]] = field(default_factory=Counter)
    #: keys as findings and spills write them (:func:`escaped`) -> as the database holds them,
    #: for the few keys escaping changed (a tab or a newline in a key): what later look-ups
    #: ask the database for (escaping is not one-to-one: a tab and the text ``\t`` both
    #: write ``\t``, so a written key may stand for several)
    raw_keys: dict[str, set[str]] = field(default_factory=dict)

    def escape(self, key: str) -> str:
        """``key`` as findings write it, remembering how the database holds it."""
        written = escaped(key)
        if written is not key:
            self.raw_keys.setdefault(written, set()).add(key)
        return written

    def add_raw(self, raw_keys: dict[str, set[str]]) -> None:
        for written, held in raw_keys.items():
            self.raw_keys.setdefault(written, set()).update(held)


class Spill:
    """Per-segment line buffers flushed to files."""

    #: Lines held in memory across all segments before they are written out.
    BUFFERED_LINES = 131_072

    def __init__(self, directory: Path, side: str, segments: int) -> None:
        self.paths = [directory / f"{side}-{s:05d}" for s in range(segments)]
        self.buffers: list[list[str]] = [[] for _ in range(segments)]
        self.flush_at = max(64, self.BUFFERED_LINES // segments)
        self.files: dict[int, TextIO] = {}

    def flush_full(self) -> None:
        """Write out every buffer past its limit (after a batch appended to ``buffers``)."""
        for segment, buf in enumerate(self.buffers):
            if len(buf) >= self.flush_at:
                self._flush(segment)

    def _flush(self, segment: int) -> None:
        fh = self.files.get(segment)
        if fh is None:
            fh = self.files[segment] = self.paths[segment].open("a", encoding="utf-8")
        fh.write("".join(self.buffers[segment]))
        self.buffers[segment].clear()
        if len(self.files) > 64:  # keep few handles open
            self.files.pop(next(iter(self.files))).close()

    def close(self) -> None:
        for s, buf in enumerate(self.buffers):
            if buf:
                self._flush(s)
        for fh in self.files.values():
            fh.close()
        self.files.clear()


def read_spill(path: Path) -> list[list[str]]:
    if not path.exists():
        return []
    with path.open(encoding="utf-8") as fh:
        return [line.rstrip("\n").split("\t") for line in fh]


def hmac_pads(key: bytes) -> tuple[bytes, bytes]:
    """HMAC-MD5's inner and outer padded keys (RFC 2104), for a database to compute it too."""
    if len(key) > 64:
        key = md5(key).digest()
    key = key.ljust(64, b"\x00")
    return bytes(b ^ 0x36 for b in key), bytes(b ^ 0x5C for b in key)


def fingerprint_message(match_key: str, canon: str) -> bytes:
    """What a row's fingerprint is taken of: match key and canonical fields. A NUL (the
    wildcard's and unreadable values' marker) is written as 0x1D, which a database's text can
    hold (PostgreSQL's cannot hold a NUL)."""
    return (match_key + "\x1e" + canon).replace("\x00", "\x1d").encode("utf-8")


class Fingerprinter:
    """Per-segment counts and sums of the rows' keyed fingerprints (HMAC-MD5 of match key and
    canonical fields, its first 64 bits): the aggregate each side hands to the comparison.

    HMAC-MD5 rather than a faster MAC because a database can compute it in SQL with its own
    ``md5`` (:mod:`reconcile.pushdown`), so a side need not read its rows out at all."""

    def __init__(self, key: bytes, segments: int) -> None:
        self.key = key
        self.segments = segments
        self.counts = [0] * segments
        self.sums = [0] * segments
        inner, outer = hmac_pads(key)
        self._inner, self._outer = md5(inner), md5(outer)

    def value(self, match_key: str, canon: str) -> int:
        """One row's fingerprint."""
        h = self._inner.copy()
        h.update(fingerprint_message(match_key, canon))
        o = self._outer.copy()
        o.update(h.digest())
        return int.from_bytes(o.digest()[:8])

    def add(self, match_key: str, canon: str) -> int:
        """Count one row into its segment's aggregate; return the segment."""
        segment = segment_of(match_key, self.segments)
        self.counts[segment] += 1
        self.sums[segment] = (self.sums[segment] + self.value(match_key, canon)) & MASK64
        return segment


def escaped(key: str) -> str:
    """A key safe inside a spill line (a tab or newline in a key is written escaped)."""
    return key if key.isprintable() else key.translate(ESCAPE)


# --- rules -----------------------------------------------------------------------------------


def _holds(c: Condition, attrs: dict[str, Any], as_of: dt.date) -> bool:
    value = attrs.get(c.attribute)
    want = resolve(c.value, as_of)
    if c.op == "is_null":
        return (value is None) == bool(want)
    if value is None or isinstance(value, Unreadable | PartialDate):
        return False
    try:
        if isinstance(want, str) and isinstance(value, dt.date):
            want = dt.date.fromisoformat(want)
        if isinstance(value, dt.datetime) and not isinstance(want, dt.datetime):
            value = value.date()
        if c.op == "eq":
            return bool(value == want or str(value) == str(want))
        if c.op == "ne":
            return not (value == want or str(value) == str(want))
        if c.op == "in":
            return value in want or str(value) in {str(w) for w in want}
        return bool(
            {
                "lt": value < want,
                "le": value <= want,
                "gt": value > want,
                "ge": value >= want,
            }[c.op]
        )
    except (TypeError, ValueError):
        return False


def first_rule(rules: Iterable[Rule], attrs: dict[str, Any], as_of: dt.date) -> Rule | None:
    for r in rules:
        if not all(_holds(c, attrs, as_of) for c in r.when):
            continue
        # An exception to the rule that cannot be read (a garbled legal-hold flag) might hold:
        # the rule does not apply, and the record is expected in the target.
        if any(
            isinstance(attrs.get(c.attribute), Unreadable | PartialDate) or _holds(c, attrs, as_of)
            for c in r.unless
        ):
            continue
        return r
    return None


# --- the source side -------------------------------------------------------------------------


def _norm(spec: NormaliserSpec | None, as_of: dt.date) -> Normaliser:
    return spec.build(as_of) if spec is not None else (lambda v: v)


def _column_text(
    binding: Binding, f: FieldSpec, index: dict[str, int], as_of: dt.date
) -> ColumnText:
    """A source field's texts per batch (the binding's normaliser, else the field's)."""
    norm = _norm(binding.normalise or f.normalise, as_of)
    return ColumnText(norm, [index[c] for c in binding.columns], binding.const)


def _verdicts(
    source: SourceSpec, attributes: dict[str, Binding], index: dict[str, int], as_of: dt.date
) -> RuleVerdicts:
    readers = [
        (name, _norm(b.normalise, as_of), [index[c] for c in b.columns], b.const)
        for name, b in attributes.items()
    ]
    return RuleVerdicts(source.exclude, source.defer, readers, as_of, first_rule)


def _columns_of(bindings: Iterable[Binding]) -> list[str]:
    return [c for b in bindings for c in b.columns]


@dataclass(frozen=True)
class Task:
    spec: SurvivalSpec
    urls: dict[str, str]  # source system -> URL, and "target"
    as_of: dt.date
    key: bytes
    directory: Path
    #: fingerprint the target side inside the database where it can (:mod:`reconcile.pushdown`)
    pushdown: bool = True


def _of_sources(spec: SurvivalSpec, q: Quarantine, names: tuple[str, ...]) -> tuple[Any, Any]:
    """``SELECT names`` (by their roles, in ``q``'s column names) from ``q``'s table, of this
    class's source tables only; and the table, for further conditions."""
    c = q.columns
    t = sa.table(q.table, *(sa.column(c[k]) for k in names))
    tables = sorted({s.crosswalk_table for s in spec.sources})
    stmt = sa.select(*(t.c[c[k]] for k in names)).where(t.c[c["source_table"]].in_(tables))
    return stmt, t


def quarantined(spec: SurvivalSpec, engine: Engine) -> dict[tuple[str, str, str], str]:
    """The quarantine's entries for this class's source tables: (system, table, key) -> reason."""
    q = spec.quarantine
    if q is None:
        return {}
    stmt, _ = _of_sources(spec, q, ("source_system", "source_table", "source_key", "reason"))
    return {(r[0], r[1], r[2]): r[3] or "quarantined" for r in fetch_all(engine, stmt)}


def has_table(engine: Engine, table: str) -> bool:
    schema, _, name = table.rpartition(".")
    return bool(sa.inspect(engine).has_table(name, schema=schema or None))


def deletions(spec: SurvivalSpec, engine: Engine) -> dict[tuple[str, str, str], tuple[str, str]]:
    """The deletions table's entries for this class's source tables:
    (system, table, key) -> (target key, action)."""
    d = spec.deletions
    if d is None:
        return {}
    if not has_table(engine, d.table):
        return {}  # a target no delta ever ran against: nothing was deleted
    names = ("source_system", "source_table", "source_key", "target_table", "target_key", "action")
    stmt, t = _of_sources(spec, d, names)
    if spec.locate.crosswalk is not None:
        stmt = stmt.where(t.c[d.columns["target_table"]] == spec.locate.crosswalk.target_table)
    return {(r[0], r[1], r[2]): (str(r[4]), r[5] or "kept") for r in fetch_all(engine, stmt)}


def run_source_side(task: Task) -> SideSummary:
    spec = task.spec
    target = engine_for(task.urls["target"])
    rejected = quarantined(spec, target)
    deleted = deletions(spec, target)
    target.dispose()
    fp = Fingerprinter(task.key, spec.segments)
    spill = Spill(task.directory, "source", spec.segments)
    summary = SideSummary(fp.counts, fp.sums)
    engines: dict[str, Engine] = {}
    try:
        for source in spec.sources:
            engine = engines.setdefault(source.system, engine_for(task.urls[source.system]))
            copies = _newer_copies(source, engines, task) if source.newer_copy else {}
            gone = {
                k: v
                for (system, table, k), v in deleted.items()
                if system == source.system and table == source.crosswalk_table
            }
            summary.read[source.system] = _read_source(
                spec, source, engine, copies, rejected, task.as_of, fp, spill, summary, gone
            )
            # What the source no longer holds was deleted at source, as the target declares.
            summary.deleted += [
                (source.system, summary.escape(k), summary.escape(tk), action)
                for k, (tk, action) in gone.items()
            ]
    finally:
        spill.close()
        for e in engines.values():
            e.dispose()
    return summary


def _newer_copies(
    source: SourceSpec, engines: dict[str, Engine], task: Task
) -> dict[str, tuple[str | None, str | None]]:
    """Key of this source -> (exclusion rule, deferral rule) evaluated on its newer copy."""
    copy = source.newer_copy
    assert copy is not None
    engine = engines.setdefault(copy.system, engine_for(task.urls[copy.system]))
    cols = [copy.column, *_columns_of(copy.attributes.values())]
    rel = Relation(Population(copy.table, None), cols)
    stmt = sa.select(*(rel.col(c) for c in cols)).select_from(rel.from_)
    stmt = stmt.where(rel.col(copy.column).is_not(None))
    verdicts = _verdicts(source, copy.attributes, {c: i for i, c in enumerate(cols)}, task.as_of)
    out: dict[str, tuple[str | None, str | None]] = {}
    for rows in stream(engine, stmt):
        columns = list(zip(*rows, strict=True))
        out.update(zip(map(str, columns[0]), verdicts(columns, len(rows)), strict=True))
    return out


def _read_source(
    spec: SurvivalSpec,
    source: SourceSpec,
    engine: Engine,
    copies: dict[str, tuple[str | None, str | None]],
    rejected: dict[tuple[str, str, str], str],
    as_of: dt.date,
    fp: Fingerprinter,
    spill: Spill,
    summary: SideSummary,
    gone: dict[str, tuple[str, str]],
) -> int:
    """Read one source's records into the spill and the aggregates; return how many. Keys of
    ``gone`` (declared deleted at source) that the source still holds are taken out of it."""
    fields = list(spec.fields.values())
    match_cols = list(source.match or ())
    cols = list(
        dict.fromkeys(
            [
                *source.key,
                *match_cols,
                *_columns_of(source.fields.values()),
                *_columns_of(source.attributes.values()),
                *([source.newer_copy.key] if source.newer_copy and source.newer_copy.key else []),
            ]
        )
    )
    rel = Relation(source.population, cols)
    stmt = sa.select(*(rel.col(c) for c in cols)).select_from(rel.from_)
    if rel.filter is not None:
        stmt = stmt.where(rel.filter)
    index = {c: i for i, c in enumerate(cols)}
    key_idx = [index[c] for c in source.key]
    match_idx = [index[c] for c in match_cols]
    converters = [_column_text(source.fields[f.name], f, index, as_of) for f in fields]
    year_field = list(spec.fields).index(spec.count_by_year) if spec.count_by_year else None
    verdicts = _verdicts(source, source.attributes, index, as_of)
    copy_key_idx = (
        index[source.newer_copy.key] if source.newer_copy and source.newer_copy.key else None
    )
    compare = source.newer_copy.compare if source.newer_copy else None
    kept = [compare is None or f.name in compare for f in fields]
    system, table = source.system, source.crosswalk_table
    prefix = f"{system}{SEP}"
    buffers = spill.buffers
    refused = {k: r for (sy, t, k), r in rejected.items() if sy == system and t == table}
    counts = summary.system_counts.setdefault(system, [0] * spec.segments)
    segments = fp.segments
    n = 0
    for rows in stream(engine, stmt):
        size = len(rows)
        n += size
        columns = list(zip(*rows, strict=True))
        if len(key_idx) == 1 and source.key_format is None:
            keys = ["" if v is None else str(v) for v in columns[key_idx[0]]]
        else:
            keys = [source.key_text(k) for k in zip(*(columns[i] for i in key_idx), strict=True)]
        matches = (
            ["|".join(map(str, m)) for m in zip(*(columns[i] for i in match_idx), strict=True)]
            if match_idx
            else keys
        )
        texts = [convert(columns, size) for convert in converters]
        years = list(map(year_of, texts[year_field])) if year_field is not None else None
        if years is not None:
            summary.years.update((system, y) for y in years)
        canons = joined(texts, size)
        wild = [WILDCARD] * size
        subset = (
            joined([t if k else wild for t, k in zip(texts, kept, strict=True)], size)
            if compare is not None and copies
            else canons
        )
        own = verdicts(columns, size)
        copy_keys = keys if copy_key_idx is None else list(map(str, columns[copy_key_idx]))
        if gone:
            for key in keys:
                if gone.pop(key, None) is not None:
                    summary.still_held.add((system, summary.escape(key)))
        for i in range(size):
            key = keys[i]
            copy_of = copies.get(copy_keys[i]) if copies else None
            if copy_of is not None:
                excluded, deferred = copy_of
                canon = subset[i]
            else:
                excluded, deferred = own[i]
                canon = canons[i]
            reason = refused.get(key) if refused else None
            match_key, key = prefix + escaped(matches[i]), summary.escape(key)
            if excluded is None and deferred is None and reason is None:
                segment = fp.add(match_key, canon)
                counts[segment] += 1
                flags = "||S|" if copy_of is not None else "|||"
                if years is not None:
                    summary.years_counted[(system, years[i], segment)] += 1
            else:
                segment = segment_of(match_key, segments)
                flags = "|".join(
                    (
                        excluded or "",
                        deferred or "",
                        "S" if copy_of is not None else "",
                        "R" if reason is not None else "",
                    )
                )
                if years is not None:
                    summary.years_flagged[(system, years[i])] += 1
                summary.flagged.append(
                    (
                        match_key,
                        key,
                        "REJECTED"
                        if reason is not None
                        else ("EXCLUDED" if excluded else "DEFERRED"),
                        reason or _rule_reason(source, excluded or deferred),
                        system,
                    )
                )
            buffers[segment].append(f"{match_key}\t{canon}\t{key}\t{flags}\n")
        spill.flush_full()
    return n


def _rule_reason(source: SourceSpec, name: str | None) -> str:
    for r in (*source.exclude, *source.defer):
        if r.name == name:
            return f"{r.name}: {r.reason}" if r.reason != r.name else r.name
    return name or ""


# --- the target side -------------------------------------------------------------------------


def crosswalk_table(spec: SurvivalSpec, alias: str) -> tuple[Any, dict[str, str]]:
    xw = spec.locate.crosswalk
    table, columns = (xw.table, xw.columns) if xw else ("migration_crosswalk", {})
    if not columns:
        from reconcile.spec import CROSSWALK_COLUMNS

        columns = CROSSWALK_COLUMNS
    names = [
        columns[k]
        for k in (
            "source_system",
            "source_table",
            "source_key",
            "target_table",
            "target_key",
            "rule",
        )
    ]
    schema, _, name = table.rpartition(".")
    t = sa.table(name, *(sa.column(c) for c in names), schema=schema or None).alias(alias)
    return t, columns


def _target_columns(spec: SurvivalSpec) -> list[str]:
    cols = [*spec.target.key_columns, *spec.target.duplicate_key]
    for f in spec.fields.values():
        cols += list(f.target)
    for p in spec.locate.parents:
        cols.append(p.column)
    for t in spec.target.target_only:
        cols += _where_columns(t.where)
    return list(dict.fromkeys(cols))


def located_statement(
    spec: SurvivalSpec, source: SourceSpec, only: list[tuple[str, ...]] | None = None
) -> tuple[Any, list[str]]:
    """Target rows located from ``source``'s records, with what the comparison needs.

    Columns: match key parts, rule, superseded flag, target key parts, then one value per field.
    ``only`` restricts the rows to these target keys (each a tuple of key column values).
    """
    cols = _target_columns(spec)
    rel = Relation(spec.target.population, cols)
    system = source.system
    select: list[Any] = []
    names: list[str] = []
    frm = rel.from_
    conds: list[Any] = [] if rel.filter is None else [rel.filter]
    if spec.locate.crosswalk is not None:
        xw, c = crosswalk_table(spec, "xw")
        frm = xw.join(frm, rel.col(spec.target.key_columns[0]) == xw.c[c["target_key"]])
        conds += [
            xw.c[c["source_system"]] == system,
            xw.c[c["source_table"]] == source.crosswalk_table,
            xw.c[c["target_table"]] == spec.locate.crosswalk.target_table,
        ]
        select += [xw.c[c["source_key"]], xw.c[c["rule"]]]
        names += ["match", "rule"]
        select.append(sa.literal(0).label("superseded"))  # set from copied_targets()
        names.append("superseded")
    else:
        for i, p in enumerate(spec.locate.parents):
            xp, c = crosswalk_table(spec, f"xp{i}")
            # A left join with a NOT NULL filter is an inner join that SQLite may not reorder:
            # the target table drives and each crosswalk lookup uses the target-key index
            # (reordered, SQLite without statistics joins crosswalk to crosswalk first).
            conds.append(xp.c[c["source_key"]].is_not(None))
            frm = frm.outerjoin(
                xp,
                sa.and_(
                    xp.c[c["target_table"]] == p.target_table,
                    xp.c[c["target_key"]] == rel.col(p.column),
                    xp.c[c["source_system"]] == system,
                    xp.c[c["source_table"]] == p.source_tables[system],
                ),
            )
            select.append(xp.c[c["source_key"]])
            names.append(f"match{i}")
        select += [sa.literal(None).label("rule"), sa.literal(0).label("superseded")]
        names += ["rule", "superseded"]
    select += [rel.col(k) for k in spec.target.key_columns]
    names += [f"key{i}" for i in range(len(spec.target.key_columns))]
    for f in spec.fields.values():
        if f.translate:
            xt, c = crosswalk_table(spec, f"xt_{f.name}")
            binding = source.fields[f.name]
            frm = frm.outerjoin(
                xt,
                sa.and_(
                    xt.c[c["target_table"]] == f.translate,
                    xt.c[c["target_key"]] == rel.col(f.target[0]),
                    xt.c[c["source_system"]] == system,
                    xt.c[c["source_table"]] == binding.translate_table,
                ),
            )
            # A reference the crosswalk cannot translate for this system must not read as
            # "no reference" (NULL), or a record wrongly given one would compare equal.
            select.append(
                sa.case(
                    (
                        sa.and_(rel.col(f.target[0]).is_not(None), xt.c[c["source_key"]].is_(None)),
                        sa.literal("untranslatable:") + sa.cast(rel.col(f.target[0]), sa.String),
                    ),
                    else_=xt.c[c["source_key"]],
                )
            )
            names.append(f"field:{f.name}")
        else:
            for col in f.target:
                select.append(rel.col(col))
                names.append(f"field:{f.name}:{col}")
    if only is not None:
        key_cols = [rel.col(k) for k in spec.target.key_columns]
        lhs = key_cols[0] if len(key_cols) == 1 else sa.tuple_(*key_cols)
        conds.append(lhs.in_([k[0] for k in only] if len(key_cols) == 1 else only))
    stmt = sa.select(*select).select_from(frm)
    if conds:
        stmt = stmt.where(*conds)
    return stmt, names


def copied_targets(spec: SurvivalSpec, source: SourceSpec, engine: Engine) -> frozenset[str]:
    """Target records the newer copy's system also leads to (their older copy is superseded).

    Read once as a set (one range of the crosswalk's key) rather than probed per row: a probe
    per row is only fast when the server's planner has statistics, which a fresh load lacks.
    """
    copy = source.newer_copy
    assert copy is not None and spec.locate.crosswalk is not None
    xw, c = crosswalk_table(spec, "xc")
    stmt = sa.select(xw.c[c["target_key"]]).where(
        xw.c[c["source_system"]] == copy.system,
        xw.c[c["source_table"]] == copy.table,
        xw.c[c["target_table"]] == spec.locate.crosswalk.target_table,
    )
    return frozenset(str(r[0]) for rows in stream(engine, stmt) for r in rows)


def run_target_side(task: Task) -> SideSummary:
    spec = task.spec
    engine = engine_for(task.urls["target"])
    fp = Fingerprinter(task.key, spec.segments)
    summary = SideSummary(fp.counts, fp.sums)
    try:
        if not (task.pushdown and _pushed_down(task, engine, summary)):
            spill = Spill(task.directory, "target", spec.segments)
            try:
                for source in spec.sources:
                    summary.read[source.system] = _read_target(
                        spec, source, engine, fp, spill, summary, task.as_of
                    )
            finally:
                spill.close()
        _unreached(spec, engine, summary)
    finally:
        engine.dispose()
    return summary


def _pushed_down(task: Task, engine: Engine, summary: SideSummary) -> bool:
    """Fill the summary's aggregates, counts and merges in the database, if it can."""
    from reconcile import pushdown

    spec = task.spec
    if not pushdown.applicable(spec, engine):
        return False
    try:
        located = [(s, pushdown.Located(spec, s, engine)) for s in spec.sources]
    except pushdown.NotPushable:
        return False
    try:
        for source, loc in located:
            summary.read[source.system], merged = pushdown.aggregates(
                spec, loc, engine, task.key, summary.counts, summary.sums, spec.locate.is_merge
            )
            summary.merged += [(m, summary.escape(k), r) for m, k, r in merged]
    except ReconcileError:
        # The database refused the translated query (a vendor's type the translation did not
        # foresee): forget what was added, and read the target side in Python.
        summary.counts[:] = [0] * spec.segments
        summary.sums[:] = [0] * spec.segments
        summary.read.clear()
        summary.merged.clear()
        return False
    summary.pushed = True
    return True


def spill_target_segments(task: Task, summary: SideSummary, wanted: list[int]) -> bool:
    """Read the target rows of the ``wanted`` segments into the spill (after a pushdown), and
    put their aggregates as Python computes them in ``summary``: segments the database poisoned
    then hold what the Python side would have, and so does the class's content digest.

    Returns False if a row read out belongs, by Python's reckoning, to another segment: the
    database placed it differently, and the pushdown's aggregates cannot be trusted."""
    if not wanted:
        return True
    spec = task.spec
    engine = engine_for(task.urls["target"])
    fp = Fingerprinter(task.key, spec.segments)
    scratch = SideSummary(fp.counts, fp.sums)  # aggregates and merges are the pushdown's
    spill = Spill(task.directory, "target", spec.segments)
    try:
        for source in spec.sources:
            _read_target(spec, source, engine, fp, spill, scratch, task.as_of, wanted)
    finally:
        spill.close()
        engine.dispose()
    if scratch.stray:
        return False
    for segment in wanted:
        summary.counts[segment], summary.sums[segment] = fp.counts[segment], fp.sums[segment]
    summary.add_raw(scratch.raw_keys)  # how the database holds the keys read out
    return True


def _read_target(
    spec: SurvivalSpec,
    source: SourceSpec,
    engine: Engine,
    fp: Fingerprinter,
    spill: Spill,
    summary: SideSummary,
    as_of: dt.date,
    wanted: list[int] | None = None,
) -> int:
    stmt, names = located_statement(spec, source)
    wanted_set = None if wanted is None else set(wanted)
    if wanted is not None:
        from reconcile.pushdown import only_segments

        stmt = only_segments(stmt, names, source.system, spec.segments, wanted)
    pos = {n: i for i, n in enumerate(names)}
    fields = list(spec.fields.values())
    converters = []
    for f in fields:
        if f.translate:
            positions = [pos[f"field:{f.name}"]]
        else:
            positions = [pos[f"field:{f.name}:{c}"] for c in f.target]
        binding = source.fields[f.name]
        norm = f.target_normaliser(binding).build(as_of)
        converters.append(ColumnText(norm, positions))
    compare = source.newer_copy.compare if source.newer_copy else None
    kept = [compare is None or f.name in compare for f in fields]
    copied = copied_targets(spec, source, engine) if compare is not None else frozenset()
    match_idx = [i for i, n in enumerate(names) if n.startswith("match")]
    key_idx = [i for i, n in enumerate(names) if n.startswith("key")]
    rule_i = pos["rule"]
    prefix = f"{source.system}{SEP}"
    is_merge = spec.locate.is_merge
    buffers = spill.buffers
    n = 0
    for rows in stream(engine, stmt):
        size = len(rows)
        n += size
        columns = list(zip(*rows, strict=True))
        if len(match_idx) == 1:
            matches = list(map(str, columns[match_idx[0]]))
        else:
            matches = [
                "|".join(map(str, m)) for m in zip(*(columns[i] for i in match_idx), strict=True)
            ]
        if len(key_idx) == 1:
            target_keys = list(map(str, columns[key_idx[0]]))
        else:
            target_keys = [
                "|".join(map(str, k)) for k in zip(*(columns[i] for i in key_idx), strict=True)
            ]
        texts = [convert(columns, size) for convert in converters]
        canons = joined(texts, size)
        if copied:
            wild = [WILDCARD] * size
            subset = joined([t if k else wild for t, k in zip(texts, kept, strict=True)], size)
        rules = columns[rule_i]
        for i in range(size):
            match_key, target_key, rule = prefix + escaped(matches[i]), target_keys[i], rules[i]
            superseded = target_key in copied
            target_key = summary.escape(target_key)
            canon = subset[i] if superseded else canons[i]
            segment = fp.add(match_key, canon)
            if wanted_set is not None and segment not in wanted_set:
                summary.stray.add(segment)
            buffers[segment].append(
                f"{match_key}\t{canon}\t{target_key}\t{rule or ''}\t{int(superseded)}\n"
            )
            if rule is not None and is_merge(rule):
                summary.merged.append((match_key, target_key, rule))
        spill.flush_full()
    return n


def _few_rows_server_side(engine: Engine) -> bool:
    """For a query returning few rows from a large join: PostgreSQL runs it in parallel only
    through a client-side cursor; elsewhere a server-side cursor costs nothing."""
    return engine.dialect.name != "postgresql"


def _unreached(spec: SurvivalSpec, engine: Engine, summary: SideSummary) -> None:
    """Target records no source record of this class reaches: target-only, duplicate or orphan."""
    target = spec.target
    cols = _target_columns(spec)
    rel = Relation(target.population, cols)
    base = sa.select(sa.func.count()).select_from(rel.from_)
    if rel.filter is not None:
        base = base.where(rel.filter)
    summary.target_total = int(fetch_all(engine, base)[0][0])
    reached: list[Any] = []
    if spec.locate.crosswalk is not None:
        xw, c = crosswalk_table(spec, "xu")
        reached.append(
            sa.exists().where(
                xw.c[c["target_table"]] == spec.locate.crosswalk.target_table,
                xw.c[c["target_key"]] == rel.col(target.key_columns[0]),
                xw.c[c["source_table"]].in_(sorted({s.crosswalk_table for s in spec.sources})),
            )
        )
    else:
        for i, p in enumerate(spec.locate.parents):
            xp, c = crosswalk_table(spec, f"xu{i}")
            reached.append(
                sa.exists().where(
                    xp.c[c["target_table"]] == p.target_table,
                    xp.c[c["target_key"]] == rel.col(p.column),
                    xp.c[c["source_table"]].in_(sorted(set(p.source_tables.values()))),
                )
            )
    if (
        spec.deletions is not None
        and spec.locate.crosswalk is not None
        and has_table(engine, spec.deletions.table)
    ):
        # A record kept after its source record was deleted is explained by that record.
        d = spec.deletions
        c = d.columns
        dt_ = sa.table(
            d.table,
            *(sa.column(c[k]) for k in ("source_table", "target_table", "target_key", "action")),
        ).alias("xd")
        kept = sa.exists().where(
            dt_.c[c["target_table"]] == spec.locate.crosswalk.target_table,
            dt_.c[c["target_key"]] == rel.col(target.key_columns[0]),
            dt_.c[c["source_table"]].in_(sorted({s.crosswalk_table for s in spec.sources})),
            dt_.c[c["action"]] != "retired",
        )
        reached = [sa.or_(sa.and_(*reached), kept)]
    only = [
        sa.case((where(t.where, rel.col), 1), else_=0).label(f"only{i}")
        for i, t in enumerate(target.target_only)
    ]
    stmt = sa.select(
        *(rel.col(k) for k in target.key_columns),
        *(rel.col(k) for k in target.duplicate_key),
        *only,
    ).select_from(rel.from_)
    counted = sa.select(sa.func.count()).select_from(rel.from_).where(sa.and_(*reached))
    if rel.filter is not None:
        counted = counted.where(rel.filter)
    summary.target_reached = int(fetch_all(engine, counted)[0][0])
    conds = [sa.not_(sa.and_(*reached))]
    if rel.filter is not None:
        conds.append(rel.filter)
    stmt = stmt.where(*conds)
    nk, nd = len(target.key_columns), len(target.duplicate_key)
    candidates: dict[tuple[Any, ...], list[str]] = {}
    for rows in stream(engine, stmt, server_side=_few_rows_server_side(engine)):
        for row in rows:
            key = summary.escape("|".join(str(v) for v in row[:nk]))
            flags = row[nk + nd :]
            hit = next((t.name for t, f in zip(target.target_only, flags, strict=True) if f), None)
            if hit is not None:
                summary.unreached.append((key, "TARGET_ONLY", hit))
            elif nd and all(v is not None for v in row[nk : nk + nd]):
                candidates.setdefault(tuple(row[nk : nk + nd]), []).append(key)
            else:
                summary.unreached.append((key, "ORPHAN", None))
    if candidates:
        _duplicates(spec, engine, rel, reached, candidates, summary)
    if target.duplicate_key:
        _reached_duplicates(spec, engine, rel, reached, summary)


def _reached_duplicates(
    spec: SurvivalSpec, engine: Engine, rel: Relation, reached: list[Any], summary: SideSummary
) -> None:
    """Records the crosswalk reaches that share a duplicate key: a record landed twice, each
    copy with its own crosswalk entry. The first (by key) is the original, the rest copies."""
    dup = [rel.col(k) for k in spec.target.duplicate_key]
    keys = [rel.col(k) for k in spec.target.key_columns]
    conds = [sa.and_(*reached), *([rel.filter] if rel.filter is not None else [])]
    groups = (
        sa.select(*dup)
        .select_from(rel.from_)
        .where(*conds)
        .group_by(*dup)
        .having(sa.func.count() > 1)
    )
    lhs = dup[0] if len(dup) == 1 else sa.tuple_(*dup)
    stmt = sa.select(*dup, *keys).select_from(rel.from_).where(*conds, lhs.in_(groups))
    by_value: dict[tuple[Any, ...], list[str]] = {}
    for rows in stream(engine, stmt, server_side=_few_rows_server_side(engine)):
        for row in rows:
            value = tuple(row[: len(dup)])
            by_value.setdefault(value, []).append(
                summary.escape("|".join(str(v) for v in row[len(dup) :]))
            )
    for members in by_value.values():
        original, *copies = sorted(members)
        summary.landed_twice.add(original)
        for copy in copies:
            summary.landed_twice.add(copy)
            summary.duplicates.append((copy, original))
            summary.unreached.append((copy, "DUPLICATED", original))
            summary.reached_copies.add(copy)


def _duplicates(
    spec: SurvivalSpec,
    engine: Engine,
    rel: Relation,
    reached: list[Any],
    candidates: dict[tuple[Any, ...], list[str]],
    summary: SideSummary,
) -> None:
    """An unreached record sharing the duplicate key of a reached one is a DUPLICATED copy."""
    dup = spec.target.duplicate_key
    values = list(candidates)
    originals: dict[tuple[Any, ...], str] = {}
    for start in range(0, len(values), 500):
        batch = values[start : start + 500]
        stmt = (
            sa.select(*(rel.col(k) for k in dup), *(rel.col(k) for k in spec.target.key_columns))
            .select_from(rel.from_)
            .where(sa.and_(*reached), sa.tuple_(*(rel.col(k) for k in dup)).in_(batch))
        )
        if rel.filter is not None:
            stmt = stmt.where(rel.filter)
        for row in fetch_all(engine, stmt):
            originals.setdefault(
                tuple(row[: len(dup)]), summary.escape("|".join(str(v) for v in row[len(dup) :]))
            )
    for value, keys in candidates.items():
        original = originals.get(value)
        for key in keys:
            if original is None:
                summary.unreached.append((key, "ORPHAN", None))
            else:
                summary.unreached.append((key, "DUPLICATED", original))
                summary.duplicates.append((key, original))
                summary.landed_twice.update((key, original))
