"""The ``sql`` extractor beyond the conformance tests, on SQLite, PostgreSQL and MariaDB.

The fixture database holds ``nominal`` (ref, seq INTEGER, surname, division) with 12 rows, refs
N01..N04 with seqs 1..3; ref N02/seq 2 is planted twice in division S only, so it is a duplicate
key in division S and nowhere else; and ``Order Details`` with columns ``select`` and ``Surname``,
names that only work quoted.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from continuity.domain.errors import ConfigError, ExtractError
from extractors import Selection, open_extractor
from extractors.sql import SqlExtractor

SECRET = "s3cret-pw"

metadata = sa.MetaData()
nominal = sa.Table(
    "nominal",
    metadata,
    sa.Column("ref", sa.String(10)),
    sa.Column("seq", sa.Integer),
    sa.Column("surname", sa.String(40)),
    sa.Column("division", sa.String(1)),
)
awkward = sa.Table(
    "Order Details", metadata, sa.Column("select", sa.Integer), sa.Column("Surname", sa.String(40))
)

NOMINAL_ROWS = [
    (f"N{r:02d}", s, name, "NSE"[(r + s) % 3])
    for r in range(1, 5)
    for s, name in ((1, "O'BRIEN"), (2, "OKAFOR"), (3, "Łukasz"))
]
PLANTED = ("N02", 2, "OKAFOR", "S")
ROWS = [*NOMINAL_ROWS, PLANTED]


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("mariadb", marks=pytest.mark.mariadb),
    ]
)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database of each dialect holding the module's two tables."""
    if request.param == "sqlite":
        database = f"sqlite:///{tmp_path / 'legacy.sqlite'}"
    else:
        factory: Callable[[], str] = request.getfixturevalue(
            "pg_database" if request.param == "postgres" else "mariadb_database"
        )
        database = factory()
    engine = sa.create_engine(database)
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(nominal.insert(), [dict(zip(nominal.c.keys(), r, strict=True)) for r in ROWS])
        conn.execute(awkward.insert(), [{"select": i, "Surname": f"S{i}"} for i in range(5)])
    engine.dispose()
    return database


def q(url: str, name: str) -> str:
    """``name`` quoted for a where string in the dialect of ``url``."""
    return f"`{name}`" if url.startswith("mysql") else f'"{name}"'


def read(extractor: Any, selection: Selection, size: int = 10_000) -> list[tuple[Any, ...]]:
    return [row for batch in extractor.batches(selection, size) for row in batch]


def test_a_query_is_read_as_a_subquery_with_params(url: str) -> None:
    query = (
        "SELECT n.ref AS nominal_ref, n.seq, UPPER(n.surname) AS surname FROM nominal n "
        "WHERE n.division <> :skip"
    )
    with open_extractor("sql", "legacy", url) as extractor:
        base = Selection(query=query, key=("nominal_ref", "seq"), params={"skip": "E"})
        assert extractor.columns(base) == ["nominal_ref", "seq", "surname"]
        kept = [r for r in ROWS if r[3] != "E"]
        assert Counter(read(extractor, base)) == Counter((r[0], r[1], r[2].upper()) for r in kept)
        # The wave's filter applies to the query's own column names.
        filtered = Selection(
            query=query,
            key=("nominal_ref", "seq"),
            where="seq >= :least",
            params={"skip": "E", "least": 2},
        )
        assert extractor.count(filtered) == sum(1 for r in kept if r[1] >= 2)
        # Integer keys come back as int and resume in numeric order.
        ordered = Selection(
            query=query,
            key=("nominal_ref", "seq"),
            columns=("nominal_ref", "seq"),
            params={"skip": "E"},
            order_by_key=True,
            after=("N03", 1),
        )
        expected = sorted((r[0], r[1]) for r in kept if (r[0], r[1]) > ("N03", 1))
        assert read(extractor, ordered) == expected
        with pytest.raises(ExtractError, match="no column division in query SELECT"):
            extractor.columns(Selection(query=query, columns=("division",), params={"skip": ""}))


def test_key_problems_respect_the_wave_filter(url: str) -> None:
    with open_extractor("sql", "legacy", url) as extractor:
        key = ("ref", "seq")
        everywhere = list(extractor.key_problems(Selection(table="nominal", key=key)))
        assert [(p.key, p.rows) for p in everywhere] == [(("N02", 2), 2)]
        for division, expected in (("S", [(("N02", 2), 2)]), ("N", [])):
            selection = Selection(
                table="nominal", key=key, where="division = :d", params={"d": division}
            )
            assert [(p.key, p.rows) for p in extractor.key_problems(selection)] == expected


def test_identifiers_are_quoted_by_the_dialect(url: str) -> None:
    with open_extractor("sql", "legacy", url) as extractor:
        selection = Selection(
            table="Order Details",
            key=("select",),
            columns=("Surname", "select"),
            order_by_key=True,
            after=(1,),
            where=f"{q(url, 'Surname')} <> :s",
            params={"s": "S3"},
        )
        assert read(extractor, selection) == [("S2", 2), ("S4", 4)]
        assert extractor.count(selection) == 2
        assert list(extractor.key_problems(selection)) == []


def test_the_filter_is_grouped_and_a_literal_percent_survives(url: str) -> None:
    # Without parentheses round the filter, "a OR b AND key > after" would bind as
    # "a OR (b AND …)" and return rows before the resume point; "%" must reach the server once.
    with open_extractor("sql", "legacy", url) as extractor:
        selection = Selection(
            table="nominal",
            key=("ref", "seq"),
            columns=("ref", "seq"),
            where="surname LIKE 'O%' OR surname = :name",
            params={"name": "nobody"},
            order_by_key=True,
            after=("N03", 3),
        )
        assert read(extractor, selection) == [("N04", 1), ("N04", 2)]


def test_a_missing_parameter_is_a_config_error(url: str) -> None:
    with open_extractor("sql", "legacy", url) as extractor:
        selection = Selection(table="nominal", where="division = :division")
        with pytest.raises(ConfigError, match="division") as exc:
            read(extractor, selection)
        assert "\n" not in str(exc.value)


def test_bad_sql_in_the_filter_is_one_line_naming_the_table(url: str) -> None:
    with open_extractor("sql", "legacy", url) as extractor:
        with pytest.raises(ExtractError, match="source legacy: table nominal") as exc:
            read(extractor, Selection(table="nominal", where="no_such_column = 1"))
        assert "\n" not in str(exc.value)
        # The connection went back clean: the next read works.
        assert extractor.count(Selection(table="nominal")) == len(ROWS)


def test_a_stream_abandoned_midway_releases_its_connection(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:  # enough rows that MariaDB is still sending when we stop
        conn.execute(
            nominal.insert(),
            [
                {"ref": f"X{i:05d}", "seq": i, "surname": "X" * 30, "division": "X"}
                for i in range(30_000)
            ],
        )
    engine.dispose()
    with open_extractor("sql", "legacy", url) as extractor:
        assert isinstance(extractor, SqlExtractor)
        for _ in range(3):
            stream = extractor.batches(Selection(table="nominal"), size=100)
            assert len(next(stream)) == 100
            stream.close()
        assert extractor.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        assert extractor.count(Selection(table="nominal")) == len(ROWS) + 30_000


def test_a_missing_sqlite_file_is_an_error_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "legacy.sqlite"
    with open_extractor("sql", "legacy", f"sqlite:///{missing}") as extractor:
        with pytest.raises(ExtractError, match="no SQLite database at"):
            extractor.check()
        with pytest.raises(ExtractError, match="no SQLite database at"):
            read(extractor, Selection(table="nominal"))
    assert not missing.exists()


def test_options_and_urls_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown sql option dsn \(accepted: schema\)"):
        open_extractor("sql", "legacy", f"sqlite:///{tmp_path}/x.sqlite", {"dsn": "x"})
    with pytest.raises(ExtractError, match="source legacy: not a database URL"):
        open_extractor("sql", "legacy", "not a url")


@pytest.mark.postgres
def test_the_schema_option_reads_another_schema(pg_database: Callable[[], str]) -> None:
    url = pg_database()
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text('CREATE SCHEMA "Legacy"'))
        conn.execute(sa.text('CREATE TABLE "Legacy"."NOMINAL" ("REF" text, "N" integer)'))
        conn.execute(sa.text("INSERT INTO \"Legacy\".\"NOMINAL\" VALUES ('A', 1), ('B', 2)"))
    engine.dispose()
    selection = Selection(table="NOMINAL", key=("REF",), order_by_key=True)
    with open_extractor("sql", "legacy", url, {"schema": "Legacy"}) as extractor:
        assert read(extractor, selection) == [("A", 1), ("B", 2)]
    with (
        open_extractor("sql", "legacy", url) as extractor,
        pytest.raises(ExtractError, match="no table NOMINAL in postgresql"),
    ):
        read(extractor, selection)


@pytest.mark.mariadb
def test_mariadb_zero_dates_arrive_as_pymysql_strings(mariadb_database: Callable[[], str]) -> None:
    url = mariadb_database()
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("SET SESSION sql_mode = ''"))  # PoliceWorks wrote them this way
        conn.execute(sa.text("CREATE TABLE person (id INT, dob DATE, seen DATETIME)"))
        conn.execute(
            sa.text(
                "INSERT INTO person VALUES (1, '0000-00-00', '0000-00-00 00:00:00'), "
                "(2, '1971-00-00', NULL), (3, '1980-02-29', '2019-07-01 09:30:00')"
            )
        )
    engine.dispose()
    with open_extractor("sql", "policeworks", url) as extractor:
        rows = read(extractor, Selection(table="person", key=("id",), order_by_key=True))
    assert rows == [
        (1, "0000-00-00", "0000-00-00 00:00:00"),
        (2, "1971-00-00", None),
        (3, dt.date(1980, 2, 29), dt.datetime(2019, 7, 1, 9, 30)),
    ]


@pytest.mark.mariadb
def test_a_refused_login_names_the_server_not_the_password(
    mariadb_database: Callable[[], str],
) -> None:
    url = make_url(mariadb_database()).set(username="continuity_nobody", password=SECRET)
    location = url.render_as_string(hide_password=False)
    with (
        open_extractor("sql", "policeworks", location) as extractor,
        pytest.raises(ExtractError, match="cannot reach mysql") as exc,
    ):
        extractor.check()
    message = str(exc.value)
    assert "continuity_nobody" in message and "***" in message
    assert SECRET not in message and "\n" not in message


def test_keys_ask_for_those_records_only_text_or_number(url: str) -> None:
    """A delta's read: the records with these keys (as text), a text key or a number key."""
    ex = open_extractor("sql", "legacy", url)
    try:
        by_ref = Selection(table="nominal", key=("ref",), keys=("N01", "N03", "N99"))
        assert Counter(r[0] for r in read(ex, by_ref)) == {"N01": 3, "N03": 3}
        by_seq = Selection(
            table="nominal",
            key=("seq",),
            columns=("seq", "ref"),
            where="division = 'S'",
            keys=("2",),
            order_by_key=True,
        )
        assert sorted(read(ex, by_seq)) == sorted(
            (s, r) for r, s, _, d in ROWS if s == 2 and d == "S"
        )
        assert read(ex, Selection(table="nominal", key=("ref",), keys=())) == []
    finally:
        ex.close()
    with pytest.raises(ConfigError, match="one-column key"):
        Selection(table="nominal", key=("ref", "seq"), keys=("N01|1",))


def test_matching_asks_for_rows_holding_those_values_in_any_column(url: str) -> None:
    """A delta's read of the rows referring to moved records: the database keeps the rows in
    which one of the columns holds one of its values (as text: a text or a number column)."""
    ex = open_extractor("sql", "legacy", url)
    try:
        asked = Selection(
            table="nominal",
            key=("ref",),
            columns=("ref", "seq"),
            matching=(("ref", ("N01", "N99")), ("seq", ("2",))),
        )
        assert sorted(read(ex, asked)) == sorted(
            (r, s) for r, s, _, _ in ROWS if r == "N01" or s == 2
        )
        none = Selection(table="nominal", key=("ref",), matching=(("ref", ()),))
        assert read(ex, none) == []
    finally:
        ex.close()
    with pytest.raises(ConfigError, match="read apart"):
        Selection(table="nominal", key=("ref",), keys=("N01",), matching=(("ref", ("N01",)),))


def test_keys_are_equal_as_text_only_where_the_database_says_so(url: str) -> None:
    """Text keys without a collation of their own and whole-number keys are one key exactly
    when their texts are, on SQLite and PostgreSQL; a collated or a decimal key is not, nor
    an untyped SQLite column (1 and 1.0 are one value there), nor any key on MariaDB, whose
    usual collations hold ``abc`` and ``ABC `` for one."""
    engine = sa.create_engine(url)
    kinds = sa.MetaData()
    collation = {"sqlite": "NOCASE", "postgresql": "C", "mysql": "utf8mb4_bin"}
    sa.Table(
        "kinds",
        kinds,
        sa.Column("collated", sa.String(10, collation=collation[engine.dialect.name])),
        sa.Column("amount", sa.Numeric(10, 2)),
    )
    kinds.create_all(engine)
    if engine.dialect.name == "sqlite":
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE loose (k, v)"))
    if engine.dialect.name == "postgresql":  # case-insensitive text: 'AB1' and 'ab1' are one
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE EXTENSION IF NOT EXISTS citext"))
            conn.execute(sa.text("CREATE TABLE loose (k citext, v text)"))
    engine.dispose()
    ex = open_extractor("sql", "legacy", url)
    try:
        plain = ex.keys_equal_as_text(Selection(table="nominal", key=("ref", "seq")))
        assert plain is (not url.startswith("mysql"))
        assert not ex.keys_equal_as_text(Selection(table="kinds", key=("collated",)))
        assert not ex.keys_equal_as_text(Selection(table="kinds", key=("amount",)))
        assert not ex.keys_equal_as_text(Selection(query="SELECT ref FROM nominal", key=("ref",)))
        if not url.startswith("mysql"):
            assert not ex.keys_equal_as_text(Selection(table="loose", key=("k",)))
    finally:
        ex.close()
