"""Estate generation: determinism on every database, bad input, nothing half-written."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from continuity.cli import main
from continuity.domain.errors import ContinuityError, EstateError
from continuity.estate import render
from continuity.estate.defects import DEFECT_KINDS
from continuity.estate.generate import EstateOptions, estate_digests, generate_estate

PERSONS = 1200  # two chunks, one of them short


def _digests(
    out: Path, defects: bool = False, **urls: str
) -> dict[str, dict[str, tuple[int, str]]]:
    opts = EstateOptions(out=out, defects=defects, **urls)  # type: ignore[arg-type]
    return estate_digests({k: v for k, v in opts.urls().items() if k != "truth"})


def test_same_seed_and_size_give_identical_content(tmp_path: Path) -> None:
    persons = 4500  # five chunks: enough for two worker processes
    for name, seed, processes in (("a", 11, 1), ("b", 11, 2), ("c", 12, 1)):
        generate_estate(
            EstateOptions(
                out=tmp_path / name, persons=persons, seed=seed, defects=True, processes=processes
            )
        )
    a, b, c = (_digests(tmp_path / n, defects=True) for n in "abc")
    assert a == b
    assert (tmp_path / "a" / "defects.json").read_text() == (
        tmp_path / "b" / "defects.json"
    ).read_text()
    assert a["legacy"]["NOMINAL"] != c["legacy"]["NOMINAL"]
    # Every table is filled, except the deletions only an evolved estate records.
    assert all(
        count > 0
        for side in a.values()
        for table, (count, _) in side.items()
        if table != "migration_deletion"
    )
    assert a["target"]["migration_deletion"][0] == 0


def _four_databases(new_database: Callable[[], str]) -> dict[str, str]:
    names = ("legacy_url", "policeworks_url", "target_url", "damaged_url")
    return {name: new_database() for name in names}


def _assert_same_as_sqlite(tmp_path: Path, new_database: Callable[[], str]) -> None:
    """An estate with defects written to a server reads back identical to the SQLite one."""
    urls = _four_databases(new_database)
    lite, server = tmp_path / "lite", tmp_path / "server"
    generate_estate(EstateOptions(out=lite, persons=PERSONS, seed=5, defects=True))
    generate_estate(EstateOptions(out=server, persons=PERSONS, seed=5, defects=True, **urls))
    digests = _digests(server, defects=True, **urls)
    assert set(digests) == {"legacy", "policeworks", "target", "damaged"}
    assert digests == _digests(lite, defects=True)
    assert (server / "defects.json").read_text() == (lite / "defects.json").read_text()


@pytest.mark.postgres
def test_postgresql_estate_is_identical_to_sqlite(
    tmp_path: Path, pg_database: Callable[[], str]
) -> None:
    _assert_same_as_sqlite(tmp_path, pg_database)


@pytest.mark.mariadb
def test_mariadb_estate_is_identical_to_sqlite(
    tmp_path: Path, mariadb_database: Callable[[], str]
) -> None:
    """Identical once read: MariaDB's zero dates are NULL to every reader, as they must be."""
    _assert_same_as_sqlite(tmp_path, mariadb_database)


@pytest.mark.mariadb
def test_policeworks_on_mariadb_holds_zero_dates(
    tmp_path: Path, mariadb_database: Callable[[], str]
) -> None:
    from sqlalchemy import create_engine, text

    # Written as a mariadb:// URL, which SQLAlchemy names "mariadb", not "mysql".
    url = mariadb_database().replace("mysql+pymysql://", "mariadb+pymysql://", 1)
    assert url.startswith("mariadb+pymysql://")
    generate_estate(EstateOptions(out=tmp_path / "m", persons=PERSONS, seed=5, policeworks_url=url))
    engine = create_engine(url)
    with engine.connect() as conn:
        zero = conn.execute(
            text("SELECT COUNT(*) FROM pw_person WHERE CAST(dob AS CHAR) = '0000-00-00'")
        ).scalar()
        nulls = conn.execute(text("SELECT COUNT(*) FROM pw_person WHERE dob IS NULL")).scalar()
    engine.dispose()
    assert zero and zero > 0
    assert nulls == 0


def test_non_empty_output_is_refused_and_left_untouched(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    result = CliRunner().invoke(
        main, ["estate", "generate", "--out", str(tmp_path), "--persons", "10"]
    )
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0
    assert "is not empty" in result.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_unreachable_database_is_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "new"
    result = CliRunner().invoke(
        main,
        [
            "estate",
            "generate",
            "--out",
            str(out),
            "--persons",
            "10",
            "--target-url",
            "postgresql+psycopg://nobody@127.0.0.1:1/none",
        ],
    )
    assert result.exit_code == 2
    assert result.stderr.startswith(
        "error: cannot reach postgresql+psycopg://nobody@127.0.0.1:1/none"
    )
    assert result.stderr.strip().count("\n") == 0
    assert not out.exists()


@pytest.mark.parametrize(
    "args,message",
    [
        (["--persons", "0"], "0 is not in the range x>=1"),
        (["--seed", "-1"], "-1 is not in the range x>=0"),
        (["--persons", "many"], "'many' is not a valid integer"),
        (["--target-url", "not a url"], "not a database URL"),
        (["--target-url", "postgresql+psycopg://u@h:notaport/db"], "not a database URL"),
    ],
)
def test_bad_arguments_are_refused(tmp_path: Path, args: list[str], message: str) -> None:
    out = tmp_path / "new"
    result = CliRunner().invoke(main, ["estate", "generate", "--out", str(out), *args])
    assert result.exit_code == 2
    assert message in result.stderr
    assert not out.exists()


def test_same_database_twice_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'one.sqlite'}"
    with pytest.raises(EstateError, match="are the same database"):
        generate_estate(
            EstateOptions(out=tmp_path / "o", persons=10, legacy_url=url, target_url=url)
        )


@pytest.mark.postgres
def test_database_already_holding_an_estate_is_refused(
    tmp_path: Path, pg_database: Callable[[], str]
) -> None:
    url = pg_database()
    generate_estate(EstateOptions(out=tmp_path / "first", persons=10, target_url=url))
    with pytest.raises(EstateError, match="already holds estate tables"):
        generate_estate(EstateOptions(out=tmp_path / "second", persons=10, target_url=url))
    assert not (tmp_path / "second").exists()


@pytest.fixture
def fail_at_chunk_1(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inject a fault while chunk 1's ideal target renders (run with processes=1)."""
    real = render.render_ideal

    def failing(chunk, idx):  # type: ignore[no-untyped-def]
        if chunk.index == 1:
            raise RuntimeError("disk on fire")
        return real(chunk, idx)

    monkeypatch.setattr(render, "render_ideal", failing)


@pytest.mark.postgres
def test_failure_midway_leaves_nothing_behind(
    tmp_path: Path, pg_database: Callable[[], str], fail_at_chunk_1: None
) -> None:
    """A fault injected while chunk 1 renders: the PostgreSQL tables and the directory are gone."""
    from sqlalchemy import create_engine, inspect

    url = pg_database()
    out = tmp_path / "o"
    with pytest.raises(EstateError, match="nothing kept: RuntimeError: disk on fire"):
        generate_estate(EstateOptions(out=out, persons=PERSONS, target_url=url, processes=1))
    assert not out.exists()
    engine = create_engine(url)
    assert inspect(engine).get_table_names() == []
    engine.dispose()


def test_cli_generates_and_summarises(tmp_path: Path) -> None:
    out = tmp_path / "e"
    result = CliRunner().invoke(
        main, ["estate", "generate", "--out", str(out), "--persons", "600", "--defects"]
    )
    assert result.exit_code == 0, result.output
    assert "Estate of 600 persons (seed 1)" in result.stdout
    assert f"{len(DEFECT_KINDS)} defects planted" in result.stdout
    for name in (
        "legacy.sqlite",
        "policeworks.sqlite",
        "target.sqlite",
        "target_defects.sqlite",
        "truth.sqlite",
        "gazetteer.csv",
        "defects.json",
        "estate.json",
        "reference/offence_crosswalk_v1.csv",
    ):
        assert (out / name).is_file(), name
    digest = CliRunner().invoke(main, ["estate", "digest", str(out)])
    assert digest.exit_code == 0
    assert "legacy       NOMINAL" in digest.stdout


def test_help_explains_the_command() -> None:
    result = CliRunner().invoke(main, ["estate", "generate", "--help"])
    assert result.exit_code == 0
    for option in (
        "--persons",
        "--seed",
        "--defects",
        "--legacy-url",
        "--policeworks-url",
        "--target-url",
    ):
        assert option in result.stdout


def test_failure_removes_sqlite_databases_outside_the_output(
    tmp_path: Path, fail_at_chunk_1: None
) -> None:
    """A new SQLite file is deleted; an existing one keeps its own tables and loses ours."""
    import sqlite3

    existing = tmp_path / "existing.sqlite"
    with sqlite3.connect(existing) as conn:
        conn.execute("CREATE TABLE mine (x)")
    new = tmp_path / "new.sqlite"
    with pytest.raises(EstateError, match="nothing kept"):
        generate_estate(
            EstateOptions(
                out=tmp_path / "o",
                persons=PERSONS,
                processes=1,
                legacy_url=f"sqlite:///{new}",
                target_url=f"sqlite:///{existing}",
            )
        )
    assert not new.exists()
    with sqlite3.connect(existing) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"mine"}
    assert not list(tmp_path.glob("existing.sqlite.*"))


def test_an_unreachable_later_url_leaves_no_new_sqlite_file(tmp_path: Path) -> None:
    new = tmp_path / "legacy.sqlite"
    with pytest.raises(ContinuityError, match="cannot reach"):
        generate_estate(
            EstateOptions(
                out=tmp_path / "o",
                persons=10,
                legacy_url=f"sqlite:///{new}",
                target_url="postgresql+psycopg://nobody@127.0.0.1:1/none",
            )
        )
    assert not new.exists()
