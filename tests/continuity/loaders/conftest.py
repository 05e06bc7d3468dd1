"""Fixtures of the loader tests: a fresh product-schema target per dialect, and sample rows.

Sample rows are made from the column types of the product schema, so every type it uses is
exercised: booleans both ways, dates, timestamps with microseconds, unicode, quotes, commas,
newlines, backslashes, long text, and NULL in every nullable column. Every key column of row
``i`` holds the same UUID, so foreign keys between the sample rows of different tables hold.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import (
    Boolean,
    Column,
    Date,
    DateTime,
    Integer,
    String,
    Table,
    create_engine,
    inspect,
)

from continuity.domain.keys import target_key
from continuity.loaders.sql import CHECKPOINT_TABLE, checkpoint_table
from continuity.target_schema import metadata

LONG_TEXT = ("Ünïcødé MO — 'single', \"double\", commas, ✓ tabs\t, newline\n, \\back " * 200)[
    :12_000
]
TEXTS = ["Siobhán Ó'Brien", 'Mohammed, "Mo"', "", "\\N", "\\starts with a backslash", "日本"]

DIALECTS = [
    "sqlite",
    pytest.param("postgresql", marks=pytest.mark.postgres),
    pytest.param("mariadb", marks=pytest.mark.mariadb),
]


def new_url(request: pytest.FixtureRequest, dialect: str, directory: Path, scope: str = "") -> str:
    """A fresh, empty database of ``dialect`` (SQLite: a new file in ``directory``)."""
    if dialect == "sqlite":
        n = len(list(directory.glob("*.sqlite")))
        return f"sqlite:///{directory / f'target{n}.sqlite'}"
    fixture = "pg_database" if dialect == "postgresql" else "mariadb_database"
    factory: Callable[[], str] = request.getfixturevalue(fixture + scope)
    return factory()


def product_target(url: str) -> str:
    engine = create_engine(url)
    metadata.create_all(engine)
    engine.dispose()
    return url


@pytest.fixture(scope="module", params=DIALECTS)
def dialect(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def _module_target(
    request: pytest.FixtureRequest, dialect: str, tmp_path_factory: pytest.TempPathFactory
) -> str:
    # Creating the schema costs a second on MariaDB: once per module, emptied for each test.
    return product_target(new_url(request, dialect, tmp_path_factory.mktemp("t"), "_for_module"))


@pytest.fixture
def target(_module_target: str) -> str:
    """The URL of a database holding the product schema, with no rows and no checkpoints."""
    engine = create_engine(_module_target)
    with engine.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            conn.execute(table.delete())
        if inspect(conn).has_table(CHECKPOINT_TABLE):
            conn.execute(checkpoint_table.delete())
    engine.dispose()
    return _module_target


@pytest.fixture
def empty_database(request: pytest.FixtureRequest, dialect: str, tmp_path: Path) -> str:
    """The URL of a fresh database without any table."""
    return new_url(request, dialect, tmp_path)


def sample_value(column: Column[Any], i: int) -> Any:
    """Row ``i``'s value of ``column``: even rows fill everything, odd rows NULL what they may."""
    if i % 2 and column.nullable and not column.primary_key:
        return None
    kind = column.type
    if isinstance(kind, Boolean):
        return i % 4 == 0
    if isinstance(kind, DateTime):
        return dt.datetime(2001, 2, 3, 4, 5, 6, 123456) + dt.timedelta(
            days=400 * i, seconds=3671 * i, microseconds=7 * i
        )
    if isinstance(kind, Date):
        return dt.date(1901, 1, 1) + dt.timedelta(days=4111 * i)
    if isinstance(kind, Integer):
        return 1000 * i - 7
    if isinstance(kind, String) and kind.length == 36:
        return target_key("sample", "test", str(i))
    if isinstance(kind, String) and kind.length is not None:
        return (TEXTS[i % len(TEXTS)] + f"#{i}")[-kind.length :]
    return LONG_TEXT + str(i)


def sample_rows(table: Table, count: int, start: int = 0) -> list[tuple[Any, ...]]:
    return [tuple(sample_value(c, i) for c in table.columns) for i in range(start, start + count)]


@pytest.fixture
def rows() -> Callable[..., list[tuple[Any, ...]]]:
    """``rows(table_name, count, start=0)``: sample rows of a product table."""

    def make(table: str, count: int, start: int = 0) -> list[tuple[Any, ...]]:
        return sample_rows(metadata.tables[table], count, start)

    return make
