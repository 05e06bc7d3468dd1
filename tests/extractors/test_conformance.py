"""The behaviour every extractor promises, run against each built-in on real sources.

``ExtractorConformance`` holds the tests; each ``Test…`` subclass supplies sources of one kind
through two fixtures, ``make_source(rows) -> (kind, location, table)`` and ``unreachable``. A
third-party extractor can copy the class and add a subclass of its own.

The data is an ALIAS-like table keyed by ``(NOMINAL_REF, SEQ)`` whose values are all text (a CSV
file has no other type), with Irish and Polish names and an apostrophe. ``dirty_rows`` plants
exactly five key problems in it: NOMINAL_REF=N000001/SEQ=1 on 3 rows, N000002/2 on 2 rows,
a null NOMINAL_REF with SEQ 1 on 2 rows, N000005 with a null SEQ, and a key that is all null.
"""

from __future__ import annotations

import itertools
import sys
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import pytest
import sqlalchemy as sa
from pymysql.converters import escape_string

from continuity.domain.errors import ConfigError, ExtractError
from extractors import Extractor, Selection, open_extractor

Row = tuple[str | None, ...]
MakeSource = Callable[[Sequence[Row]], tuple[str, str, str]]

COLUMNS = ("NOMINAL_REF", "SEQ", "SURNAME", "FORENAME", "DIVISION")
KEY = ("NOMINAL_REF", "SEQ")
SECRET = "s3cret-pw"
NAMES = [
    ("O'BRIEN", "SIOBHÁN"),
    ("Ó SÚILLEABHÁIN", "Seán"),
    ("WIŚNIEWSKI", "Łukasz"),
    ("KHAN", "Mohammed"),
    ("OKAFOR", "Chidi"),
    ("SMITH", None),
]


def clean_rows(n: int) -> list[Row]:
    """``n`` rows with distinct, complete keys in ascending order (three SEQs per nominal)."""
    rows: list[Row] = []
    for i in range(n):
        surname, forename = NAMES[i % len(NAMES)]
        division = "NSE"[i % 3]
        rows.append((f"N{i // 3:06d}", str(i % 3 + 1), surname, forename, division))
    return rows


def dirty_rows() -> list[Row]:
    """30 clean rows plus the five key problems of the module docstring."""
    return [
        *clean_rows(30),
        ("N000001", "1", "COPY", "One", "N"),
        ("N000001", "1", "COPY", "Two", "S"),
        ("N000002", "2", "COPY", "Three", "E"),
        (None, "1", "NOKEY", "One", "N"),
        (None, "1", "NOKEY", "Two", "N"),
        ("N000005", None, "NOSEQ", "One", "E"),
        (None, None, "NOTHING", "One", "E"),
    ]


DIRTY_PROBLEMS = {
    (("N000001", "1"), 3),
    (("N000002", "2"), 2),
    ((None, "1"), 2),
    (("N000005", None), 1),
    ((None, None), 1),
}


def read_all(extractor: Extractor, selection: Selection, size: int = 10_000) -> list[Row]:
    return [row for batch in extractor.batches(selection, size) for row in batch]


def assert_one_line_naming(exc: pytest.ExceptionInfo[Exception], *names: str) -> None:
    message = str(exc.value)
    assert "\n" not in message
    for name in names:
        assert name in message, f"{name!r} not in {message!r}"
    assert SECRET not in message


class ExtractorConformance:
    """Tests every extractor kind must pass; subclasses provide the sources."""

    #: The kind reads SQL sources: ``where``, ``query`` and ``order_by_key`` work (else they are
    #: ConfigErrors).
    sql: ClassVar[bool] = True
    #: How the source's dialect quotes an identifier in a ``where`` string.
    quote: ClassVar[str] = '"'

    @pytest.fixture
    def make_source(self) -> MakeSource:
        raise NotImplementedError("a subclass provides the make_source fixture")

    @pytest.fixture
    def unreachable(self) -> tuple[str, str]:
        """A location that cannot be read (with SECRET in it where a URL has a password), and
        what the error must name."""
        raise NotImplementedError("a subclass provides the unreachable fixture")

    def open(self, make_source: MakeSource, rows: Sequence[Row]) -> tuple[Extractor, str]:
        kind, location, table = make_source(rows)
        extractor = open_extractor(kind, "legacy", location)
        extractor.check()
        return extractor, table

    def q(self, name: str) -> str:
        return f"{self.quote}{name}{self.quote}"

    # -- rows ----------------------------------------------------------------------------------

    def test_every_row_exactly_once_as_a_multiset(self, make_source: MakeSource) -> None:
        rows = [*clean_rows(40), clean_rows(40)[7], clean_rows(40)[7]]  # one row thrice
        extractor, table = self.open(make_source, rows)
        with extractor:
            selection = Selection(table=table, key=KEY)
            assert extractor.columns(selection) == list(COLUMNS)
            got = read_all(extractor, selection)
            assert all(type(row) is tuple for row in got)
            assert Counter(got) == Counter(rows)
            assert extractor.count(selection) == len(rows)

    def test_columns_in_the_order_asked(self, make_source: MakeSource) -> None:
        rows = clean_rows(12)
        extractor, table = self.open(make_source, rows)
        with extractor:
            wanted = ("DIVISION", "SURNAME", "NOMINAL_REF")
            selection = Selection(table=table, key=KEY, columns=wanted)
            assert extractor.columns(selection) == list(wanted)
            expected = [(r[4], r[2], r[0]) for r in rows]
            assert Counter(read_all(extractor, selection)) == Counter(expected)
            one = Selection(table=table, key=KEY, columns=("FORENAME",))
            assert Counter(read_all(extractor, one)) == Counter((r[3],) for r in rows)

    def test_batches_never_exceed_the_size(self, make_source: MakeSource) -> None:
        rows = clean_rows(25)
        extractor, table = self.open(make_source, rows)
        with extractor:
            sizes = [len(b) for b in extractor.batches(Selection(table=table), size=7)]
            assert sum(sizes) == 25
            assert all(1 <= s <= 7 for s in sizes)
            assert [len(b) for b in extractor.batches(Selection(table=table), size=1)] == [1] * 25
            with pytest.raises(ConfigError, match="batch size"):
                next(extractor.batches(Selection(table=table), size=0))

    def test_unicode_round_trips(self, make_source: MakeSource) -> None:
        rows = clean_rows(6)
        extractor, table = self.open(make_source, rows)
        with extractor:
            names = read_all(extractor, Selection(table=table, columns=("SURNAME", "FORENAME")))
            assert {n for pair in names for n in pair} >= {"O'BRIEN", "SIOBHÁN", "Łukasz", "Seán"}
            assert ("Ó SÚILLEABHÁIN", "Seán") in names
            assert ("SMITH", None) in names  # NULL stays None, not "" or "None"

    # -- the wave's filter and resuming --------------------------------------------------------

    def test_where_with_params_is_pushed_down(self, make_source: MakeSource) -> None:
        rows = clean_rows(30)
        extractor, table = self.open(make_source, rows)
        where = f"{self.q('DIVISION')} = :division AND {self.q('SURNAME')} <> :surname"
        selection = Selection(
            table=table, key=KEY, where=where, params={"division": "N", "surname": "KHAN"}
        )
        with extractor:
            if not self.sql:
                with pytest.raises(ConfigError, match="where"):
                    read_all(extractor, selection)
                return
            expected = [r for r in rows if r[4] == "N" and r[2] != "KHAN"]
            assert 0 < len(expected) < len(rows) // 3
            assert Counter(read_all(extractor, selection)) == Counter(expected)
            assert extractor.count(selection) == len(expected)

    def test_order_by_key_and_resume_after_a_key(self, make_source: MakeSource) -> None:
        rows = clean_rows(30)
        shuffled = rows[1::2] + rows[::2]  # stored out of key order
        extractor, table = self.open(make_source, shuffled)
        ordered = Selection(table=table, key=KEY, order_by_key=True)
        with extractor:
            if not self.sql:
                with pytest.raises(ConfigError, match="order_by_key"):
                    read_all(extractor, ordered)
                return
            got = read_all(extractor, ordered, size=4)
            assert got == rows  # clean_rows is in key order (uniform-width ASCII keys)
            for stop in (0, 4, 13, 28, 29):  # batch boundaries, mid-batch, the last row
                after = got[stop][:2]
                resumed = Selection(table=table, key=KEY, order_by_key=True, after=after)
                assert read_all(extractor, resumed, size=4) == rows[stop + 1 :]
                assert extractor.count(resumed) == len(rows) - stop - 1
            # A single-column key resumes too (SEQ is text: "1" < "2" < "3").
            by_seq = Selection(
                table=table, key=("SEQ",), columns=("SEQ",), order_by_key=True, after=("1",)
            )
            assert read_all(extractor, by_seq) == [("2",)] * 10 + [("3",)] * 10

    def test_key_order_delivers_only_complete_keys(self, make_source: MakeSource) -> None:
        if not self.sql:
            pytest.skip("order_by_key is a ConfigError for this kind")
        rows = dirty_rows()
        extractor, table = self.open(make_source, rows)
        with extractor:
            selection = Selection(table=table, key=KEY, order_by_key=True)
            got = read_all(extractor, selection)
            complete = [r for r in rows if r[0] is not None and r[1] is not None]
            assert Counter(got) == Counter(complete)
            assert extractor.count(selection) == len(complete)

    # -- keys ----------------------------------------------------------------------------------

    def test_key_problems_finds_duplicates_and_nulls_and_nothing_else(
        self, make_source: MakeSource
    ) -> None:
        extractor, table = self.open(make_source, dirty_rows())
        with extractor:
            problems = list(extractor.key_problems(Selection(table=table, key=KEY)))
            assert {(p.key, p.rows) for p in problems} == DIRTY_PROBLEMS
            assert len(problems) == len(DIRTY_PROBLEMS)
            reasons = {p.key: p.reason for p in problems}
            assert reasons[("N000001", "1")].startswith("duplicate key: 3 rows share")
            assert "NOMINAL_REF=N000001" in reasons[("N000001", "1")]
            assert reasons[("N000005", None)].startswith("null key part SEQ")
            assert reasons[(None, None)].startswith("null key parts NOMINAL_REF, SEQ")
            # On NOMINAL_REF alone every nominal repeats (three aliases each).
            single = list(extractor.key_problems(Selection(table=table, key=("NOMINAL_REF",))))
            counts = Counter(r[0] for r in dirty_rows())
            expected = {((k,), n) for k, n in counts.items() if n > 1 or k is None}
            assert {(p.key, p.rows) for p in single} == expected

    def test_clean_keys_have_no_problems(self, make_source: MakeSource) -> None:
        extractor, table = self.open(make_source, clean_rows(30))
        with extractor:
            assert list(extractor.key_problems(Selection(table=table, key=KEY))) == []
            with pytest.raises(ConfigError, match="no key"):
                list(extractor.key_problems(Selection(table=table)))

    # -- errors --------------------------------------------------------------------------------

    def test_unknown_table_is_named(self, make_source: MakeSource) -> None:
        extractor, _ = self.open(make_source, clean_rows(3))
        with extractor, pytest.raises(ExtractError) as exc:
            read_all(extractor, Selection(table="NO_SUCH_TABLE"))
        assert_one_line_naming(exc, "legacy", "NO_SUCH_TABLE")

    def test_unknown_column_is_named(self, make_source: MakeSource) -> None:
        extractor, table = self.open(make_source, clean_rows(3))
        with extractor:
            with pytest.raises(ExtractError) as exc:
                read_all(extractor, Selection(table=table, columns=("SURNAME", "SHOE_SIZE")))
            assert_one_line_naming(exc, "SHOE_SIZE")
            with pytest.raises(ExtractError) as exc:
                list(extractor.key_problems(Selection(table=table, key=("NOMINAL_REF", "SEQN"))))
            assert_one_line_naming(exc, "SEQN")
            with pytest.raises(ExtractError) as exc:
                extractor.count(Selection(table=table, columns=("NOPE",)))
            assert_one_line_naming(exc, "NOPE")

    def test_unreachable_source_is_one_line_without_password(
        self, make_source: MakeSource, unreachable: tuple[str, str]
    ) -> None:
        kind, _, table = make_source(clean_rows(1))
        location, named = unreachable
        extractor = open_extractor(kind, "legacy", location)
        with extractor:
            with pytest.raises(ExtractError) as exc:
                extractor.check()
            assert_one_line_naming(exc, "legacy", named)
            with pytest.raises(ExtractError) as exc:
                read_all(extractor, Selection(table=table))
            assert_one_line_naming(exc, "legacy", named)

    # -- memory --------------------------------------------------------------------------------

    def test_a_large_table_streams_in_bounded_memory(self, make_source: MakeSource) -> None:
        n = 200_000
        rows = clean_rows(n)
        # The table's size as the Python objects the extractor returns (every value a str).
        sample = rows[:600]
        per_row = sum(sys.getsizeof(r) + sum(sys.getsizeof(v) for v in r) for r in sample)
        table_bytes = per_row * n // len(sample)
        extractor, table = self.open(make_source, rows)
        del rows, sample
        with extractor:
            selection = Selection(table=table, key=KEY)
            extractor.columns(selection)  # reflection and connection set-up, outside the trace
            seen = 0
            stream = extractor.batches(selection, size=2_500)
            # Tracing makes Python allocations ~15 times slower, so only the first eighth of
            # the stream is traced: reading the table whole at the start (a buffered cursor)
            # or keeping what was read (a leak) both pass an eighth of its size by then.
            tracemalloc.start()
            try:
                for batch in stream:
                    seen += len(batch)
                    if seen >= n // 8:
                        break
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            seen += sum(len(batch) for batch in stream)
        assert seen == n
        # 2,500 rows are 1/80 of the table: a batch, the driver's buffer and the row being built
        # must stay far below it (a whole-table read, or a leak, would be 1/8 or more here).
        assert peak < table_bytes / 16, (peak, table_bytes)


# -- the built-ins ------------------------------------------------------------------------------


_tables = itertools.count()


def sql_source(url: str, rows: Sequence[Row]) -> tuple[str, str, str]:
    """A new table of ``rows`` in the database at ``url``, written by the driver's bulk path."""
    name = f"ALIAS_{next(_tables)}"
    metadata = sa.MetaData()
    table = sa.Table(name, metadata, *(sa.Column(c, sa.String(60)) for c in COLUMNS))
    engine = sa.create_engine(url)
    try:
        metadata.create_all(engine)
        quote = engine.dialect.identifier_preparer.quote
        cols = ", ".join(quote(c) for c in COLUMNS)
        raw: Any = engine.raw_connection()
        try:
            cursor = raw.cursor()
            if engine.dialect.name == "postgresql":
                with cursor.copy(f"COPY {quote(table.name)} ({cols}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
            elif engine.dialect.name == "sqlite":
                marks = ", ".join("?" * len(COLUMNS))
                cursor.executemany(
                    f"INSERT INTO {quote(table.name)} ({cols}) VALUES ({marks})", rows
                )
            else:
                # PyMySQL's executemany escapes value by value in Python (4 s for 200k rows);
                # its C-speed escape_string and 10,000-row statements take a third of that.
                def literal(v: str | None) -> str:
                    return "NULL" if v is None else f"'{escape_string(v)}'"

                insert = f"INSERT INTO {quote(table.name)} ({cols}) VALUES "
                for start in range(0, len(rows), 10_000):
                    chunk = rows[start : start + 10_000]
                    cursor.execute(
                        insert + ",".join(f"({','.join(map(literal, r))})" for r in chunk)
                    )
            raw.commit()
        finally:
            raw.close()
    finally:
        engine.dispose()
    return "sql", url, name


def csv_source(directory: Path, rows: Iterable[Row]) -> tuple[str, str, str]:
    """A new ``.csv`` file of ``rows`` (NULL written as the empty field) in ``directory``."""
    import csv

    name = f"alias_{next(_tables)}"
    with open(directory / f"{name}.csv", "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        writer.writerows(rows)
    return "csv", str(directory), name


@pytest.fixture(scope="module")
def pg_url(pg_database_for_module: Callable[[], str]) -> str:
    """One PostgreSQL database for the module; each source is a new table in it."""
    return pg_database_for_module()


@pytest.fixture(scope="module")
def mariadb_url(mariadb_database_for_module: Callable[[], str]) -> str:
    """One MariaDB database for the module; each source is a new table in it."""
    return mariadb_database_for_module()


class TestSqlOnSqlite(ExtractorConformance):
    @pytest.fixture
    def make_source(self, tmp_path: Path) -> MakeSource:
        return partial(sql_source, f"sqlite:///{tmp_path / 'legacy.sqlite'}")

    @pytest.fixture
    def unreachable(self, tmp_path: Path) -> tuple[str, str]:
        missing = tmp_path / "no-such-dir" / "legacy.sqlite"
        return f"sqlite:///{missing}", str(missing)


@pytest.mark.postgres
class TestSqlOnPostgres(ExtractorConformance):
    @pytest.fixture
    def make_source(self, pg_url: str) -> MakeSource:
        return partial(sql_source, pg_url)

    @pytest.fixture
    def unreachable(self) -> tuple[str, str]:
        return f"postgresql+psycopg://continuity:{SECRET}@127.0.0.1:1/legacy", "127.0.0.1:1"


@pytest.mark.mariadb
class TestSqlOnMariaDB(ExtractorConformance):
    quote = "`"

    @pytest.fixture
    def make_source(self, mariadb_url: str) -> MakeSource:
        return partial(sql_source, mariadb_url)

    @pytest.fixture
    def unreachable(self) -> tuple[str, str]:
        return f"mysql+pymysql://continuity:{SECRET}@127.0.0.1:1/legacy", "127.0.0.1:1"


class TestCsv(ExtractorConformance):
    sql = False

    @pytest.fixture
    def make_source(self, tmp_path: Path) -> MakeSource:
        return partial(csv_source, tmp_path)

    @pytest.fixture
    def unreachable(self, tmp_path: Path) -> tuple[str, str]:
        missing = tmp_path / "no-such-dir"
        return str(missing), str(missing)
