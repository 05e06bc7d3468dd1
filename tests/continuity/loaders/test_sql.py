"""The ``sql`` loader on SQLite, PostgreSQL and MariaDB: types, upserts, atomicity, checkpoints."""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, select, text

from continuity.db import table_digest
from continuity.domain.errors import ConfigError, LedgerError
from continuity.loaders import LoadError, SqlLoader
from continuity.loaders.sql import CHECKPOINT_TABLE
from continuity.target_schema import metadata

Rows = Callable[..., list[tuple[Any, ...]]]


def _loader(url: str) -> SqlLoader:
    loader = SqlLoader(url, metadata)
    loader.check()
    loader.prepare()
    return loader


def _content(url: str, table: str) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    """A table's rows read back with SQLAlchemy, by primary key."""
    t = metadata.tables[table]
    key = [t.columns.keys().index(c.name) for c in t.primary_key.columns]
    engine = create_engine(url)
    with engine.connect() as conn:
        found = {tuple(r[i] for i in key): tuple(r) for r in conn.execute(select(t))}
    engine.dispose()
    return found


def _expected(url: str, table: str, rows: list[tuple[Any, ...]]) -> dict[Any, tuple[Any, ...]]:
    t = metadata.tables[table]
    key = [t.columns.keys().index(c.name) for c in t.primary_key.columns]
    # Timestamps keep their microseconds on every server (DATETIME(6) on MariaDB).
    return {tuple(row[i] for i in key): row for row in rows}


def _load_every_table(loader: SqlLoader, rows: Rows, count: int, start: int = 0) -> None:
    with loader.transaction() as batch:
        for table in metadata.sorted_tables:  # parents first: servers check foreign keys
            batch.upsert(table.name, rows(table.name, count, start))


def test_every_column_type_round_trips(target: str, rows: Rows) -> None:
    """Every table of the product schema: None, both booleans, dates, timestamps with
    microseconds, unicode, quotes, backslashes and 12,000 characters of text come back equal."""
    with _loader(target) as loader:
        _load_every_table(loader, rows, 6)
    for table in metadata.sorted_tables:
        expected = _expected(target, table.name, rows(table.name, 6))
        assert _content(target, table.name) == expected, table.name
    event = _content(target, "event")
    values = {v for row in event.values() for v in row}
    assert {None, True, False} <= values
    assert any(isinstance(v, str) and len(v) > 10_000 for v in values)


def _sqlite_raw(path: str, table: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()


def test_sqlite_stores_exactly_what_sqlalchemy_stores(tmp_path: Path, rows: Rows) -> None:
    """Dates, timestamps and booleans are stored in SQLAlchemy's SQLite formats, byte for byte."""
    ours, theirs = tmp_path / "loader.sqlite", tmp_path / "sqlalchemy.sqlite"
    for path in (ours, theirs):
        metadata.create_all(create_engine(f"sqlite:///{path}"))
    with _loader(f"sqlite:///{ours}") as loader:
        _load_every_table(loader, rows, 6)
    engine = create_engine(f"sqlite:///{theirs}")
    with engine.begin() as conn:
        for table in metadata.sorted_tables:
            names = table.columns.keys()
            conn.execute(
                table.insert(), [dict(zip(names, r, strict=True)) for r in rows(table.name, 6)]
            )
    for table in metadata.sorted_tables:
        assert _sqlite_raw(str(ours), table.name) == _sqlite_raw(str(theirs), table.name)
    stored = {v for row in _sqlite_raw(str(ours), "event") for v in row}
    assert {"2001-02-03 04:05:06.123456", "1901-01-01", 1, 0} <= stored


def test_upsert_is_idempotent_and_replaces_changed_rows(target: str, rows: Rows) -> None:
    with _loader(target) as loader:
        _load_every_table(loader, rows, 8)
        before = {
            t.name: table_digest(loader.engine, t.name, metadata) for t in metadata.tables.values()
        }
        _load_every_table(loader, rows, 8)
        again = {
            t.name: table_digest(loader.engine, t.name, metadata) for t in metadata.tables.values()
        }
        assert again == before
        assert before["event"][0] == 8

        changed = list(rows("event", 1, 2)[0])
        changed[metadata.tables["event"].columns.keys().index("status")] = "CHANGED"
        with loader.transaction() as batch:
            batch.upsert("event", [tuple(changed)])
        assert batch.counts == {"event": 1}
    expected = _expected(target, "event", [*rows("event", 2), tuple(changed), *rows("event", 5, 3)])
    assert _content(target, "event") == expected


def test_a_later_row_of_the_same_key_in_one_batch_wins(target: str, rows: Rows) -> None:
    first = rows("ref_offence_code", 1)
    second = [(first[0][0], "Replaced", first[0][2])]
    with _loader(target) as loader, loader.transaction() as batch:
        batch.upsert("ref_offence_code", first + second)
    assert list(_content(target, "ref_offence_code").values()) == second


def test_upsert_delete_upsert_in_one_batch(target: str, rows: Rows) -> None:
    """Each statement sees only its own rows (PostgreSQL reuses one temporary table)."""
    a, b = rows("ref_offence_code", 1), rows("ref_offence_code", 1, 1)
    with _loader(target) as loader, loader.transaction() as batch:
        batch.upsert("ref_offence_code", a)
        batch.delete("ref_offence_code", [a[0][:1]])
        batch.upsert("ref_offence_code", b)
    assert list(_content(target, "ref_offence_code").values()) == b


def test_an_exception_leaves_neither_rows_nor_checkpoint(target: str, rows: Rows) -> None:
    with _loader(target) as loader:
        with loader.transaction() as batch:
            batch.upsert("person", rows("person", 2))
            batch.set_checkpoint("persons", {"after": 2})
        with pytest.raises(RuntimeError, match="mapping failed"), loader.transaction() as batch:
            batch.upsert("person", rows("person", 3, 2))
            batch.delete("person", [r[:1] for r in rows("person", 2)])
            batch.set_checkpoint("persons", {"after": 5})
            batch.set_checkpoint("events", {"after": 1})
            raise RuntimeError("mapping failed")
        assert loader.checkpoints() == {"persons": {"after": 2}}
        # The connection is usable after the rollback.
        with loader.transaction() as batch:
            batch.upsert("person", rows("person", 1, 9))
    assert _content(target, "person") == _expected(
        target, "person", [*rows("person", 2), *rows("person", 1, 9)]
    )


def test_a_refused_row_is_a_one_line_load_error_and_rolls_back(target: str, rows: Rows) -> None:
    bad = list(rows("person", 1, 4)[0])
    bad[metadata.tables["person"].columns.keys().index("surname")] = None
    with _loader(target) as loader:
        with (
            pytest.raises(LoadError, match=r"target table person") as caught,
            loader.transaction() as batch,
        ):
            batch.upsert("person", rows("person", 2))
            batch.set_checkpoint("persons", {"after": 2})
            batch.upsert("person", [tuple(bad)])
        assert "\n" not in str(caught.value)
        assert loader.checkpoints() == {}
    assert _content(target, "person") == {}


def test_delete_by_primary_key(target: str, rows: Rows) -> None:
    """Composite keys including a date (person_dob), absent keys ignored, rows counted."""
    with _loader(target) as loader:
        with loader.transaction() as batch:
            batch.upsert("person", rows("person", 4))
            batch.upsert("person_dob", rows("person_dob", 4))
        dobs = rows("person_dob", 4)
        with loader.transaction() as batch:
            batch.delete("person_dob", [(r[0], r[1]) for r in dobs[1:3]])
            batch.delete("person_dob", [(dobs[0][0], dt.date(1800, 1, 1))])  # no such row
            batch.delete("person", [(rows("person", 1, 2)[0][0],)])  # its dob went first
        assert batch.deleted == {"person_dob": 2, "person": 1}
    assert _content(target, "person_dob") == _expected(target, "person_dob", [dobs[0], dobs[3]])
    assert len(_content(target, "person")) == 3


def test_checkpoints_commit_with_their_batch(target: str) -> None:
    with _loader(target) as loader:
        assert loader.checkpoint("persons") is None
        with loader.transaction() as batch:
            batch.set_checkpoint("persons", {"after": "a", "n": 1})
            batch.set_checkpoint("persons", {"after": "b", "n": 2})
            batch.set_checkpoint("events", {"division": [1, 2], "ok": True})
        with loader.transaction() as batch:
            batch.set_checkpoint("events", {"division": [3]})
        assert loader.checkpoints() == {
            "persons": {"after": "b", "n": 2},
            "events": {"division": [3]},
        }
    # A new loader (a resumed run) reads the same.
    with SqlLoader(target, metadata) as again:
        assert again.checkpoint("persons") == {"after": "b", "n": 2}


def test_a_state_that_is_not_json_is_refused(target: str) -> None:
    with _loader(target) as loader:
        with (
            pytest.raises(LoadError, match="'persons': state is not JSON"),
            loader.transaction() as batch,
        ):
            batch.set_checkpoint("persons", {"at": dt.date(2020, 1, 1)})
        with pytest.raises(ConfigError, match="checkpoint step"), loader.transaction() as batch:
            batch.set_checkpoint("x" * 201, {})
        assert loader.checkpoints() == {}


def test_aware_timestamps_are_stored_as_naive_utc(target: str, rows: Rows) -> None:
    row = list(rows("event", 1)[0])
    names = metadata.tables["event"].columns.keys()
    bst = dt.timezone(dt.timedelta(hours=1))
    row[names.index("recorded_at")] = dt.datetime(2020, 6, 1, 12, 30, tzinfo=bst)
    with _loader(target) as loader, loader.transaction() as batch:
        batch.upsert("location", rows("location", 1))
        batch.upsert("event", [tuple(row)])
    (stored,) = _content(target, "event").values()
    assert stored[names.index("recorded_at")] == dt.datetime(2020, 6, 1, 11, 30)


def test_a_value_of_the_wrong_type_names_its_column(tmp_path: Path, rows: Rows) -> None:
    url = f"sqlite:///{tmp_path / 't.sqlite'}"
    metadata.create_all(create_engine(url))
    row = list(rows("person", 1)[0])
    row[metadata.tables["person"].columns.keys().index("dob")] = "1980-01-02"
    with (
        _loader(url) as loader,
        pytest.raises(LoadError, match=r"target table person, column dob: expected a date"),
        loader.transaction() as batch,
    ):
        batch.upsert("person", [tuple(row)])


def _engine_rows_unchanged(engine: Engine, dialect: str) -> Any:
    if dialect == "postgresql":
        with engine.connect() as conn:
            return sorted(conn.execute(text("SELECT xmin::text, event_id FROM event")).all())
    return None


def test_rerunning_a_finished_batch_writes_nothing(target: str, dialect: str, rows: Rows) -> None:
    """Unchanged rows are not rewritten: no new row versions on PostgreSQL, no changes on SQLite."""
    if dialect == "mariadb":
        pytest.skip("MariaDB itself skips an ON DUPLICATE KEY UPDATE that changes nothing")
    with _loader(target) as loader:
        _load_every_table(loader, rows, 5)
        versions = _engine_rows_unchanged(loader.engine, dialect)
        changes = loader._raw.driver_connection.total_changes if dialect == "sqlite" else None
        _load_every_table(loader, rows, 5)
        if dialect == "sqlite":
            assert loader._raw.driver_connection.total_changes == changes
        else:
            assert _engine_rows_unchanged(loader.engine, dialect) == versions


def test_prepare_names_the_missing_tables(empty_database: str) -> None:
    loader = SqlLoader(empty_database, metadata)
    loader.check()
    with pytest.raises(ConfigError, match=r"lacks the target tables .*person.* \(create them"):
        loader.prepare()
    assert loader.checkpoints() == {}  # never prepared: no checkpoint table, nothing committed
    loader.close()


def test_prepare_names_missing_columns(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 't.sqlite'}"
    engine = create_engine(url)
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE bail DROP COLUMN conditions"))
    with pytest.raises(ConfigError, match="table bail lacks columns conditions"):
        SqlLoader(url, metadata).prepare()


def test_prepare_creates_the_checkpoint_table_once(target: str) -> None:
    for _ in range(2):
        with _loader(target):
            pass
    engine = create_engine(target)
    with engine.connect() as conn:
        assert conn.execute(text(f"SELECT COUNT(*) FROM {CHECKPOINT_TABLE}")).scalar() == 0
    engine.dispose()


@pytest.mark.parametrize(
    ("url", "error", "message"),
    [
        ("not a url", ConfigError, "not a database URL"),
        ("nosuchdb://x/y", ConfigError, "no driver"),
        ("postgresql+psycopg://nobody:secret@127.0.0.1:1/x", LedgerError, r"cannot reach .*\*\*\*"),
        ("sqlite:////nonexistent/dir/t.sqlite", ConfigError, "does not exist"),
    ],
)
def test_bad_targets_are_one_line_errors(url: str, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message) as caught:
        SqlLoader(url, metadata).check()
    assert "\n" not in str(caught.value) and "secret" not in str(caught.value)


def test_options_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"unknown option speed \(known: cache_mb"):
        SqlLoader("sqlite://", metadata, {"speed": 1})
    with pytest.raises(ConfigError, match="journal_mode must be one of"):
        SqlLoader("sqlite://", metadata, {"journal_mode": "off"})
    with pytest.raises(ConfigError, match="cache_mb must be a int"):
        SqlLoader("sqlite://", metadata, {"cache_mb": "lots"})


def test_unknown_table_and_misuse(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 't.sqlite'}"
    metadata.create_all(create_engine(url))
    with _loader(url) as loader:
        with (
            pytest.raises(ConfigError, match=r"no target table 'persons' \(tables: bail"),
            loader.transaction() as batch,
        ):
            batch.upsert("persons", [])
        with (
            loader.transaction() as batch,
            pytest.raises(RuntimeError, match="already open"),
            loader.transaction(),
        ):
            pass
        with pytest.raises(RuntimeError, match="ended"):
            batch.upsert("person", [])
