"""Database plumbing for the core package: engines, reachability, bulk writes, digests.

Writes go through the DB-API driver's bulk path (``executemany`` on sqlite3 and PyMySQL, ``COPY``
on PostgreSQL): SQLAlchemy's ``insert()`` with dicts is four times slower here.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import itertools
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, MetaData, Select, inspect, select

from continuity.domain.connect import MYSQL_FAMILY
from continuity.domain.digest import row_text

sqlite3.register_adapter(dt.date, dt.date.isoformat)
sqlite3.register_adapter(dt.datetime, lambda v: v.isoformat(" ", "microseconds"))


_streams = itertools.count()


def stream(
    conn: Connection, statement: Select[Any], size: int = 20_000
) -> Iterator[tuple[Any, ...]]:
    """The rows of a ``SELECT`` as the driver returns them, read from its cursor ``size`` at a
    time: hundreds of thousands of narrow rows (crosswalk keys, digests) cost more as
    SQLAlchemy's rows than as the driver's tuples. The driver's values are not converted, so
    the columns read are those it returns as they are (text, numbers). PostgreSQL and
    MariaDB stream through a server-side cursor, in ``conn``'s transaction; the rows must be
    read to the end (or the generator closed) before ``conn`` runs anything else."""
    dialect = conn.dialect
    compiled = statement.compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
    values = compiled.construct_params()
    params: Any = values
    if dialect.paramstyle in ("qmark", "numeric", "format"):
        params = tuple(values[name] for name in compiled.positiontup or ())
    if not conn.in_transaction():
        conn.begin()  # (as its own execute would: its rollback then ends what the driver began)
    raw: Any = conn.connection.dbapi_connection
    if dialect.name == "postgresql":
        cursor = raw.cursor(name=f"continuity_stream_{next(_streams)}")
    elif dialect.name in MYSQL_FAMILY:
        import pymysql.cursors

        cursor = raw.cursor(pymysql.cursors.SSCursor)
    else:
        cursor = raw.cursor()
    try:
        cursor.execute(str(compiled), params)
        while rows := cursor.fetchmany(size):
            yield from rows
    except BaseException:
        with contextlib.suppress(Exception):  # (the error that stopped the read is the one)
            cursor.close()
        raise
    cursor.close()


def existing_tables(engine: Engine, metadata: MetaData) -> list[str]:
    """Tables of ``metadata`` that already exist in the database (case-insensitively)."""
    present = {name.lower() for name in inspect(engine).get_table_names()}
    return [t.name for t in metadata.sorted_tables if t.name.lower() in present]


class BulkWriter:
    """Appends row tuples to tables of one database through the driver's bulk path.

    Rows are tuples in the table's column order. Call :meth:`commit` at checkpoints and
    :meth:`close` at the end.
    """

    def __init__(
        self, engine: Engine, metadata: MetaData, scratch: bool = False, cache_mb: int = 64
    ) -> None:
        """Args:
        engine: where to write.
        metadata: the tables rows will be written to.
        scratch: the database is disposable until the writer is done (the estate generator
            deletes it on failure), so SQLite may skip its rollback journal.
        cache_mb: SQLite page cache; random-key inserts slow down sharply once an index
            outgrows it.
        """
        self.dialect = engine.dialect.name
        self.raw = engine.raw_connection()
        self.metadata = metadata
        quote = engine.dialect.identifier_preparer.quote
        self._sql: dict[str, str] = {}
        for table in metadata.sorted_tables:
            cols = ", ".join(quote(c.name) for c in table.columns)
            if self.dialect == "postgresql":
                self._sql[table.name] = f"COPY {quote(table.name)} ({cols}) FROM STDIN"
            else:
                mark = "?" if self.dialect == "sqlite" else "%s"
                marks = ", ".join([mark] * len(table.columns))
                self._sql[table.name] = f"INSERT INTO {quote(table.name)} ({cols}) VALUES ({marks})"
        cur = self.raw.cursor()
        if self.dialect == "sqlite":
            cur.execute("PRAGMA synchronous=OFF")
            cur.execute(f"PRAGMA cache_size=-{cache_mb * 1024}")
            if scratch:
                cur.execute("PRAGMA journal_mode=OFF")
        elif self.dialect in MYSQL_FAMILY:
            # Strict (a value that does not fit is an error, never silently cut), but without
            # NO_ZERO_DATE: zero dates are a PoliceWorks-on-MariaDB quirk the estate reproduces.
            cur.execute(
                "SET SESSION sql_mode = "
                "'STRICT_TRANS_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION'"
            )
            cur.execute("SET SESSION foreign_key_checks = 0, unique_checks = 0")
        cur.close()
        self.counts: dict[str, int] = dict.fromkeys(self._sql, 0)
        self._closed = False

    def write(self, table: str, rows: Sequence[tuple[Any, ...]]) -> None:
        if not rows:
            return
        cur = self.raw.cursor()
        if self.dialect == "postgresql":
            with cur.copy(self._sql[table]) as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            cur.executemany(self._sql[table], rows)
        cur.close()
        self.counts[table] += len(rows)

    def write_all(self, rows: dict[str, list[tuple[Any, ...]]]) -> None:
        """Write several tables' rows, parents before children (foreign keys are checked)."""
        for table in self.metadata.sorted_tables:
            if table.name in rows:
                self.write(table.name, rows[table.name])

    def commit(self) -> None:
        self.raw.commit()

    def close(self) -> None:
        """Release the connection; anything not committed is rolled back (and its locks freed)."""
        if not self._closed:
            self._closed = True
            self.raw.close()

    def __enter__(self) -> BulkWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def database_digests(url: str, metadata: MetaData) -> dict[str, tuple[int, str]]:
    """:func:`table_digest` of every table of ``metadata`` in the database at ``url``."""
    from continuity.domain.connect import engine_for

    engine = engine_for(url)
    try:
        return {t.name: table_digest(engine, t.name, metadata) for t in metadata.sorted_tables}
    finally:
        engine.dispose()


def table_digest(engine: Engine, table_name: str, metadata: MetaData) -> tuple[int, str]:
    """Row count and an order-independent digest of a table's content.

    The digest is the sum modulo 2**256 of the SHA-256 of each row's canonical text, so it does
    not depend on collation order, which differs between SQLite, PostgreSQL and MariaDB.
    """
    table = metadata.tables[table_name]
    total = 0
    count = 0
    with engine.connect() as conn:
        result = conn.execution_options(yield_per=10_000).execute(select(table))
        for row in result:
            total += int.from_bytes(hashlib.sha256(row_text(row).encode("utf-8")).digest(), "big")
            count += 1
    return count, f"{total % (1 << 256):064x}"


def create_tables(engine: Engine, metadata: MetaData, with_indexes: bool = True) -> None:
    """Create the tables of ``metadata``; secondary indexes only if asked.

    Bulk loads build secondary indexes afterwards (:func:`create_indexes`): one sort at the end
    is several times cheaper than keeping a B-tree in order through millions of random inserts.
    """
    if with_indexes:
        metadata.create_all(engine)
        return
    from sqlalchemy.schema import CreateTable

    with engine.begin() as conn:
        for table in metadata.sorted_tables:
            conn.execute(CreateTable(table))


def create_indexes(engine: Engine, metadata: MetaData) -> None:
    """Create every secondary index of ``metadata`` (after a bulk load), then gather statistics.

    A freshly loaded server table has none until autovacuum comes round, and the planner then
    joins millions of rows by nested loops as if each table held one row.
    """
    for table in metadata.sorted_tables:
        for index in table.indexes:
            index.create(engine)
    analyze(engine, metadata)


def analyze(engine: Engine, metadata: MetaData) -> None:
    """Refresh the planner's statistics on ``metadata``'s tables (PostgreSQL and MariaDB)."""
    from sqlalchemy import text

    if engine.dialect.name == "sqlite":
        return
    preparer = engine.dialect.identifier_preparer
    with engine.begin() as conn:
        for table in metadata.sorted_tables:
            name = preparer.quote(table.name)
            conn.execute(
                text(
                    f"ANALYZE TABLE {name}"
                    if engine.dialect.name in MYSQL_FAMILY
                    else f"ANALYZE {name}"
                )
            )


def unconstrained(metadata: MetaData) -> MetaData:
    """A copy of ``metadata`` with the same columns and no keys, constraints or indexes."""
    from sqlalchemy import Column, Table

    copy = MetaData()
    for table in metadata.sorted_tables:
        Table(table.name, copy, *(Column(c.name, c.type) for c in table.columns))
    return copy


@contextmanager
def _with_attached(engine: Engine, paths: Sequence[str]) -> Iterator[tuple[Any, list[str]]]:
    """A bulk-tuned SQLite cursor with ``paths`` attached as ``part0``, ``part1`` …

    Commits when the block ends without error; detaches and closes either way.
    """
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        for pragma in ("synchronous=OFF", "journal_mode=OFF", "threads=2", "cache_size=-65536"):
            cur.execute(f"PRAGMA {pragma}")
        parts = [f"part{n}" for n in range(len(paths))]
        for part, path in zip(parts, paths, strict=True):
            cur.execute(f"ATTACH DATABASE ? AS {part}", (path,))
        yield cur, parts
        raw.commit()
        for part in parts:
            cur.execute(f"DETACH DATABASE {part}")
        cur.close()
    finally:
        raw.close()


def load_sorted_from(engine: Engine, staging_paths: Sequence[str], metadata: MetaData) -> None:
    """Fill the (empty) tables of a SQLite database from staging files, in primary-key order.

    Random-key inserts into a large SQLite B-tree cost ~10 µs each once it outgrows the cache;
    appending unkeyed rows to staging files and copying them once in key order is linear. The
    sorter may use two threads. Secondary indexes are built afterwards (:func:`create_indexes`).
    """
    quote = engine.dialect.identifier_preparer.quote
    with _with_attached(engine, staging_paths) as (cur, parts):
        for table in metadata.sorted_tables:
            name = quote(table.name)
            order = ", ".join(quote(c.name) for c in table.primary_key.columns)
            union = " UNION ALL ".join(f"SELECT * FROM {part}.{name}" for part in parts)
            cur.execute(f"INSERT INTO main.{name} SELECT * FROM ({union}) ORDER BY {order}")


def append_from(engine: Engine, part_paths: Sequence[str], metadata: MetaData) -> None:
    """Append every table's rows from other SQLite files of the same (unkeyed) tables."""
    quote = engine.dialect.identifier_preparer.quote
    with _with_attached(engine, part_paths) as (cur, parts):
        for part in parts:
            for table in metadata.sorted_tables:
                name = quote(table.name)
                cur.execute(f"INSERT INTO main.{name} SELECT * FROM {part}.{name}")
