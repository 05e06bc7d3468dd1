"""The target side fingerprinted inside PostgreSQL: segment aggregates without reading rows.

Reading a million target rows out through the driver and normalising them in Python is most of
a reconciliation's time. PostgreSQL can instead compute, per hash segment, the count and the
sum of the rows' keyed fingerprints itself, and send back one row per segment. The comparison
then reads target rows only for the segments whose aggregates differ from the source's.

This is exact, not an approximation, because of how the SQL is written:

- Each compared field's target normaliser chain is translated to SQL for the column's type
  (learnt from the located statement's result description, never from the schema). A chain or
  type without a translation makes the whole class use the Python side.
- Where PostgreSQL and Python could disagree (text that is not printable ASCII, whose case and
  whitespace rules differ), the row's text becomes a *poison* text with one field separator
  more than any canonical text can hold. The row's fingerprint then matches nothing: its segment is
  opened and compared in Python. A translation can thus only ever cost time, never hide a
  difference.
- Segment and fingerprint are the same functions as :class:`reconcile.sides.Fingerprinter`'s:
  the first four bytes of the match key's MD5, and HMAC-MD5 of match key and canonical fields
  (its first 64 bits, summed modulo 2^64). The key is sent to the server as a bound parameter.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine
from sqlalchemy.dialects.postgresql import BIT

from reconcile.columns import ESCAPE, SEP
from reconcile.sides import MASK64, crosswalk_table, hmac_pads, located_statement
from reconcile.spec import NormaliserSpec, SourceSpec, SurvivalSpec
from reconcile.sql import fetch_all, stream

WILDCARD_SQL = sa.literal("\x1d*")  # the wildcard as a fingerprint message writes it

# PostgreSQL type OIDs the translation knows.
_TEXT = {25, 1043, 19}  # text, varchar, name (not char(n): its padding reads differently)
_INT = {20, 21, 23}
_BOOL = {16}
_DATE = {1082}
_TS = {1114}
_TSTZ = {1184}


class NotPushable(Exception):
    """This class's target side cannot be fingerprinted in the database."""


def applicable(spec: SurvivalSpec, engine: Engine) -> bool:
    """Whether the target side may be pushed down at all (before any translation)."""
    return engine.dialect.name == "postgresql" and spec.locate.crosswalk is not None


# --- normalisers as SQL ------------------------------------------------------------------------


_WORDS = "[!-~]+( [!-~]+)*"
#: Fields (joined by the separator) of printable ASCII, where Python's and PostgreSQL's case
#: rules agree, each single spaced with no space at either end, which trimming leaves alone.
_PLAIN = f"^({_WORDS})?({SEP}({_WORDS})?)*$"


def _ascii(expr: Any) -> Any:
    return expr.op("~")(sa.literal(_PLAIN))


class _Value:
    """A value in a normaliser chain: its SQL and kind (text, int, bool, date, ts)."""

    def __init__(self, sql: Any, kind: str) -> None:
        self.sql, self.kind = sql, kind


def _step(name: str, args: Any, v: _Value) -> _Value:
    k = v.kind
    if k == "digest":
        raise NotPushable(f"{name} after text_digest")
    if name == "trim":
        # The row's check (see Located) holds only text without leading, trailing or doubled
        # spaces: there trimming only turns empty text into NULL.
        return _Value(sa.func.nullif(v.sql, ""), k) if k == "text" else v
    if name in ("upper", "lower"):
        if k != "text":
            return v
        fn = sa.func.upper if name == "upper" else sa.func.lower
        return _Value(fn(v.sql), k)
    if name == "null_if":
        if k != "text":
            return v
        values = args if isinstance(args, list) else [] if args is None else [args]
        blanks = sorted({str(x).strip().upper() for x in values})
        stripped = sa.func.upper(v.sql)  # trimmed already (the row's check)
        return _Value(
            sa.case((stripped.in_(blanks), sa.null()), else_=v.sql),
            k,
        )
    if name == "integer":
        if k in ("int", "bool"):
            return _Value(sa.cast(v.sql, sa.Integer) if k == "bool" else v.sql, "int")
        raise NotPushable(f"integer of {k}")
    if name == "boolean":
        empty = (args or {}).get("empty")
        if empty is not None and not isinstance(empty, bool):
            raise NotPushable("boolean with an empty value that is not a boolean")
        if k == "bool":
            sql = v.sql if empty is None else sa.func.coalesce(v.sql, sa.literal(bool(empty)))
            return _Value(sql, "bool")
        if k == "int":
            sql = v.sql.op("<>")(0)
            if empty is not None:
                sql = sa.func.coalesce(sql, sa.literal(bool(empty)))
            return _Value(sql, "bool")
        raise NotPushable(f"boolean of {k}")
    if name == "date":
        if k == "date":
            return v
        if k == "ts":
            return _Value(sa.cast(v.sql, sa.Date), "date")
        raise NotPushable(f"date of {k}")
    if name == "datetime":
        if (args or {}).get("local"):
            raise NotPushable("datetime with a local time zone")
        if k == "ts":
            return _Value(v.sql, "minute")
        raise NotPushable(f"datetime of {k}")
    if name == "text_digest":
        if k != "text":
            raise NotPushable(f"text_digest of {k}")
        digest = sa.func.encode(sa.func.sha256(sa.func.convert_to(v.sql, "UTF8")), "hex")
        sql = sa.func.length(v.sql).cast(sa.Text) + ":" + sa.func.substr(digest, 1, 16)
        return _Value(sql, "digest")  # of any text: lengths and digests agree
    raise NotPushable(f"normaliser {name}")


def _canonical(v: _Value) -> Any:
    """The value's canonical text (:func:`reconcile.columns.text`), poison where unsafe."""
    k = v.kind
    if k in ("text", "digest"):
        sql = v.sql
    elif k == "int":
        sql = sa.cast(v.sql, sa.Text)
    elif k == "bool":
        sql = sa.case((v.sql, sa.literal("1")), else_=sa.literal("0"))
        sql = sa.case((v.sql.is_(None), sa.null()), else_=sql)
    elif k == "date":
        sql = sa.func.to_char(v.sql, "YYYY-MM-DD")
    elif k == "minute":
        sql = sa.func.to_char(v.sql, "YYYY-MM-DD HH24:MI")
    elif k == "ts":
        sql = sa.func.to_char(v.sql, "YYYY-MM-DD HH24:MI:SS")
    else:  # pragma: no cover - every kind is listed
        raise NotPushable(k)
    return sa.func.coalesce(sql, sa.literal("\\N"))


def _kind(oid: int) -> str:
    if oid in _TEXT:
        return "text"
    if oid in _INT:
        return "int"
    if oid in _BOOL:
        return "bool"
    if oid in _DATE:
        return "date"
    if oid in _TS:
        return "ts"
    raise NotPushable(f"column type {oid}")


def field_sql(spec_: NormaliserSpec | None, column: Any, oid: int) -> tuple[Any, bool, Any]:
    """One compared field's canonical text in SQL: its normaliser chain over ``column``;
    whether it is exact only where the raw column is plain text (printable ASCII, single
    spaced, trimmed: see :class:`Located`); and a condition it is exact only under, or None."""
    kind = _kind(oid)
    v = _Value(column, kind)
    text_steps = False
    for step in spec_.steps if spec_ is not None else ():
        name, args = (step, None) if isinstance(step, str) else next(iter(step.items()))
        if isinstance(args, dict) and any(str(a).startswith("$") for a in args.values()):
            raise NotPushable("an argument resolved at run time")
        text_steps = text_steps or (v.kind == "text" and name in _TEXT_STEPS)
        v = _step(name, args, v)
    # Text steps keep plain text plain; on it Python's and PostgreSQL's case and whitespace
    # rules agree, and Python writes it unescaped. A digest of any text agrees as it is.
    plain = v.kind == "text" or text_steps
    exact = None
    if kind in ("date", "ts"):
        # PostgreSQL holds dates Python cannot (infinity, BC, years past 9999), and writes
        # 1 BC as 0001: such a row is poisoned.
        exact = sa.or_(
            column.is_(None),
            sa.and_(
                sa.func.isfinite(column),
                column >= sa.cast(sa.literal("0001-01-01"), sa.Date),
                column < sa.cast(sa.literal("10000-01-01"), sa.Date),
            ),
        )
    return _canonical(v), plain, exact


_TEXT_STEPS = frozenset({"trim", "upper", "lower", "null_if"})


# --- the aggregate query -----------------------------------------------------------------------


def match_key(system: str, key: Any) -> Any:
    """A match key as the Python side writes it: ``system SEP escaped(str(key))``."""
    text: Any = sa.func.coalesce(sa.cast(key, sa.Text), sa.literal("None"))
    for raw, written in ESCAPE.items():
        text = sa.func.replace(text, sa.literal(chr(raw)), sa.literal(written))
    return sa.literal(system + SEP) + text


def segment_sql(match_key: Any, segments: int) -> Any:
    """:func:`reconcile.sides.segment_of` in SQL."""
    head = sa.func.substr(sa.func.md5(sa.func.convert_to(match_key, "UTF8")), 1, 8)
    return sa.cast(sa.cast(sa.literal("x") + head, BIT(32)), sa.BigInteger) % segments


def fingerprint_sql(message: Any, key: bytes) -> Any:
    """HMAC-MD5 of ``message`` (text), its first 64 bits as a signed bigint."""
    inner, outer = hmac_pads(key)
    msg = sa.func.convert_to(message, "UTF8")
    inner_digest = sa.func.decode(
        sa.func.md5(sa.literal(inner, sa.LargeBinary).op("||")(msg)), "hex"
    )
    outer_hex = sa.func.md5(sa.literal(outer, sa.LargeBinary).op("||")(inner_digest))
    return sa.cast(
        sa.cast(sa.literal("x") + sa.func.substr(outer_hex, 1, 16), BIT(64)),
        sa.BigInteger,
    )


class Located:
    """One source's located target rows as SQL: match key, canonical text, rule, target key."""

    def __init__(self, spec: SurvivalSpec, source: SourceSpec, engine: Engine) -> None:
        stmt, names = located_statement(spec, source)
        pos = {n: i for i, n in enumerate(names)}
        compare = source.newer_copy.compare if source.newer_copy else None
        if compare is not None:
            # Superseded (a newer copy leads to the same target record): one lookup per row.
            located = stmt.subquery("located")
            first = list(located.c)
            copies = self._copies(spec, source)
            key = first[next(i for n, i in pos.items() if n.startswith("key"))]
            stmt = sa.select(
                *first,
                sa.case((copies.c.target_key.is_(None), 0), else_=1).label("superseded_pd"),
            ).select_from(located.outerjoin(copies, copies.c.target_key == sa.cast(key, sa.String)))
        sub = stmt.subquery("rows")
        cols = list(sub.c)
        with engine.connect() as conn:
            description = conn.exec_driver_sql(_limit0(engine, stmt)).cursor.description
            types: list[int] = [d[1] for d in description]  # type: ignore[misc]
        texts = []
        guarded = []  # raw text columns that must be plain text
        conditions: list[Any] = []  # and other conditions a row must meet
        for f in spec.fields.values():
            if f.translate:
                i = pos[f"field:{f.name}"]
            elif len(f.target) == 1:
                i = pos[f"field:{f.name}:{f.target[0]}"]
            else:
                raise NotPushable("a field of several target columns")
            norm = f.target_normaliser(source.fields[f.name])
            text, plain, exact = field_sql(norm, cols[i], types[i])
            if plain:
                guarded.append(cols[i])
            if exact is not None:
                conditions.append(exact)
            if compare is not None and f.name not in compare:
                text = sa.case((cols[-1] == 1, WILDCARD_SQL), else_=text)
            texts.append(text)
        key_idx = [i for i, n in enumerate(names) if n.startswith("key")]
        if len(key_idx) != 1:
            raise NotPushable("a composite target key")
        if types[pos["match"]] not in _TEXT | _INT:
            raise NotPushable("a crosswalk key that is neither text nor a whole number")
        self.match = match_key(source.system, cols[pos["match"]])
        if not texts:
            raise NotPushable("no compared fields")
        canon = texts[0]
        for t in texts[1:]:
            canon = canon + sa.literal(SEP) + t
        if guarded:
            # One check per row, over every text column at once: printable ASCII words single
            # spaced, no space at either end. A row with any other text is poisoned whole (its
            # segment is then compared in Python).
            conditions.append(_ascii(sa.func.concat_ws(sa.literal(SEP), *guarded)))
        if conditions:
            # Poison: as many separators as fields, where a canonical text has one fewer (a
            # separator inside a value is written as a space), so it equals no canonical text.
            poison = sa.literal(SEP * len(texts) + "pushdown")
            canon = sa.case((sa.and_(*conditions), canon), else_=poison)
        self.canon = canon
        self.rule = cols[pos["rule"]]
        # The rules the crosswalk holds for this source: read from the crosswalk alone, not
        # from a second pass over the located rows (a superset of theirs, which is enough to
        # pick the merges out).
        xr, c = crosswalk_table(spec, "xr")
        assert spec.locate.crosswalk is not None  # applicable() saw to it
        self.rules = (
            sa.select(xr.c[c["rule"]])
            .where(
                xr.c[c["source_system"]] == source.system,
                xr.c[c["source_table"]] == source.crosswalk_table,
                xr.c[c["target_table"]] == spec.locate.crosswalk.target_table,
            )
            .distinct()
        )
        self.target_key = cols[key_idx[0]]
        self.from_ = sub

    @staticmethod
    def _copies(spec: SurvivalSpec, source: SourceSpec) -> Any:
        """Target keys the newer copy's system leads to (:func:`reconcile.sides.copied_targets`)."""
        copy = source.newer_copy
        assert copy is not None and spec.locate.crosswalk is not None
        xc, c = crosswalk_table(spec, "xc_pd")
        return (
            sa.select(xc.c[c["target_key"]].label("target_key"))
            .where(
                xc.c[c["source_system"]] == copy.system,
                xc.c[c["source_table"]] == copy.table,
                xc.c[c["target_table"]] == spec.locate.crosswalk.target_table,
            )
            .distinct()
            .subquery("copies")
        )


def _limit0(engine: Engine, stmt: Any) -> str:
    """The statement with no rows, as literal SQL (for its result's column types)."""
    compiled = stmt.limit(0).compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True})
    return str(compiled)


def aggregates(
    spec: SurvivalSpec,
    loc: Located,
    engine: Engine,
    key: bytes,
    counts: list[int],
    sums: list[int],
    is_merge: Callable[[str | None], bool],
) -> tuple[int, list[tuple[str, str, str]]]:
    """Add one source's located target rows into ``counts`` and ``sums`` (per segment), in the
    database; return how many rows there were and the merged ones (match key, target key as the
    database holds it, rule).
    ``loc`` is made first for every source: it raises :class:`NotPushable` before any row is
    read when the class cannot be pushed down."""
    segment = segment_sql(loc.match, spec.segments).label("segment")
    fp = fingerprint_sql(loc.match + sa.literal("\x1e") + loc.canon, key)
    inner = sa.select(segment, fp.label("fp")).select_from(loc.from_).subquery("f")
    stmt = sa.select(inner.c.segment, sa.func.count(), sa.func.sum(inner.c.fp)).group_by(
        inner.c.segment
    )
    total = 0
    for seg, n, s in fetch_all(engine, stmt):
        total += int(n)
        counts[int(seg)] += int(n)
        sums[int(seg)] = (sums[int(seg)] + int(s)) & MASK64
    rules = [r[0] for r in fetch_all(engine, loc.rules)]
    wanted = [r for r in rules if r is not None and is_merge(r)]
    merged: list[tuple[str, str, str]] = []
    if wanted:
        stmt = (
            sa.select(loc.match, loc.target_key, loc.rule)
            .select_from(loc.from_)
            .where(loc.rule.in_(wanted))
        )
        for rows in stream(engine, stmt):
            merged += [(str(m), str(k), str(r)) for m, k, r in rows]
    return total, merged


def only_segments(
    stmt: Any, names: list[str], system: str, segments: int, wanted: list[int]
) -> Any:
    """``stmt`` (a located statement) restricted to rows in the ``wanted`` segments."""
    sub = stmt.subquery("located")
    cols = list(sub.c)
    match = match_key(system, cols[names.index("match")])
    return sa.select(*cols).where(segment_sql(match, segments).in_(wanted))
