"""The ``sql`` extractor: a table or query of any database SQLAlchemy can reach.

Statements are built with SQLAlchemy Core, so identifiers are quoted by the dialect's preparer and
the wave's filter binds ``:name`` parameters on every dialect. Rows are then read through the
DB-API driver itself, which is a quarter faster than SQLAlchemy's result objects here: a named
(server-side) cursor on PostgreSQL, PyMySQL's unbuffered ``SSCursor`` on MariaDB/MySQL, plain
``fetchmany`` on SQLite. Nothing is read whole into memory, and key checks run in the database.

Values are returned as the driver gives them. On MariaDB a zero date (``0000-00-00``, a
PoliceWorks quirk) cannot be a ``datetime.date``: PyMySQL returns it as the string
``"0000-00-00"`` (``"0000-00-00 00:00:00"`` for a DATETIME) and the row is delivered like any
other; deciding what a zero date means is the mapping's job.

The ``where`` filter is SQL text from the project file, i.e. trusted configuration written by
the migration team; it is never built from user data and nothing is ever ``eval``-ed. Write it
in the source's dialect (on PostgreSQL, upper-case column names need double quotes), and escape
a literal that looks like a parameter: ``' \\:abc'`` for the text `` :abc``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import InvalidRequestError, NoSuchTableError, SQLAlchemyError

from continuity.domain.connect import MYSQL_FAMILY, check_reachable, engine_for, redact
from continuity.domain.errors import ContinuityError, ExtractError
from extractors.base import (
    Extractor,
    KeyProblem,
    Selection,
    duplicate_key,
    null_key,
    one_line,
    require_key,
)

_cursor_names = itertools.count()

#: Seconds MariaDB may wait for us to read the next packet of an unbuffered result. The server
#: blocks while the pipeline transforms and loads a batch; its default (60 s) would drop the
#: connection under a slow target.
_MYSQL_NET_WRITE_TIMEOUT = 3600


#: Reflected text types whose equality is their text's (no collation given): not
#: PostgreSQL's ``citext`` and other case-insensitive or custom kinds.
_PLAIN_TEXT = (sa.String, sa.Text, sa.VARCHAR, sa.TEXT, sa.CHAR, sa.NVARCHAR, sa.NCHAR)


class SqlExtractor(Extractor):
    """Reads tables and queries of a database given by any SQLAlchemy URL.

    Options:
        schema: the schema (PostgreSQL), database (MariaDB) or attached database (SQLite)
            holding the tables; default the connection's own.
    """

    kind: ClassVar[str] = "sql"
    option_names: ClassVar[frozenset[str] | None] = frozenset({"schema"})

    def __init__(self, name: str, location: str, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(name, location, options)
        self.schema: str | None = self.options.get("schema")
        self.shown_url = redact(location)
        try:
            self.engine: Engine = engine_for(location)
        except ContinuityError as exc:
            raise self.error(str(exc)) from exc
        self.dialect = self.engine.dialect
        self._columns: dict[tuple[str, str], list[str]] = {}
        self._key_types: dict[tuple[str, str], str | None] = {}
        self._text_keys: dict[tuple[str, tuple[str, ...]], bool] = {}
        self._column_types: dict[str, dict[str, Any]] = {}

    # -- the source ----------------------------------------------------------------------------

    def check(self) -> None:
        """Connect once; an unreachable server or a missing SQLite file is an ExtractError."""
        self._check_sqlite_file()
        try:
            check_reachable(self.engine)
        except ContinuityError as exc:
            raise self.error(str(exc)) from exc

    def _check_sqlite_file(self) -> None:
        # SQLite creates a missing file on connect: reading a mistyped path would then find an
        # empty database instead of failing.
        if self.dialect.name != "sqlite":
            return
        database = make_url(self.location).database or ""
        in_file = database not in ("", ":memory:") and not database.startswith("file:")
        if in_file and not Path(database).is_file():
            raise self.error(f"no SQLite database at {database}")

    def columns(self, selection: Selection) -> list[str]:
        """The selection's columns; an unknown table or column is an ExtractError naming it."""
        available = self._source_columns(selection)
        wanted = list(selection.columns) if selection.columns is not None else available
        for column in (*wanted, *selection.key):
            if column not in available:
                raise self.error(self._unknown_column(selection, column, available))
        return wanted

    def _unknown_column(self, selection: Selection, column: str, available: list[str]) -> str:
        message = f"no column {column} in {selection.describe()} of {self.shown_url}"
        near = [c for c in available if c.lower() == column.lower()]
        return message + (f" (did you mean {near[0]}?)" if near else "")

    def _source_columns(self, selection: Selection) -> list[str]:
        """Every column of the selected table or query, in order (looked up once)."""
        if selection.table is not None:
            cache_key = ("table", selection.table)
        else:
            cache_key = ("query", selection.query or "")
        found = self._columns.get(cache_key)
        if found is None:
            if selection.table is not None:
                found = self._table_columns(selection.table)
            else:
                found = self._query_columns(selection)
            self._columns[cache_key] = found
        return found

    def _query_columns(self, selection: Selection) -> list[str]:
        # The query's own result description, read from a run that returns no row.
        probe: Any = sa.select(sa.literal_column("*")).select_from(self._from(selection, ()))
        with self._cursor(probe.where(sa.false()), selection, server_side=False) as cursor:
            names = [d[0] for d in cursor.description]
            cursor.fetchall()
        return names

    def _table_columns(self, table: str) -> list[str]:
        self._check_sqlite_file()
        where = f"{self.schema}.{table}" if self.schema else table
        try:
            names = [c["name"] for c in sa.inspect(self.engine).get_columns(table, self.schema)]
        except NoSuchTableError:
            names = []
        except SQLAlchemyError as exc:
            raise self.error(f"cannot read {self.shown_url}: {_reason(exc)}") from exc
        if not names:  # SQLite reports a missing table as one without columns
            raise self.error(f"no table {where} in {self.shown_url}")
        return names

    # -- statements ----------------------------------------------------------------------------

    def _from(self, selection: Selection, columns: Sequence[str]) -> Any:
        """The FROM clause with ``columns`` addressable: the table, or the query named ``q``."""
        if selection.table is not None:
            return sa.table(selection.table, *(sa.column(c) for c in columns), schema=self.schema)
        assert selection.query is not None
        return sa.text(selection.query).columns(*(sa.column(c) for c in columns)).subquery("q")

    @staticmethod
    def _where(selection: Selection) -> list[Any]:
        # Parenthesised: a TextClause is not grouped when ANDed, so "a OR b" would bind wrongly.
        return [sa.text(f"({selection.where})")] if selection.where else []

    def _filters(self, selection: Selection, source: Any) -> list[Any]:
        """The wave's filter, the keys asked for and, in key order, "complete key" and "after
        the resume point"."""
        filters = self._where(selection)
        if selection.keys is not None:
            found = self._holding(selection, source, [(selection.key[0], selection.keys)])
            if found is not None:
                filters.append(found)
        if selection.matching is not None:
            found = self._holding(selection, source, selection.matching)
            if found is not None:
                filters.append(found)
        if selection.order_by_key:
            key = [source.c[k] for k in selection.key]
            filters.extend(k.is_not(None) for k in key)
            if selection.after is not None:
                filters.append(self._after(key, selection.after))
        return filters

    def _holding(
        self, selection: Selection, source: Any, wanted: Sequence[tuple[str, Sequence[str]]]
    ) -> Any:
        """Rows in which one of these columns holds one of its values (as text); None when a
        column cannot be asked so (every row goes to the reader, which keeps the right ones)."""
        found = []
        for i, (name, values) in enumerate(wanted):
            kind = self._key_kind(selection, name)
            if kind is None:
                return None
            column = source.c[name]
            if kind == "integer" and self.dialect.name != "sqlite":
                # Values come as text: a whole-number column is compared as text (no index).
                column = sa.cast(column, sa.String)
            bound: Any = sa.bindparam(f"continuity_keys_{i}", value=list(values), expanding=True)
            found.append(column.in_(bound))
        return sa.or_(*found) if found else sa.false()

    def _key_kind(self, selection: Selection, name: str | None = None) -> str | None:
        """``"text"`` or ``"integer"`` for a table's column (by default its one-column key) the
        database can be asked by text; None for any other (a timestamp, a boolean, an untyped
        SQLite column: its text in the database need not be Python's, so the values are left to
        the reader)."""
        if selection.table is None:
            return None
        at = (selection.table, name or selection.key[0])
        if at not in self._key_types:
            found = self._types(selection.table).get(at[1])
            kind = None
            if isinstance(found, sa.String) and not isinstance(found, sa.Enum):
                kind = "text"
            elif isinstance(found, sa.Integer):
                kind = "integer"
            self._key_types[at] = kind
        return self._key_types[at]

    def _types(self, table: str) -> dict[str, Any]:
        """A table's column types, as the database describes them (asked once per table)."""
        if table not in self._column_types:
            columns = sa.inspect(self.engine).get_columns(table, schema=self.schema)
            self._column_types[table] = {c["name"]: c["type"] for c in columns}
        return self._column_types[table]

    def _after(self, key: list[Any], after: tuple[Any, ...]) -> Any:
        """``key > after`` in the database's own order."""
        values: list[Any] = [
            sa.bindparam(f"continuity_after_{i}", value) for i, value in enumerate(after)
        ]
        if len(key) == 1:
            return key[0] > values[0]
        if self.dialect.name in ("postgresql", "sqlite"):
            # A row-value comparison lets PostgreSQL walk the key's index from the resume point.
            return sa.tuple_(*key) > sa.tuple_(*values)
        # MariaDB and the rest: (k1 > a1) OR (k1 = a1 AND k2 > a2) …, valid SQL everywhere.
        return sa.or_(
            *(
                sa.and_(*(key[j] == values[j] for j in range(i)), key[i] > values[i])
                for i in range(len(key))
            )
        )

    # -- reading -------------------------------------------------------------------------------

    def batches(self, selection: Selection, size: int = 10_000) -> Iterator[list[tuple[Any, ...]]]:
        """Stream the selection through a server-side cursor, ``size`` rows at a time."""
        if size < 1:
            raise self.config_error(f"batch size must be at least 1, not {size}")
        columns = self.columns(selection)
        source = self._from(selection, list(dict.fromkeys((*columns, *selection.key))))
        statement = sa.select(*(source.c[c] for c in columns)).where(
            *self._filters(selection, source)
        )
        if selection.order_by_key:
            statement = statement.order_by(*(source.c[k] for k in selection.key))
        with self._cursor(statement, selection, server_side=True) as cursor:
            while rows := self._fetch(cursor, selection, size):
                # sqlite3, psycopg and PyMySQL all return a list of tuples already.
                yield rows if type(rows) is list else list(rows)

    def count(self, selection: Selection) -> int:
        """``SELECT COUNT(*)`` over the rows :meth:`batches` would deliver."""
        self.columns(selection)  # names an unknown table or column, as batches would
        source = self._from(selection, selection.key)
        statement = (
            sa.select(sa.func.count()).select_from(source).where(*self._filters(selection, source))
        )
        with self._cursor(statement, selection, server_side=False) as cursor:
            return int(self._fetch(cursor, selection, 1)[0][0])

    def key_problems(self, selection: Selection) -> Iterator[KeyProblem]:
        """Keys with a null part, then duplicated keys, found by GROUP BY in the database."""
        key = require_key(self, selection)
        self.columns(selection)  # names an unknown table or key column
        source = self._from(selection, key)
        cols = [source.c[k] for k in key]
        rows = sa.func.count().label("continuity_rows")
        nulls = (
            sa.select(*cols, rows)
            .where(*self._where(selection), sa.or_(*(c.is_(None) for c in cols)))
            .group_by(*cols)
            .order_by(*cols)
        )
        duplicates = (
            sa.select(*cols, rows)
            .where(*self._where(selection), *(c.is_not(None) for c in cols))
            .group_by(*cols)
            .having(sa.func.count() > 1)
            .order_by(*cols)
        )
        for statement, problem in ((nulls, null_key), (duplicates, duplicate_key)):
            with self._cursor(statement, selection, server_side=True) as cursor:
                while found := self._fetch(cursor, selection, 10_000):
                    for row in found:
                        yield problem(key, tuple(row[:-1]), int(row[-1]))

    def keys_equal_as_text(self, selection: Selection) -> bool:
        """True on SQLite and PostgreSQL for a table whose key columns are declared plain
        text (no collation of their own) or whole numbers: equal there means the same text.
        Not on MariaDB, whose usual collations hold ``abc`` and ``ABC `` for one value; nor
        for PostgreSQL's ``citext`` (case-insensitive) or any other text type, nor an untyped
        SQLite column, where the integer 1 and the real 1.0 are one value."""
        if selection.table is None or self.dialect.name not in ("sqlite", "postgresql"):
            return False
        at = (selection.table, tuple(selection.key))
        if at not in self._text_keys:
            types = self._types(selection.table)
            self._text_keys[at] = not self._sqlite_collates(selection.table) and all(
                isinstance(t, sa.Integer)
                or (type(t) in _PLAIN_TEXT and getattr(t, "collation", None) is None)
                for t in (types.get(k) for k in selection.key)
            )
        return self._text_keys[at]

    def _sqlite_collates(self, table: str) -> bool:
        """Whether a SQLite table declares a collation anywhere (which its reflected column
        types do not show): then none of its columns is trusted to compare as text."""
        if self.dialect.name != "sqlite":
            return False
        master = f"{self.schema}.sqlite_master" if self.schema else "sqlite_master"
        with self.engine.connect() as conn:
            declared = conn.execute(
                sa.text(f"SELECT sql FROM {master} WHERE type = 'table' AND name = :name"),
                {"name": table},
            ).scalar()
        return declared is None or "COLLATE" in str(declared).upper()

    def close(self) -> None:
        """Close the engine's pooled connections."""
        self.engine.dispose()

    # -- the driver ----------------------------------------------------------------------------

    @contextmanager
    def _cursor(self, statement: Any, selection: Selection, server_side: bool) -> Iterator[Any]:
        """A DB-API cursor on which ``statement`` has been executed with the selection's params."""
        sql, params = self._compile(statement, selection)
        backend = self.dialect.name
        self._check_sqlite_file()
        raw: Any = None
        cursor: Any = None
        try:
            raw = self.engine.raw_connection()
            if server_side and backend == "postgresql":
                cursor = raw.driver_connection.cursor(name=f"continuity_{next(_cursor_names)}")
            elif server_side and backend in MYSQL_FAMILY:
                import pymysql.cursors

                setup = raw.cursor()
                setup.execute(f"SET SESSION net_write_timeout = {_MYSQL_NET_WRITE_TIMEOUT}")
                setup.close()
                cursor = raw.driver_connection.cursor(pymysql.cursors.SSCursor)
            else:
                cursor = raw.cursor()
            cursor.execute(sql, params)
        except (SQLAlchemyError, self.dialect.loaded_dbapi.Error) as exc:
            if cursor is not None:
                with suppress(self.dialect.loaded_dbapi.Error):
                    cursor.close()
            if raw is not None:
                raw.invalidate()
            raise self._failed(exc, selection) from exc
        finished = False
        try:
            yield cursor
            finished = True
        finally:
            if finished:
                self._release(raw, cursor)
            elif server_side and backend in MYSQL_FAMILY:
                self._abandon_unbuffered(raw, cursor)
            else:
                # Stopped early or failed: tidy up without hiding the error that stopped us.
                try:
                    self._release(raw, cursor)
                except self.dialect.loaded_dbapi.Error:
                    raw.invalidate()

    def _release(self, raw: Any, cursor: Any) -> None:
        cursor.close()
        if self.dialect.name == "postgresql":
            raw.driver_connection.rollback()  # ends the transaction the cursor lived in
        raw.close()

    def _abandon_unbuffered(self, raw: Any, cursor: Any) -> None:
        """End a MariaDB result left half-read (the consumer stopped early, or failed).

        The server sends an unbuffered result to its end whatever the client does, and PyMySQL
        reads all of it on close: the rest of a large table. Killing the query first cuts that
        to what is already in flight; the connection is then discarded, not pooled.
        """
        dbapi_error = self.dialect.loaded_dbapi.Error
        try:
            killer = self.engine.raw_connection()
            try:
                kill = killer.cursor()
                kill.execute("KILL QUERY %s", (raw.driver_connection.thread_id(),))
                kill.close()
            finally:
                killer.close()
        except (SQLAlchemyError, dbapi_error):
            pass  # closing below still ends the result, only more slowly
        with suppress(dbapi_error):
            cursor.close()  # reads what was in flight, up to the server's "interrupted" error
        raw.invalidate()

    def _fetch(self, cursor: Any, selection: Selection, size: int) -> Any:
        try:
            return cursor.fetchmany(size)
        except self.dialect.loaded_dbapi.Error as exc:
            raise self._failed(exc, selection) from exc

    def _compile(self, statement: Any, selection: Selection) -> tuple[str, Any]:
        compiled = statement.compile(
            dialect=self.dialect, compile_kwargs={"render_postcompile": True}
        )
        try:
            values = compiled.construct_params(dict(selection.params))
        except InvalidRequestError as exc:
            raise self.config_error(f"{selection.describe()}: {_reason(exc)}") from exc
        # Always pass parameters, even none: a pyformat driver then reads the "%%" the compiler
        # wrote for a literal "%" as "%" (without them, "%%" would reach the server unchanged).
        params: Any = values
        if self.dialect.paramstyle in ("qmark", "numeric", "format"):
            params = tuple(values[name] for name in compiled.positiontup or ())
        return str(compiled), params

    def _failed(self, exc: BaseException, selection: Selection) -> ExtractError:
        return self.error(f"{selection.describe()} in {self.shown_url}: {_reason(exc)}")


def _reason(exc: BaseException) -> str:
    """The driver's own message, first line, without SQLAlchemy's "Background" link."""
    cause = getattr(exc, "orig", None) or exc
    text = one_line(cause).split(" (Background on this error at:")[0]
    return text or type(cause).__name__
