"""SQL for reconciliation, built with SQLAlchemy Core so that quoting suits every dialect.

Reconcile never reflects or imports a schema: it names the tables and columns its spec names.
Rows are streamed through the DB-API driver (a server-side cursor on PostgreSQL and MariaDB):
nothing is read whole into memory.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from continuity.domain.connect import MYSQL_FAMILY, redact
from continuity.domain.errors import ReconcileError, driver_message
from reconcile.spec import Population

_cursor_names = itertools.count()


class Relation:
    """A population's FROM clause, with columns addressed as ``col`` or ``alias.col``."""

    def __init__(self, population: Population, columns: Sequence[str]) -> None:
        self.population = population
        needed: dict[str, list[str]] = {}
        base = "__base__"
        for ref in (*columns, *_where_columns(population.where)):
            alias, col = _split(ref, base)
            needed.setdefault(alias, []).append(col)
        for j in population.joins:
            for local, remote in j.on:
                alias, col = _split(local, base)
                needed.setdefault(alias, []).append(col)
                needed.setdefault(j.alias, []).append(remote)
            for col in _where_columns(j.where):
                needed.setdefault(j.alias, []).append(col)
        base_cols = sorted(set(needed.get(base, [])))
        if population.query is not None:
            self.base: Any = (
                sa.text(population.query).columns(*(sa.column(c) for c in base_cols)).subquery("q")
            )
        else:
            assert population.table is not None
            self.base = _table(population.table, base_cols)
        self.aliases: dict[str, Any] = {base: self.base}
        if population.table is not None:
            self.aliases[population.table] = self.base
        joined: Any = self.base
        for j in population.joins:
            other = _table(j.table, sorted(set(needed[j.alias]))).alias(j.alias)
            self.aliases[j.alias] = other
            cond = sa.and_(
                *(self.col(local) == other.c[remote] for local, remote in j.on),
                *([where(j.where, lambda c, o=other: o.c[c])] if j.where else []),
            )
            joined = joined.outerjoin(other, cond)
        self.from_ = joined
        self.filter = where(population.where, self.col) if population.where else None

    def col(self, ref: str) -> Any:
        alias, col = _split(ref, "__base__")
        return self.aliases[alias].c[col]


def _split(ref: str, base: str) -> tuple[str, str]:
    alias, _, col = ref.rpartition(".")
    return (alias or base), col


def _table(name: str, columns: Sequence[str]) -> Any:
    schema, _, table = name.rpartition(".")
    return sa.table(table, *(sa.column(c) for c in columns), schema=schema or None)


def _where_columns(w: Any) -> list[str]:
    if not w:
        return []
    out: list[str] = []
    for key, value in w.items():
        if key in ("any", "all"):
            for part in value:
                out += _where_columns(part)
        else:
            out.append(key)
    return out


_OPS = {
    "eq": lambda c, v: c.is_(None) if v is None else c == v,
    "ne": lambda c, v: c.is_not(None) if v is None else c != v,
    "lt": lambda c, v: c < v,
    "le": lambda c, v: c <= v,
    "gt": lambda c, v: c > v,
    "ge": lambda c, v: c >= v,
    "in": lambda c, v: c.in_(v),
    "is_null": lambda c, v: c.is_(None) if v else c.is_not(None),
}


def where(w: Any, col: Any) -> Any:
    """Compile the spec's filter grammar (``{col: value}``, ``any``/``all``, ``{op: v}``)."""
    parts = []
    for key, value in w.items():
        if key == "any":
            parts.append(sa.or_(*(where(p, col) for p in value)))
        elif key == "all":
            parts.append(sa.and_(*(where(p, col) for p in value)))
        elif isinstance(value, list):
            parts.append(col(key).in_(value))
        elif isinstance(value, dict):
            op, v = next(iter(value.items()))
            parts.append(_OPS[op](col(key), v))
        else:
            parts.append(_OPS["eq"](col(key), value))
    return sa.and_(*parts)


def stream(
    engine: Engine, statement: Any, batch: int = 20_000, server_side: bool = True
) -> Iterator[list[tuple[Any, ...]]]:
    """Yield lists of row tuples through the driver, server-side where the driver allows (and
    ``server_side``: PostgreSQL plans a server-side cursor's query without parallel workers)."""
    compiled = statement.compile(
        dialect=engine.dialect, compile_kwargs={"render_postcompile": True}
    )
    sql = str(compiled)
    # Always pass parameters, even none: a pyformat driver then reads the "%%" the compiler
    # wrote for a literal "%" as "%" (without them, "%%" would reach the server unchanged).
    params: Any = compiled.params
    if engine.dialect.paramstyle in ("qmark", "numeric", "format"):
        params = tuple(compiled.params[name] for name in compiled.positiontup or ())
    backend = engine.dialect.name
    raw: Any = None
    try:
        raw = engine.raw_connection()
        if not server_side:
            cursor = raw.cursor()
        elif backend == "postgresql":
            cursor = raw.driver_connection.cursor(name=f"reconcile_{next(_cursor_names)}")
            cursor.itersize = batch
        elif backend in MYSQL_FAMILY:
            import pymysql.cursors

            cursor = raw.driver_connection.cursor(pymysql.cursors.SSCursor)
        else:
            cursor = raw.cursor()
        cursor.execute(sql, params)
        while True:
            rows = cursor.fetchmany(batch)
            if not rows:
                break
            yield rows
        cursor.close()
    except (SQLAlchemyError, engine.dialect.loaded_dbapi.Error) as exc:
        shown = " ".join(sql.split())[:200]
        raise ReconcileError(
            f"{redact(str(engine.url))}: {driver_message(exc)} (in: {shown})"
        ) from exc
    finally:
        if raw is not None:
            if backend == "postgresql":
                raw.driver_connection.rollback()
            raw.close()


def fetch_all(engine: Engine, statement: Any) -> list[tuple[Any, ...]]:
    """A small result (a drill-down batch, a count, an aggregate), read whole: through a
    client-side cursor, so that PostgreSQL may scan a large table for it in parallel."""
    return [row for rows in stream(engine, statement, server_side=False) for row in rows]
