"""Suite files: every problem reported at once, each on one line naming file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from continuity.domain.errors import ValidationError
from validators.runner import compile_suites
from validators.suite import load_suite, load_suites

GOOD = """\
version: 1
side: source
source: legacy
table: NOMINAL
key: [NOMINAL_REF]
expectations:
  - expect: expect_column_values_to_not_be_null
    column: SURNAME
    severity: quarantine
"""


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_a_good_suite_reads_with_its_lines(tmp_path: Path) -> None:
    suite = load_suite(write(tmp_path, "s.yml", GOOD))
    assert (suite.side, suite.source, suite.table, suite.key) == (
        "source",
        "legacy",
        "NOMINAL",
        ("NOMINAL_REF",),
    )
    (spec,) = suite.expectations
    assert (spec.name, spec.severity, spec.line, spec.column) == (
        "expect_column_values_to_not_be_null",
        "quarantine",
        7,
        "SURNAME",
    )
    assert spec.arguments == {"column": "SURNAME"}
    assert spec.result_format == "COMPLETE"


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        (GOOD.replace("side: source", "side: [source"), 3, "malformed YAML"),
        (GOOD.replace("table: NOMINAL", "tabel: NOMINAL"), 4, "unknown key"),
        (GOOD.replace("severity: quarantine", "severity: fatal"), 9, "severity"),
        (GOOD.replace("source: legacy\n", ""), 2, "names its source system"),
        (GOOD.replace("key: [NOMINAL_REF]\n", ""), 8, "needs the suite's key"),
        (
            GOOD.replace("side: source\nsource: legacy", "side: target"),
            8,
            "target rows cannot be quarantined",
        ),
    ],
    ids=["yaml", "unknown-key", "severity", "no-source", "no-key", "target-quarantine"],
)
def test_a_bad_suite_is_one_line_naming_file_and_line(
    tmp_path: Path, text: str, line: int, words: str
) -> None:
    path = write(tmp_path, "bad.yml", text)
    with pytest.raises(ValidationError) as caught:
        load_suites(tmp_path)
    message = str(caught.value)
    assert "\n" not in message
    assert f"{path}:{line}:" in message
    assert words in message


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        (
            "  - expect: expect_column_values_to_be_smurfs\n    column: X\n    severity: warning\n",
            "unknown expectation 'expect_column_values_to_be_smurfs'",
        ),
        (
            "  - expect: expect_column_values_to_be_in_set\n    column: X\n    severity: warning\n",
            "value_set",
        ),
        (
            "  - expect: expect_table_row_count_to_be_between\n    min_value: 1\n"
            "    severity: quarantine\n",
            "cannot quarantine",
        ),
        (
            "  - expect: expect_column_values_to_be_home_office_offence_codes\n    column: X\n"
            "    code_list: nowhere.csv\n    severity: warning\n",
            "nowhere.csv",
        ),
        (
            "  - expect: expect_column_values_to_not_be_null\n    column: X\n    mostly: 0.9\n"
            "    severity: quarantine\n",
            "judges every row",
        ),
    ],
    ids=[
        "unknown-expectation",
        "missing-argument",
        "table-level-quarantine",
        "code-list",
        "quarantine-mostly",
    ],
)
def test_expectations_are_checked_against_gx_before_any_data(
    tmp_path: Path, entry: str, words: str
) -> None:
    path = write(tmp_path, "s.yml", GOOD + entry)
    with pytest.raises(ValidationError) as caught:
        compile_suites(load_suites(tmp_path))
    message = str(caught.value)
    assert "\n" not in message
    assert f"{path}:10:" in message
    assert words in message


def test_every_problem_of_every_file_at_once(tmp_path: Path) -> None:
    a = write(tmp_path, "a.yml", GOOD.replace("table: NOMINAL", "tabel: NOMINAL"))
    b = write(tmp_path, "b.yml", GOOD.replace("severity: quarantine", "severity: fatal"))
    with pytest.raises(ValidationError) as caught:
        load_suites(tmp_path)
    assert str(caught.value).startswith("3 errors")  # a: unknown key and table missing
    assert f"{a}:4" in str(caught.value) and f"{b}:9" in str(caught.value)


def test_one_suite_per_table(tmp_path: Path) -> None:
    write(tmp_path, "a.yml", GOOD)
    b = write(tmp_path, "b.yml", GOOD)
    with pytest.raises(ValidationError, match=f"{b}:4: table: NOMINAL already has a suite"):
        load_suites(tmp_path)


def test_the_bundled_suites_compile() -> None:
    folder = Path(__file__).resolve().parents[2] / "examples" / "gmp" / "suites"
    compiled = compile_suites(load_suites(folder))
    assert {c.suite.side for c in compiled} == {"source", "target"}
    assert sum(len(c.expectations) for c in compiled) >= 40


def test_a_file_source_refuses_what_needs_the_whole_table(tmp_path: Path) -> None:
    """Rows of a file arrive in batches: uniqueness and table-level expectations would judge
    each batch alone, so they are refused for it, with the suite's file and line."""
    entry = (
        "  - expect: expect_column_values_to_be_unique\n    column: NOMINAL_REF\n"
        "    severity: critical\n"
    )
    path = write(tmp_path, "s.yml", GOOD + entry)
    suites = load_suites(tmp_path)
    compile_suites(suites)  # a database source may
    with pytest.raises(ValidationError) as caught:
        compile_suites(suites, in_flight={"legacy"})
    assert f"{path}:10:" in str(caught.value)
    assert "read in batches" in str(caught.value)


def test_which_expectations_judge_only_a_deltas_rows(tmp_path: Path) -> None:
    """A delta's rows alone are judged by expectations judging a row on its own: not by a
    quarantine, not across rows, and not by a critical one looking into another table."""
    from validators.runner import _judges_rows

    body = GOOD.replace("severity: quarantine", "severity: warning") + "".join(
        f"  - expect: {name}\n    column: SURNAME\n{extra}    severity: {severity}\n"
        for name, extra, severity in [
            ("expect_column_values_to_not_be_null", "", "critical"),
            ("expect_column_values_to_not_be_null", "", "quarantine"),
            ("expect_column_values_to_be_unique", "", "warning"),
            ("expect_column_values_to_be_unique", "", "critical"),
            (
                "expect_column_values_to_reference_existing_rows",
                "    referenced_table: NAMES\n    referenced_column: NAME\n",
                "warning",
            ),
            (
                "expect_column_values_to_reference_existing_rows",
                "    referenced_table: NAMES\n    referenced_column: NAME\n",
                "critical",
            ),
        ]
    )
    (compiled,) = compile_suites([load_suite(write(tmp_path, "s.yml", body))])
    judged = [_judges_rows(spec, ex, row) for spec, ex, row in compiled.expectations]
    assert judged == [True, True, False, False, False, True, False]
