"""The ``sql`` loader: rows straight into the target database through the driver's bulk path.

Per dialect, on one DB-API connection (SQLAlchemy's ``insert()`` with dicts is four times slower):

- SQLite: ``executemany`` of ``INSERT … ON CONFLICT (key) DO UPDATE``; dates, timestamps and
  booleans are stored exactly as SQLAlchemy's SQLite types store them, so SQLAlchemy and
  reconciliation read them back as they read the estate's ideal target.
- PostgreSQL: ``COPY`` into a temporary table, then ``INSERT … SELECT … ON CONFLICT``.
- MariaDB/MySQL: ``executemany`` of ``INSERT … ON DUPLICATE KEY UPDATE`` (PyMySQL sends it as
  multi-row statements) under a strict ``sql_mode``.

Checkpoints live in the target itself, in ``continuity_checkpoint``, written in the same database
transaction as the batch's rows: a run killed at any point finds rows and checkpoints that agree.
An update that would change nothing is skipped (no new row version, no write), so re-running a
finished wave leaves the target untouched.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import Any, ClassVar

from sqlalchemy import (
    Boolean,
    Column,
    Date,
    DateTime,
    MetaData,
    String,
    Table,
    Text,
    inspect,
)
from sqlalchemy.exc import SQLAlchemyError

from continuity.domain.connect import MYSQL_FAMILY, engine_for, redact
from continuity.domain.errors import ConfigError, ContinuityError, LedgerError, driver_message
from continuity.loaders.base import (
    MAX_STEP_LENGTH,
    LoadBatch,
    Loader,
    LoadError,
    first_line,
    primary_key_indexes,
)

#: The loader's bookkeeping table, created by :meth:`SqlLoader.prepare` beside the target's.
CHECKPOINT_TABLE = "continuity_checkpoint"

checkpoint_metadata = MetaData()
checkpoint_table = Table(
    CHECKPOINT_TABLE,
    checkpoint_metadata,
    Column("step", String(MAX_STEP_LENGTH), primary_key=True),
    Column("state", Text, nullable=False),  # canonical JSON
    Column("updated_at", DateTime, nullable=False),  # naive UTC
)

#: MariaDB/MySQL session mode: a value that does not fit is an error, never silently cut, and
#: zero dates are refused (unlike the estate's BulkWriter, which must write them into sources).
MYSQL_SQL_MODE = (
    "STRICT_ALL_TABLES,NO_ZERO_DATE,NO_ZERO_IN_DATE,ERROR_FOR_DIVISION_BY_ZERO,"
    "NO_ENGINE_SUBSTITUTION"
)
#: Keys per ``DELETE … WHERE key IN (…)`` statement on MariaDB (PyMySQL's ``executemany``
#: batches only INSERTs; one statement per key would cost a round trip each).
MYSQL_DELETE_CHUNK = 1000
#: PostgreSQL limits identifiers to 63 bytes.
PG_IDENTIFIER_MAX = 63

_SQLITE_JOURNAL_MODES = ("wal", "delete", "truncate", "persist")
_SQLITE_SYNCHRONOUS = ("normal", "full", "extra")

Converter = Callable[[Sequence[Any]], Sequence[Any]]


def _utc_naive(value: dt.datetime) -> dt.datetime:
    # Target timestamps are naive UTC; drivers would drop an offset silently, shifting the time.
    return value.astimezone(dt.UTC).replace(tzinfo=None)


def _sqlite_date(value: Any) -> str:
    """SQLAlchemy's SQLite ``Date`` storage: ``YYYY-MM-DD`` (a datetime keeps only its date)."""
    if value.__class__ is dt.date:  # the usual case first: this runs for every value
        return value.isoformat()
    if isinstance(value, dt.date):
        return dt.date.isoformat(value)
    raise TypeError(f"expected a date, got {type(value).__name__} {value!r}")


def _sqlite_datetime(value: Any) -> str:
    """SQLAlchemy's SQLite ``DateTime`` storage: ``YYYY-MM-DD HH:MM:SS.ffffff``."""
    if value.__class__ is dt.datetime and value.tzinfo is None:  # the usual case first
        return value.isoformat(" ", "microseconds")
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = _utc_naive(value)
        return value.isoformat(" ", "microseconds")
    if isinstance(value, dt.date):  # as SQLAlchemy does: midnight
        return f"{value.isoformat()} 00:00:00.000000"
    raise TypeError(f"expected a datetime, got {type(value).__name__} {value!r}")


def _typed(table: Table, row: tuple[Any, ...]) -> tuple[Any, ...]:
    """A row read from SQLite with its dates, timestamps and booleans as Python values."""
    out = list(row)
    for i, column in enumerate(table.columns):
        v = out[i]
        if v is None:
            continue
        if isinstance(column.type, DateTime):
            out[i] = dt.datetime.fromisoformat(v)
        elif isinstance(column.type, Date):
            out[i] = dt.date.fromisoformat(v)
        elif isinstance(column.type, Boolean):
            out[i] = bool(v)
    return tuple(out)


def _server_datetime(value: Any) -> Any:
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return _utc_naive(value)
    return value


def _column_converter(column: Column[Any], dialect: str) -> Callable[[Any], Any] | None:
    # Booleans need none: sqlite3 binds True/False as the integers 1/0, which is what
    # SQLAlchemy's SQLite Boolean stores; the server drivers have their own boolean.
    if isinstance(column.type, DateTime):
        if dialect == "postgresql":
            return None  # the server converts: see _pg_fill
        return _sqlite_datetime if dialect == "sqlite" else _server_datetime
    if isinstance(column.type, Date) and dialect == "sqlite":
        return _sqlite_date
    return None


def _row_converter(table: str, columns: Sequence[Column[Any]], dialect: str) -> Converter | None:
    """A function converting a row's values to what the driver must be given, or None."""
    steps = [
        (i, c.name, f)
        for i, c in enumerate(columns)
        if (f := _column_converter(c, dialect)) is not None
    ]
    if not steps:
        return None

    def convert(row: Sequence[Any]) -> Sequence[Any]:
        out = list(row)
        for i, name, f in steps:
            value = out[i]
            if value is not None:
                try:
                    out[i] = f(value)
                except (TypeError, ValueError, OverflowError) as exc:
                    raise LoadError(f"target table {table}, column {name}: {exc}") from None
        return out

    return convert


@dataclass
class _Plan:
    """Everything needed to write one table, prepared once per loader."""

    table: Table
    name: str  # quoted, qualified
    columns: str  # quoted, comma-separated
    key: list[int]
    key_names: list[str]  # quoted
    convert: Converter | None
    convert_key: Converter | None
    upsert: str
    delete: str
    temp: str = ""  # PostgreSQL: the temporary table rows are copied into
    temp_columns: str = ""  # PostgreSQL: its columns, as selected from the target


class SqlLoader(Loader):
    """Load into a SQL database that already holds the target tables.

    Options (SQLite only; ignored elsewhere):

    - ``journal_mode`` (``"wal"``): WAL lets reconciliation read while a wave loads. It is a
      property of the database file and stays set.
    - ``synchronous`` (``"normal"``): with WAL, every committed transaction survives the process
      being killed (SIGKILL included); ``"full"`` also survives power loss, at a cost per commit.
    - ``cache_mb`` (64): page cache; upserts slow down sharply once the key index outgrows it.
    """

    kind: ClassVar[str] = "sql"
    option_defaults: ClassVar[Mapping[str, Any]] = {
        "journal_mode": "wal",
        "synchronous": "normal",
        "cache_mb": 64,
    }

    def __init__(
        self, location: str, metadata: MetaData, options: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(location, metadata, options)
        if self.options["journal_mode"].lower() not in _SQLITE_JOURNAL_MODES:
            raise ConfigError(
                f"sql loader: journal_mode must be one of {', '.join(_SQLITE_JOURNAL_MODES)} "
                f"(a mode without a journal cannot roll a batch back), not "
                f"{self.options['journal_mode']!r}"
            )
        if self.options["synchronous"].lower() not in _SQLITE_SYNCHRONOUS:
            raise ConfigError(
                f"sql loader: synchronous must be one of {', '.join(_SQLITE_SYNCHRONOUS)}, "
                f"not {self.options['synchronous']!r}"
            )
        try:
            self.engine = engine_for(location)
        except ContinuityError as exc:
            raise ConfigError(str(exc)) from exc
        self.dialect = self.engine.dialect.name
        self.url = redact(location)
        self._dbapi_error: type[Exception] = self.engine.dialect.loaded_dbapi.Error
        self._plans = {t.name: self._plan(t, n) for n, t in enumerate(metadata.sorted_tables)}
        self._checkpoint_plan = self._plan(checkpoint_table, len(self._plans))
        self._raw: Any = None
        self._batch: SqlBatch | None = None
        # PostgreSQL temporary tables: those that exist on the connection, those created in the
        # open transaction (a rollback drops them again) and those holding rows in it.
        self._temps: set[str] = set()
        self._temps_new: set[str] = set()
        self._temps_used: set[str] = set()

    # -- statements ------------------------------------------------------------------------

    def _plan(self, table: Table, number: int) -> _Plan:
        preparer = self.engine.dialect.identifier_preparer
        quote = preparer.quote
        name = preparer.format_table(table)
        cols = [quote(c.name) for c in table.columns]
        key = primary_key_indexes(table)
        if not key:
            raise ConfigError(
                f"target table {table.name} has no primary key: it cannot be upserted"
            )
        key_cols = [cols[i] for i in key]
        rest = [c for i, c in enumerate(cols) if i not in key]
        column_list = ", ".join(cols)
        key_list = ", ".join(key_cols)
        convert = _row_converter(table.name, list(table.columns), self.dialect)
        key_columns = [list(table.columns)[i] for i in key]
        convert_key = _row_converter(table.name, key_columns, self.dialect)
        plan = _Plan(table, name, column_list, key, key_cols, convert, convert_key, "", "")
        if self.dialect == "sqlite":
            marks = ", ".join("?" * len(cols))
            if rest:
                sets = ", ".join(f"{c} = excluded.{c}" for c in rest)
                changed = " OR ".join(f"{name}.{c} IS NOT excluded.{c}" for c in rest)
                action = f"DO UPDATE SET {sets} WHERE {changed}"
            else:
                action = "DO NOTHING"
            plan.upsert = (
                f"INSERT INTO {name} ({column_list}) VALUES ({marks}) "
                f"ON CONFLICT ({key_list}) {action}"
            )
            plan.delete = f"DELETE FROM {name} WHERE " + " AND ".join(f"{c} = ?" for c in key_cols)
        elif self.dialect == "postgresql":
            # Numbered: unique even when a long name is cut to PostgreSQL's identifier limit.
            plan.temp = quote(f"continuity_load_{number}_{table.name}"[:PG_IDENTIFIER_MAX])
            plan.temp_columns = ", ".join(
                f"{q}::timestamptz AS {q}" if isinstance(c.type, DateTime) else q
                for q, c in zip(cols, table.columns, strict=True)
            )
            if rest:
                sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in rest)
                old = ", ".join(f"{name}.{c}" for c in rest)
                new = ", ".join(f"EXCLUDED.{c}" for c in rest)
                action = f"DO UPDATE SET {sets} WHERE ({old}) IS DISTINCT FROM ({new})"
            else:
                action = "DO NOTHING"
            plan.upsert = (
                f"INSERT INTO {name} ({column_list}) SELECT {column_list} FROM {plan.temp} "
                f"ON CONFLICT ({key_list}) {action}"
            )
            match = " AND ".join(f"{name}.{c} = {plan.temp}.{c}" for c in key_cols)
            plan.delete = f"DELETE FROM {name} USING {plan.temp} WHERE {match}"
        elif self.dialect in MYSQL_FAMILY:
            marks = ", ".join(["%s"] * len(cols))
            sets = ", ".join(f"{c} = VALUES({c})" for c in (rest or key_cols[:1]))
            plan.upsert = (
                f"INSERT INTO {name} ({column_list}) VALUES ({marks}) "
                f"ON DUPLICATE KEY UPDATE {sets}"
            )
            plan.delete = f"DELETE FROM {name} WHERE ({key_list}) IN "
        else:
            raise ConfigError(
                f"sql loader: no bulk path for {self.dialect} ({self.url}); "
                "supported: sqlite, postgresql, mariadb/mysql"
            )
        return plan

    def _checkpoint_sql(self) -> str:
        """A plain parameterised upsert of one checkpoint row (no COPY for one row)."""
        plan = self._checkpoint_plan
        if self.dialect == "postgresql":
            return (
                f"INSERT INTO {plan.name} ({plan.columns}) VALUES (%s, %s, %s) "
                f"ON CONFLICT ({plan.key_names[0]}) DO UPDATE SET "
                "state = EXCLUDED.state, updated_at = EXCLUDED.updated_at"
            )
        return plan.upsert

    # -- connection ------------------------------------------------------------------------

    def _connection(self) -> Any:
        if self._raw is not None:
            return self._raw
        try:
            raw = self.engine.raw_connection()
        except (SQLAlchemyError, self._dbapi_error) as exc:  # the pool does not always wrap
            raise LedgerError(f"cannot reach {self.url}: {driver_message(exc)}") from exc
        try:
            cur = raw.cursor()
            if self.dialect == "sqlite":
                cur.execute(f"PRAGMA journal_mode={self.options['journal_mode'].upper()}")
                cur.execute(f"PRAGMA synchronous={self.options['synchronous'].upper()}")
                cur.execute(f"PRAGMA cache_size=-{int(self.options['cache_mb']) * 1024}")
            elif self.dialect in MYSQL_FAMILY:
                cur.execute(f"SET SESSION sql_mode = '{MYSQL_SQL_MODE}'")
            elif self.dialect == "postgresql":
                cur.execute("SET TIME ZONE 'UTC'")  # target timestamps are naive UTC
            cur.close()
            raw.commit()
        except self._dbapi_error as exc:
            raw.close()
            raise LedgerError(f"cannot prepare a session on {self.url}: {first_line(exc)}") from exc
        self._raw = raw
        return raw

    @property
    def readers_wait_for_writers(self) -> bool:
        """A SQLite target not in WAL mode: a large transaction locks its readers out."""
        return self.dialect == "sqlite" and self.options["journal_mode"].lower() != "wal"

    def check(self) -> None:
        """Connect once; a SQLite file (or its directory) must be writable."""
        database = self.engine.url.database
        if self.dialect == "sqlite" and database and database != ":memory:":
            path = Path(database)
            if not path.parent.is_dir():
                raise ConfigError(f"target {self.url}: directory {path.parent} does not exist")
            # WAL writes its -wal and -shm files beside the database: both must be writable.
            for where in (path.parent, path) if path.exists() else (path.parent,):
                if not os.access(where, os.W_OK):
                    raise ConfigError(f"target {self.url}: {where} is not writable")
        self._connection()

    def prepare(self) -> None:
        """Check the target tables exist with their columns; create the checkpoint table."""
        try:
            inspector = inspect(self.engine)
            present = {n.lower(): n for n in inspector.get_table_names()}
            missing = [t.name for t in self.metadata.sorted_tables if t.name.lower() not in present]
            if missing:
                raise ConfigError(
                    f"target {self.url} lacks the target tables {', '.join(missing)} "
                    "(create them first, e.g. `continuity target init URL`)"
                )
            for table in self.metadata.sorted_tables:
                found = {
                    c["name"].lower() for c in inspector.get_columns(present[table.name.lower()])
                }
                lacking = [c.name for c in table.columns if c.name.lower() not in found]
                if lacking:
                    raise ConfigError(
                        f"target {self.url}: table {table.name} lacks columns {', '.join(lacking)}"
                    )
            checkpoint_table.create(self.engine, checkfirst=True)
        except SQLAlchemyError as exc:
            raise LedgerError(f"cannot prepare {self.url}: {driver_message(exc)}") from exc

    def checkpoints(self) -> dict[str, dict[str, Any]]:
        """Every step's last committed state, read from the target's checkpoint table."""
        if self._batch is not None:
            raise RuntimeError("checkpoints are read between transactions, not inside one")
        raw = self._connection()
        plan = self._checkpoint_plan
        cur = raw.cursor()
        try:
            cur.execute(f"SELECT step, state FROM {plan.name}")
            rows = cur.fetchall()
        except self._dbapi_error as exc:
            raw.rollback()
            if not inspect(self.engine).has_table(CHECKPOINT_TABLE):
                return {}  # never prepared: nothing was ever committed
            raise LedgerError(f"cannot read checkpoints on {self.url}: {first_line(exc)}") from exc
        finally:
            cur.close()
        raw.rollback()  # end the read's implicit transaction: later reads must see new commits
        try:
            return {step: json.loads(state) for step, state in rows}
        except ValueError as exc:
            raise LedgerError(
                f"{CHECKPOINT_TABLE} on {self.url} holds a state that is not JSON"
            ) from exc

    @contextmanager
    def transaction(self) -> Iterator[SqlBatch]:
        """One database transaction: commit when the block ends, roll back on any exception."""
        if self._batch is not None:
            raise RuntimeError("a transaction is already open on this loader")
        raw = self._connection()
        if self.dialect == "sqlite":
            # Take the write lock now rather than at the first write, and make the transaction
            # explicit whatever the sqlite3 module's implicit-transaction rules.
            self._run(raw, "BEGIN IMMEDIATE", "begin")
        batch = SqlBatch(self, raw)
        self._batch = batch
        try:
            yield batch
            try:
                raw.commit()
            except self._dbapi_error as exc:
                raise LoadError(f"cannot commit to {self.url}: {first_line(exc)}") from exc
            self._temps_new.clear()
        except BaseException:
            self._rollback(raw)
            raise
        finally:
            batch._finished = True
            self._batch = None
            self._temps_used.clear()

    def _rollback(self, raw: Any) -> None:
        self._temps -= self._temps_new  # created in this transaction: gone with it
        self._temps_new.clear()
        try:
            raw.rollback()
        except self._dbapi_error:
            # The connection is broken (the server went away): the server rolls back itself,
            # and the exception that brought us here is the one worth reporting.
            self._discard()

    def _discard(self) -> None:
        raw, self._raw = self._raw, None
        self._temps.clear()
        if raw is not None:
            with contextlib.suppress(Exception):  # already broken: nothing more to release
                raw.invalidate()

    def _run(self, raw: Any, sql: str, what: str, params: Sequence[Any] | None = None) -> Any:
        cur = raw.cursor()
        try:
            cur.execute(sql, params) if params is not None else cur.execute(sql)
            return cur.rowcount
        except self._dbapi_error as exc:
            raise LoadError(f"{what} on {self.url}: {first_line(exc)}") from exc
        finally:
            cur.close()

    def close(self) -> None:
        """Close the connection (rolling back anything uncommitted) and the engine's pool."""
        raw, self._raw = self._raw, None
        if raw is not None:
            with contextlib.suppress(self._dbapi_error):
                raw.close()
        self.engine.dispose()


class SqlBatch(LoadBatch):
    """The writes of one database transaction of a :class:`SqlLoader`."""

    def __init__(self, loader: SqlLoader, raw: Any) -> None:
        super().__init__()
        self._loader = loader
        self._raw = raw

    def _plan(self, table: str) -> _Plan:
        self._open()
        return self._loader._plans[self._loader.table(table).name]

    def upsert(self, table: str, rows: Sequence[tuple[Any, ...]]) -> None:
        """Insert ``rows`` or replace those whose key exists (see :meth:`LoadBatch.upsert`)."""
        plan = self._plan(table)
        if not rows:
            return
        data: Sequence[Sequence[Any]] = rows
        if plan.convert is not None:
            data = [plan.convert(r) for r in rows]
        # In key order, a batch of random (UUID) keys walks the key B-tree once from left to
        # right instead of jumping about it: fewer page misses once the table outgrows the
        # cache. sorted() is stable: a later row of the same key still comes later and wins.
        # Keys of mixed types cannot be sorted; the order is only an optimisation.
        with contextlib.suppress(TypeError):
            data = sorted(data, key=itemgetter(*plan.key))
        loader = self._loader
        try:
            if loader.dialect == "postgresql":
                self._pg_upsert(plan, data)
            else:
                cur = self._raw.cursor()
                try:
                    cur.executemany(plan.upsert, data)
                finally:
                    cur.close()
        except loader._dbapi_error as exc:
            raise LoadError(f"target table {table} on {loader.url}: {first_line(exc)}") from exc
        self._count(self.counts, table, len(rows))

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement of bookkeeping SQL in this transaction (``?`` marks parameters,
        names as written); return the rows it touched. Bookkeeping only: rows of target tables
        go through :meth:`upsert` and :meth:`delete`, which the journal sees."""
        self._open()
        loader = self._loader
        if loader.dialect != "sqlite":
            sql = sql.replace("?", "%s")
        return int(loader._run(self._raw, sql, "bookkeeping", list(params)))

    def fetch(self, table: str, keys: Sequence[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """The rows of ``table`` with these primary keys as they are now, in this transaction
        (typed as SQLAlchemy reads them: dates as dates on SQLite too), in no set order."""
        plan = self._plan(table)
        if not keys:
            return []
        loader = self._loader
        data: Sequence[Sequence[Any]] = keys
        if plan.convert_key is not None:
            data = [plan.convert_key(k) for k in keys]
        mark = "?" if loader.dialect == "sqlite" else "%s"
        width = len(plan.key_names)
        columns = ", ".join(plan.key_names)
        if width == 1:
            head, one, glue, tail = f"{plan.key_names[0]} IN (", mark, ", ", ")"
        elif loader.dialect == "sqlite":  # it plans row values (a, b) IN (...) as a scan
            head, glue, tail = "", " OR ", ""
            one = "(" + " AND ".join(f"{c} = {mark}" for c in plan.key_names) + ")"
        else:  # servers plan long ORs slowly (PostgreSQL: 90 ms a statement), row values well
            values = "VALUES " if loader.dialect == "postgresql" else ""
            head, glue, tail = f"({columns}) IN ({values}", ", ", ")"
            one = "(" + ", ".join([mark] * width) + ")"
        chunk_size = max(1, (900 if width == 1 else 300) // width)
        found: list[tuple[Any, ...]] = []
        cur = self._raw.cursor()
        try:
            for start in range(0, len(data), chunk_size):
                chunk = data[start : start + chunk_size]
                where = head + glue.join([one] * len(chunk)) + tail
                cur.execute(
                    f"SELECT {plan.columns} FROM {plan.name} WHERE {where}",
                    [v for k in chunk for v in k],
                )
                found += [tuple(r) for r in cur.fetchall()]
        except loader._dbapi_error as exc:
            raise LoadError(f"target table {table} on {loader.url}: {first_line(exc)}") from exc
        finally:
            cur.close()
        if loader.dialect == "sqlite":
            found = [_typed(plan.table, r) for r in found]
        elif loader.dialect in MYSQL_FAMILY:  # booleans are TINYINT there
            flags = [i for i, c in enumerate(plan.table.columns) if isinstance(c.type, Boolean)]
            if flags:
                found = [
                    tuple(bool(v) if i in flags and v is not None else v for i, v in enumerate(r))
                    for r in found
                ]
        return found

    def delete(self, table: str, keys: Sequence[tuple[Any, ...]]) -> None:
        """Delete rows by primary key; :attr:`deleted` counts the rows that went."""
        plan = self._plan(table)
        if not keys:
            return
        data: Sequence[Sequence[Any]] = keys
        if plan.convert_key is not None:
            data = [plan.convert_key(k) for k in keys]
        loader = self._loader
        gone = 0
        try:
            cur = self._raw.cursor()
            try:
                if loader.dialect == "postgresql":
                    self._pg_fill(cur, plan, data, ", ".join(plan.key_names))
                    # The planner knows nothing of a temporary table until it is analysed, and
                    # might otherwise scan the whole target table for a handful of keys.
                    cur.execute(f"ANALYZE {plan.temp}")
                    cur.execute(plan.delete)
                    gone = cur.rowcount
                elif loader.dialect in MYSQL_FAMILY:
                    row = "(" + ", ".join(["%s"] * len(plan.key)) + ")"
                    for start in range(0, len(data), MYSQL_DELETE_CHUNK):
                        chunk = data[start : start + MYSQL_DELETE_CHUNK]
                        marks = ", ".join([row] * len(chunk))
                        cur.execute(f"{plan.delete}({marks})", [v for k in chunk for v in k])
                        gone += cur.rowcount
                else:
                    cur.executemany(plan.delete, data)
                    gone = cur.rowcount
            finally:
                cur.close()
        except loader._dbapi_error as exc:
            raise LoadError(f"target table {table} on {loader.url}: {first_line(exc)}") from exc
        self._count(self.deleted, table, max(gone, 0))

    def set_checkpoint(self, step: str, state: Mapping[str, Any]) -> None:
        """Upsert ``step``'s state into the checkpoint table, inside this transaction."""
        self._open()
        text = self._state(step, state)
        loader = self._loader
        row: Sequence[Any] = (step, text, dt.datetime.now(dt.UTC).replace(tzinfo=None))
        if loader._checkpoint_plan.convert is not None:
            row = loader._checkpoint_plan.convert(row)
        loader._run(self._raw, loader._checkpoint_sql(), f"checkpoint {step!r}", row)

    # -- PostgreSQL ------------------------------------------------------------------------

    def _pg_fill(self, cur: Any, plan: _Plan, data: Sequence[Sequence[Any]], columns: str) -> None:
        """Make ``plan``'s temporary table hold exactly ``data`` (in ``columns``)."""
        loader = self._loader
        if plan.temp not in loader._temps:
            # No constraints (NOT NULL included): the target's own are checked on the way in,
            # and deletes fill only the key columns. Emptied at every commit. Timestamps are
            # copied in WITH time zone, so the server turns an aware datetime into UTC (the
            # session's time zone) on the way into the target's naive column, and no row needs
            # converting in Python.
            cur.execute(
                f"CREATE TEMPORARY TABLE {plan.temp} ON COMMIT DELETE ROWS AS "
                f"SELECT {plan.temp_columns} FROM {plan.name} WITH NO DATA"
            )
            loader._temps.add(plan.temp)
            loader._temps_new.add(plan.temp)
        elif plan.temp in loader._temps_used:
            cur.execute(f"TRUNCATE {plan.temp}")
        loader._temps_used.add(plan.temp)
        with cur.copy(f"COPY {plan.temp} ({columns}) FROM STDIN") as copy:
            for row in data:
                copy.write_row(row)

    def _pg_upsert(self, plan: _Plan, data: Sequence[Sequence[Any]]) -> None:
        if len(plan.key) < len(plan.table.columns):
            # ON CONFLICT DO UPDATE refuses to touch a row twice in one statement: keep the
            # last row of each key, as the other dialects' row-by-row upserts do.
            key = itemgetter(*plan.key)
            last = {key(r): r for r in data}
            if len(last) < len(data):
                data = list(last.values())
        cur = self._raw.cursor()
        try:
            self._pg_fill(cur, plan, data, plan.columns)
            cur.execute(plan.upsert)
        finally:
            cur.close()
