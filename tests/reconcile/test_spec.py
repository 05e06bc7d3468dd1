"""A bad spec fails before any data is read, naming file, line and key, every error at once."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from continuity.cli import main
from continuity.domain.errors import ReconcileError
from reconcile.spec import bundled_specs_dir, load_spec, load_specs, spec_files

GOOD = """\
version: 1
class: tiny
owner: Someone
severity: normal
target:
  table: t
  key: id
locate:
  crosswalk: {table: xw, target_table: t}
fields:
  name: {target: name, normalise: [trim]}
sources:
  - system: old
    table: s
    key: [id]
    fields:
      name: NAME
"""


def write(tmp_path: Path, text: str, name: str = "spec.yml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def error_of(path: Path) -> str:
    with pytest.raises(ReconcileError) as info:
        load_spec(path)
    return str(info.value)


def test_a_good_spec_loads(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, GOOD))
    assert spec.name == "tiny" and spec.systems == ("old",) and spec.segments == 256
    assert spec.sources[0].key_text(("A1",)) == "A1"


def test_every_bundled_spec_loads() -> None:
    names = {s.name for s in load_specs(spec_files(bundled_specs_dir()))}
    assert {"persons", "firearms_persons", "firearms_locations", "crimes"} <= names
    assert {"crime_person_links", "open_investigations", "locations"} <= names
    assert {"bail", "intelligence", "safeguarding", "restriction_codes"} <= names


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            (
                "  name: {target: name, normalise: [trim]}",
                "  name: {target: name, normalise: [trim",
            ),
            "spec.yml:12: malformed YAML",
        ),
        (("severity: normal", "severity: loud"), "spec.yml:4: severity: 'loud' is not one of"),
        (
            ("owner: Someone\n", "owner: Someone\ncolour: red\n"),
            "spec.yml:4: colour: unknown key; allowed:",
        ),
        (
            ("normalise: [trim]", "normalise: [trimm]"),
            "spec.yml:11: fields.name.normalise.0: unknown normaliser 'trimm'",
        ),
        (
            ("      name: NAME", "      nmae: NAME"),
            "spec.yml:17: sources.0.fields.nmae: not a field of this class",
        ),
        (
            ("owner: Someone\n", "owner: Someone\nowner: Another\n"),
            "spec.yml:4: owner: duplicate key",
        ),
        (
            ("normalise: [trim]", "normalise: [{date: {pivot: soon}}]"),
            "spec.yml:11: fields.name.normalise.0: normaliser 'date'",
        ),
    ],
)
def test_errors_name_file_line_and_key(tmp_path: Path, edit: tuple[str, str], message: str) -> None:
    old, new = edit
    assert old in GOOD
    text = error_of(write(tmp_path, GOOD.replace(old, new, 1)))
    assert message in text, text
    assert "\n" not in text


def test_every_error_is_reported_at_once(tmp_path: Path) -> None:
    bad = GOOD.replace("[trim]", "[trimm]").replace("      name: NAME", "      nmae: NAME")
    text = error_of(write(tmp_path, bad))
    assert text.startswith("3 errors:")
    assert "unknown normaliser 'trimm'" in text and "nmae" in text
    assert "field 'name' has no binding" in text


def test_rules_name_declared_attributes(tmp_path: Path) -> None:
    bad = GOOD + "    exclude:\n      - rule: r\n        when: [{attribute: status, eq: X}]\n"
    assert "sources.0.exclude.0.when.0.attribute: unknown attribute 'status'" in error_of(
        write(tmp_path, bad)
    )


def test_a_missing_code_table_is_named(tmp_path: Path) -> None:
    bad = GOOD.replace("[trim]", "[{crosswalk: {file: nowhere.csv}}]")
    assert "cannot read code table" in error_of(write(tmp_path, bad))


def test_the_cli_fails_before_reading_any_data(tmp_path: Path) -> None:
    specs = tmp_path / "specs"
    specs.mkdir()
    write(specs, GOOD.replace("severity: normal", "severity: loud"))
    result = CliRunner().invoke(
        main,
        [
            "reconcile",
            "--specs",
            str(specs),
            "--target",
            "postgresql+psycopg://nobody@127.0.0.1:1/x",
            "--source",
            "old=sqlite:///nothing.db",
            "--store",
            f"sqlite:///{tmp_path / 'w.db'}",
        ],
    )
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "spec.yml:4: severity" in result.stderr


def test_a_class_reading_a_system_without_a_url_is_an_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        [
            "reconcile",
            "--specs",
            str(write(tmp_path, GOOD)),
            "--target",
            "sqlite:///t.db",
            "--store",
            f"sqlite:///{tmp_path / 'w.db'}",
        ],
    )
    assert result.exit_code == 2
    assert "reads source system(s) old, but no URL was given" in result.stderr


def test_an_unreachable_database_is_one_line_before_any_data_is_read(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        [
            "reconcile",
            "--specs",
            str(write(tmp_path, GOOD)),
            "--source",
            f"old=sqlite:///{tmp_path / 'old.db'}",
            "--target",
            "postgresql+psycopg://nobody@127.0.0.1:1/nothing",
            "--store",
            f"sqlite:///{tmp_path / 'w.db'}",
        ],
    )
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert "cannot reach postgresql+psycopg://nobody@127.0.0.1:1/nothing" in result.stderr
