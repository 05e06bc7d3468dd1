"""The project file: schema, ${ENV} expansion, every error at once, relative paths, init."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from continuity.cli import main
from continuity.domain.errors import ConfigError
from continuity.project import load_project

GOOD = """\
version: 1
name: test
sources:
  legacy:
    kind: sql
    url: sqlite:///data/legacy.sqlite
  files:
    kind: csv
    path: ${FILES_DIR:-data}
target:
  loader: sql
  url: ${TARGET_URL}
waves:
  all: {description: everything}
  d1:
    where:
      legacy: {CRIME: DIVISION = 1}
owners:
  registrar: {name: Force Crime Registrar, classes: [crimes]}
"""


def write(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "continuity.yml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_good_project_expands_variables_and_reads_paths_from_its_folder(tmp_path: Path) -> None:
    path = write(tmp_path / "p", GOOD)
    project = load_project(path, {"TARGET_URL": "postgresql+psycopg://u:secret@h/db"})
    assert (
        project.sources["legacy"].location == f"sqlite:///{tmp_path / 'p' / 'data/legacy.sqlite'}"
    )
    assert project.sources["files"].location == str(tmp_path / "p" / "data")
    assert project.target.location == "postgresql+psycopg://u:secret@h/db"
    assert project.wave("d1").filter_for("legacy", "CRIME") == "DIVISION = 1"
    assert project.wave("d1").filter_for("legacy", "NOMINAL") is None
    assert project.mappings == tmp_path / "p" / "mappings"
    assert project.ledger.endswith(".continuity/ledger.sqlite")
    assert project.owners["registrar"].classes == ("crimes",)
    # The digest is of the file as written: a secret in the environment never enters it.
    other = load_project(path, {"TARGET_URL": "postgresql+psycopg://u:other@h/db"})
    assert other.digest == project.digest


def test_a_folder_is_read_for_its_continuity_yml(tmp_path: Path) -> None:
    write(tmp_path / "p", GOOD)
    assert load_project(tmp_path / "p", {"TARGET_URL": "sqlite://"}).name == "test"


def test_nested_defaults_and_literal_dollars(tmp_path: Path) -> None:
    text = GOOD.replace("${TARGET_URL}", "${T:-sqlite:///${DIR:-out}/t.sqlite}").replace(
        "all: {description: everything}", "all:\n    description: costs $${PRICE}"
    )
    project = load_project(write(tmp_path, text), {"DIR": "/abs"})
    assert project.target.location == "sqlite:////abs/t.sqlite"
    assert project.waves["all"].description == "costs ${PRICE}"


def test_every_error_is_reported_at_once_with_file_line_and_key(tmp_path: Path) -> None:
    text = GOOD.replace("kind: csv", "kind: csv\n    colour: blue").replace(
        "  d1:\n    where:\n      legacy:", "  d1:\n    where:\n      legasy:"
    )
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_project(path, {"TARGET_URL": "sqlite://"})
    message = str(err.value)
    assert "\n" not in message
    assert f"{path}:9: sources.files.colour: unknown key" in message


def test_semantic_errors_are_collected(tmp_path: Path) -> None:
    text = GOOD.replace("legacy: {CRIME", "legasy: {CRIME").replace(
        "classes: [crimes]}", "classes: [crimes]}\n  other: {name: X, classes: [crimes]}"
    )
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_project(path, {})
    message = str(err.value)
    assert message.startswith("3 errors: ")
    assert f"{path}:12: target.url: environment variable TARGET_URL is not set" in message
    assert "waves.d1.where.legasy: no source 'legasy'" in message
    assert "owners.other.classes.0: class 'crimes' is owned by registrar" in message


def test_a_password_written_in_the_file_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("${TARGET_URL}", "postgresql+psycopg://u:hunter2@h/db"))
    with pytest.raises(ConfigError, match=r"target\.url: a password is written in the URL"):
        load_project(path, {})


def test_malformed_yaml_and_duplicate_keys_name_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("name: test", "name: [test"))
    with pytest.raises(ConfigError, match=r"continuity.yml:\d+: malformed YAML"):
        load_project(path, {})
    path = write(tmp_path, GOOD.replace("name: test", "name: test\nname: again"))
    with pytest.raises(ConfigError, match=r"continuity.yml:3: name: duplicate key"):
        load_project(path, {})


def test_an_unknown_wave_lists_the_declared_ones(tmp_path: Path) -> None:
    project = load_project(write(tmp_path, GOOD), {"TARGET_URL": "sqlite://"})
    with pytest.raises(ConfigError, match=r"no wave 'd2' \(waves: all, d1\)"):
        project.wave("d2")


def test_a_missing_project_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="continuity init"):
        load_project(tmp_path)


def test_init_writes_a_starter_that_loads_and_never_overwrites(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["init", str(tmp_path / "new")])
    assert result.exit_code == 0, result.output
    project = load_project(tmp_path / "new", {})
    assert project.target.loader == "sql"
    assert "all" in project.waves
    assert (tmp_path / "new" / "mappings" / "location.yml").exists()
    again = runner.invoke(main, ["init", str(tmp_path / "new")])
    assert again.exit_code == 2
    assert "already exists" in again.output


def test_every_key_of_the_schema_is_documented() -> None:
    from continuity.project import json_schema

    page = (Path(__file__).resolve().parents[2] / "docs" / "project.md").read_text()
    schema = json_schema()
    keys = set(schema["properties"])
    for part in ("source", "target", "wave", "owner"):
        keys |= set(schema["$defs"][part]["properties"])
    missing = sorted(k for k in keys if f"`{k}`" not in page)
    assert missing == []


def test_the_bundled_project_loads(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "gmp"
    project = load_project(example, {"CONTINUITY_ESTATE": str(tmp_path)})
    assert project.sources["legacy"].location == f"sqlite:///{tmp_path}/legacy.sqlite"
    assert project.as_of is not None
    assert {"all", "division-1"} <= set(project.waves)
