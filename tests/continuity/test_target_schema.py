"""`continuity target init` creates the same product schema on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import (
    Boolean,
    Date,
    DateTime,
    Integer,
    String,
    Text,
    create_engine,
    inspect,
)

from continuity.cli import main
from continuity.target_schema import metadata


def _kind(column_type: Any) -> str:
    if type(column_type).__name__ == "TINYINT" and getattr(column_type, "display_width", None) == 1:
        return "boolean"  # MariaDB stores BOOLEAN as TINYINT(1)
    generic = column_type.as_generic() if hasattr(column_type, "as_generic") else column_type
    if isinstance(generic, Boolean):
        return "boolean"
    if isinstance(generic, DateTime):
        return "datetime"
    if isinstance(generic, Date):
        return "date"
    if isinstance(generic, Integer):
        return "integer"
    if isinstance(generic, Text) or (isinstance(generic, String) and generic.length is None):
        return "text"
    if isinstance(generic, String):
        return f"string({generic.length})"
    return type(generic).__name__


def reflect(url: str) -> dict[str, Any]:
    engine = create_engine(url)
    insp = inspect(engine)
    schema = {}
    for table in sorted(insp.get_table_names()):
        schema[table] = {
            "columns": [
                (c["name"], _kind(c["type"]), c["nullable"]) for c in insp.get_columns(table)
            ],
            "primary_key": insp.get_pk_constraint(table)["constrained_columns"],
            "foreign_keys": sorted(
                (tuple(f["constrained_columns"]), f["referred_table"])
                for f in insp.get_foreign_keys(table)
            ),
            "indexes": sorted(
                (i["name"], tuple(i["column_names"]))
                for i in insp.get_indexes(table)
                if not i["name"].startswith("sqlite_autoindex")
            ),
        }
    engine.dispose()
    return schema


def _init(url: str) -> dict[str, Any]:
    result = CliRunner().invoke(main, ["target", "init", url])
    assert result.exit_code == 0, result.output
    assert f"Created {len(metadata.tables)} tables" in result.stdout
    return reflect(url)


def test_sqlite_schema_is_the_declared_one(tmp_path: Path) -> None:
    schema = _init(f"sqlite:///{tmp_path / 't.sqlite'}")
    assert set(schema) == set(metadata.tables)
    assert schema["person"]["primary_key"] == ["person_id"]
    assert ("dob_estimated", "boolean", False) in schema["person"]["columns"]
    assert ("mo_text", "text", True) in schema["event"]["columns"]


@pytest.mark.postgres
@pytest.mark.mariadb
def test_schema_is_identical_on_all_three(
    tmp_path: Path, pg_database: Callable[[], str], mariadb_database: Callable[[], str]
) -> None:
    lite = _init(f"sqlite:///{tmp_path / 't.sqlite'}")
    assert _init(pg_database()) == lite
    assert _init(mariadb_database()) == lite


def test_init_refuses_a_database_that_already_has_the_tables(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 't.sqlite'}"
    _init(url)
    result = CliRunner().invoke(main, ["target", "init", url])
    assert result.exit_code == 2
    assert "already holds target tables" in result.stderr
