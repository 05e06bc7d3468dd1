"""Compiled mappings on small in-memory rows: every operation, rules, ``each``, copies, keys.

Most tests map one field, ``out``, of a source ``legacy.T`` keyed by ``REF`` into a target
``thing (thing_id, out)``. :func:`field_values` maps the rows twice, as one batch and one row at
a time, and asserts both give the same result before returning it, so every operation test also
checks that the batch (memoised) path agrees with the plain one.
"""

from __future__ import annotations

import datetime as dt
import decimal
import random
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from continuity.domain.errors import ContinuityError, MappingError
from continuity.domain.keys import target_key
from mappings.compiler import BatchOut, CompiledSource, compile_source, needed_columns
from mappings.spec import MappingSpec, load_mappings

COLUMNS = ("REF", "A", "B", "C")
TARGET = ("thing_id", "out")


class Quarantined(NamedTuple):
    reason: str


class Excluded(NamedTuple):
    reason: str


class Keys:
    """A KeyIndex over dictionaries: where referenced records went, or why they did not."""

    def __init__(
        self,
        known: dict[tuple[str, str, str], str] | None = None,
        fates: dict[tuple[str, str, str], tuple[str, str]] | None = None,
        copies: dict[tuple[str, str, str], tuple[str, str]] | None = None,
    ) -> None:
        self.known = known or {}
        self.fates = fates or {}
        self.copies = copies or {}

    def target_of(self, source: str, table: str, key: str) -> str | None:
        return self.known.get((source, table, key))

    def fate_of(self, source: str, table: str, key: str) -> tuple[str, str] | None:
        return self.fates.get((source, table, key))

    def copy_fate(self, source: str, table: str, key: str) -> tuple[str, str] | None:
        return self.copies.get((source, table, key))


def load(folder: Path, text: str, files: dict[str, str] | None = None) -> MappingSpec:
    """Write a mapping (and its code tables) into ``folder`` and load it."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in (files or {}).items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(content).lstrip("\n"), encoding="utf-8")
    path = folder / "mapping.yml"
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    (spec,) = load_mappings([path])
    return spec


def compile_(
    spec: MappingSpec,
    source: int = 0,
    columns: Sequence[str] = COLUMNS,
    target: Sequence[str] = TARGET,
    required: Sequence[str] = (),
    keys: Keys | None = None,
    as_of: dt.date = dt.date(2026, 6, 30),
    resources: dict[str, Any] | None = None,
) -> CompiledSource:
    return compile_source(
        spec,
        spec.sources[source],
        columns,
        target,
        set(required),
        keys or Keys(),
        as_of,
        resources=resources,
    )


def run(compiled: CompiledSource, rows: Sequence[tuple[Any, ...]]) -> BatchOut:
    out = BatchOut()
    compiled.map_batch(list(rows), out)
    return out


def run_singly(compiled: CompiledSource, rows: Sequence[tuple[Any, ...]]) -> BatchOut:
    """Map every row in a batch of its own, accumulating into one output."""
    out = BatchOut()
    for row in rows:
        compiled.map_batch([row], out)
    return out


def fates(out: BatchOut) -> dict[str, Any]:
    """Source key -> the target row (without its key), Quarantined or Excluded.

    Asserts the accounting of one batch: every record is in exactly one of rows (with one
    crosswalk entry), quarantine and exclusions, and a quarantined record has a reason.
    """
    rows = {row[0]: row[1:] for row in out.rows}
    assert len(rows) == len(out.rows), "two records share a target row"
    result: dict[str, Any] = {}
    for _, _, key, _, target, _, _ in out.crosswalk:
        assert key not in result
        result[key] = rows.pop(target)
    assert not rows, f"target rows without a crosswalk entry: {rows}"
    for _, _, key, reason in out.quarantine:
        assert key not in result, f"{key} quarantined and placed elsewhere too"
        assert reason
        result[key] = Quarantined(reason)
    for _, _, key, reason in out.excluded:
        assert key not in result, f"{key} excluded and placed elsewhere too"
        result[key] = Excluded(reason)
    return result


def mapping_of(expr: str, codes: str = "") -> str:
    """A mapping of ``legacy.T`` into ``thing`` whose one field ``out`` is ``expr``."""
    codes_block = textwrap.dedent(codes).strip("\n")
    return (
        "version: 1\nentity: thing\nkey: thing_id\n"
        + (codes_block + "\n" if codes_block else "")
        + "sources:\n"
        "  - source: legacy\n"
        "    table: T\n"
        "    key: [REF]\n"
        "    fields:\n"
        f"      out: {expr}\n"
    )


def field_values(
    folder: Path,
    expr: str,
    inputs: Sequence[Any],
    *,
    codes: str = "",
    files: dict[str, str] | None = None,
    keys: Keys | None = None,
) -> list[Any]:
    """What ``out: expr`` makes of each input (a value of ``A``, or a tuple ``(A, B, C)``).

    Returns, per input, the value of ``out``, or Quarantined / Excluded with the reason.
    """
    spec = load(folder, mapping_of(expr, codes), files)
    rows = [
        (f"R{i}", *(v if isinstance(v, tuple) else (v, None, None))) for i, v in enumerate(inputs)
    ]
    batch = fates(run(compile_(spec, keys=keys), rows))
    singly = fates(run_singly(compile_(spec, keys=keys), rows))
    assert batch == singly, "a batch and one row at a time disagree"
    return [_value(batch[f"R{i}"]) for i in range(len(rows))]


def _value(fate: Any) -> Any:
    """The field's value of a placed record; the fate itself of a dropped one."""
    return fate if isinstance(fate, Quarantined | Excluded) else fate[0]


def line_of(text: str, needle: str) -> int:
    """1-based line of the first line of (dedented) ``text`` containing ``needle``."""
    lines = textwrap.dedent(text).lstrip("\n").splitlines()
    return next(i for i, line in enumerate(lines, 1) if needle in line)


# --- heads ----------------------------------------------------------------------------------


def test_from_carries_the_value_unchanged(tmp_path: Path) -> None:
    inputs = ["SMITH", "  padded  ", "", None, 7]
    assert field_values(tmp_path / "bare", "A", inputs) == inputs
    assert field_values(tmp_path / "step", "{from: A}", inputs) == inputs
    assert field_values(tmp_path / "other", "[B]", [("x", "from B", None)]) == ["from B"]


def test_const_is_the_same_for_every_record(tmp_path: Path) -> None:
    assert field_values(tmp_path / "a", "{const: MIGRATION}", ["x", None]) == [
        "MIGRATION",
        "MIGRATION",
    ]
    assert field_values(tmp_path / "b", "{const: false}", [None]) == [False]
    # Steps may follow a constant.
    assert field_values(tmp_path / "c", '[{const: "  open "}, trim, {case: upper}]', [1]) == [
        "OPEN"
    ]


def test_concat_joins_with_sep_and_leaves_out_nulls_and_blanks(tmp_path: Path) -> None:
    inputs = [("1", "HIGH ST", "LEEDS"), ("1", None, "LEEDS"), (None, "", None), ("A", " ", "B")]
    got = field_values(tmp_path / "sep", '{concat: {of: [A, B, C], sep: ", "}}', inputs)
    # A blank that is not empty (" ") is a value: only trim makes it null.
    assert got == ["1, HIGH ST, LEEDS", "1, LEEDS", None, "A,  , B"]
    assert field_values(tmp_path / "space", "{concat: [A, B]}", [("1", "HIGH ST", None)]) == [
        "1 HIGH ST"
    ]


def test_concat_parts_may_be_chains_and_heads(tmp_path: Path) -> None:
    expr = '{concat: {of: [[A, trim, {case: upper}], {const: "/"}, [B, trim]], sep: ""}}'
    assert field_values(tmp_path, expr, [(" 8 ", " 1 ", None), ("x", "   ", None)]) == [
        "8/1",
        "X/",
    ]


def test_a_rejecting_part_rejects_the_concat(tmp_path: Path) -> None:
    got = field_values(tmp_path, "{concat: [A, [B, integer]]}", [("a", "x", None)])
    assert got == [Quarantined("out: not a whole number: 'x'")]


def test_coalesce_takes_the_first_part_that_is_not_null(tmp_path: Path) -> None:
    expr = "{coalesce: [A, B, {const: UNKNOWN}]}"
    inputs = [("a", "b", None), (None, "b", None), (None, None, None), ("", "b", None)]
    # An empty string is a value, not a null.
    assert field_values(tmp_path / "a", expr, inputs) == ["a", "b", "UNKNOWN", ""]
    trimmed = "{coalesce: [[A, trim], B]}"
    assert field_values(tmp_path / "b", trimmed, [("   ", "b", None)]) == ["b"]
    assert field_values(tmp_path / "c", "{coalesce: [A, B]}", [(None, None, None)]) == [None]


REF = "{ref: {entity: person, name: nominal, source: legacy, table: NOMINAL, key: [A]}}"


def test_ref_found_gives_the_target_key(tmp_path: Path) -> None:
    keys = Keys({("legacy", "NOMINAL", "N1"): "person-1"})
    assert field_values(tmp_path, REF, ["N1", None], keys=keys) == ["person-1", None]


def test_ref_dangling_quarantines_with_the_reason(tmp_path: Path) -> None:
    got = field_values(tmp_path / "a", REF, ["N404"], keys=Keys())
    assert got == [Quarantined("dangling reference: nominal N404 does not exist")]
    # Without `name` the table names what is missing; a step reason replaces the message.
    plain = "{ref: {source: legacy, table: NOMINAL, key: [A]}}"
    assert field_values(tmp_path / "b", plain, ["N404"]) == [
        Quarantined("dangling reference: NOMINAL N404 does not exist")
    ]
    reasoned = "{ref: {source: legacy, table: NOMINAL, key: [A]}, reason: no such nominal}"
    assert field_values(tmp_path / "c", reasoned, ["N404"]) == [
        Quarantined("no such nominal: N404")
    ]


def test_ref_missing_null_carries_a_dangling_reference_as_null(tmp_path: Path) -> None:
    expr = "{ref: {source: legacy, table: NOMINAL, key: [A], missing: null}}"
    keys = Keys({("legacy", "NOMINAL", "N1"): "person-1"})
    assert field_values(tmp_path, expr, ["N404", "N1"], keys=keys) == [None, "person-1"]


def test_ref_with_a_composite_key_joins_its_parts(tmp_path: Path) -> None:
    expr = "{ref: {source: legacy, table: CRIME_NOMINAL, key: [A, B, C]}}"
    keys = Keys({("legacy", "CRIME_NOMINAL", "C1|N1|V"): "link-1"})
    assert field_values(tmp_path, expr, [("C1", "N1", "V")], keys=keys) == ["link-1"]


def test_ref_follows_a_parent_that_was_excluded_or_quarantined(tmp_path: Path) -> None:
    keys = Keys(
        fates={
            ("legacy", "NOMINAL", "N2"): ("excluded", "mopi: disposed of"),
            ("legacy", "NOMINAL", "N3"): ("rejected", "dob: not a date"),
        }
    )
    assert field_values(tmp_path, REF, ["N2", "N3"], keys=keys) == [
        Excluded("parent nominal excluded: mopi: disposed of"),
        Quarantined("parent nominal rejected: dob: not a date"),
    ]


def test_source_key_is_the_record_key_as_text(tmp_path: Path) -> None:
    assert field_values(tmp_path / "one", "{source_key: null}", ["x", None]) == ["R0", "R1"]
    text = """
        version: 1
        entity: person_name
        key: name_id
        sources:
          - source: legacy
            table: ALIAS
            key: [NOMINAL_REF, SEQ]
            fields:
              legacy_key: {source_key: null}
        """
    spec = load(tmp_path / "composite", text)
    compiled = compile_(spec, columns=("NOMINAL_REF", "SEQ"), target=("name_id", "legacy_key"))
    out = run(compiled, [("N1", 2), ("N2", None)])
    assert [r[1] for r in out.rows] == ["N1|2", "N2|"]


# --- steps ----------------------------------------------------------------------------------


def test_trim_strips_collapses_and_blanks_become_null(tmp_path: Path) -> None:
    got = field_values(tmp_path, "[A, trim]", ["  HIGH   ST  ", "   ", "", None, 12])
    assert got == ["HIGH ST", None, None, None, 12]


@pytest.mark.parametrize(
    ("case", "given", "expected"),
    [
        ("upper", "o'brien", "O'BRIEN"),
        ("lower", "O'BRIEN", "o'brien"),
        ("title", "O'BRIEN", "O'Brien"),
        ("title", "MCDONALD", "McDonald"),
        ("title", "MACDONALD", "Macdonald"),
        ("title", "SMITH-JONES", "Smith-Jones"),
        ("title", "D'ARCY", "D'Arcy"),
        ("title", "mary o'neill", "Mary O'Neill"),
        ("title", None, None),
    ],
)
def test_case(tmp_path: Path, case: str, given: str | None, expected: str | None) -> None:
    assert field_values(tmp_path, f"[A, {{case: {case}}}]", [given, 5]) == [expected, 5]


def test_case_title_keeps_surnames_that_merely_start_with_mac(tmp_path: Path) -> None:
    got = field_values(tmp_path, "[A, {case: title}]", ["MACHIN", "MACE", "MACKIE"])
    assert got == ["Machin", "Mace", "Mackie"]


def test_null_if_nulls_placeholders_compared_as_trimmed_text(tmp_path: Path) -> None:
    got = field_values(
        tmp_path / "list",
        "[A, {null_if: [UNKNOWN, NFA]}]",
        ["UNKNOWN", " NFA ", "unknown", "SMITH", None],
    )
    assert got == [None, None, "unknown", "SMITH", None]
    assert field_values(tmp_path / "one", "[A, {null_if: UNKNOWN}]", ["UNKNOWN", "X"]) == [
        None,
        "X",
    ]
    assert field_values(tmp_path / "number", "[A, {null_if: 0}]", [0, 1]) == [None, 1]


def test_default_replaces_only_null(tmp_path: Path) -> None:
    got = field_values(tmp_path, "[A, {default: U}]", [None, "", "M"])
    assert got == ["U", "", "M"]


def test_required_rejects_null(tmp_path: Path) -> None:
    assert field_values(tmp_path / "a", "[A, trim, required]", ["X", "  ", None]) == [
        "X",
        Quarantined("out: a value is required"),
        Quarantined("out: a value is required"),
    ]
    assert field_values(tmp_path / "b", "[A, {required: no surname}]", [None]) == [
        Quarantined("out: no surname")
    ]


def test_a_step_reason_replaces_the_field_name(tmp_path: Path) -> None:
    expr = "[A, {integer: null, reason: unreadable MoPI group}]"
    assert field_values(tmp_path / "a", expr, ["3", "3A"]) == [
        3,
        Quarantined("unreadable MoPI group: not a whole number: '3A'"),
    ]
    expr = "[A, {required: null, reason: no crime number}]"
    assert field_values(tmp_path / "b", expr, [None]) == [
        Quarantined("no crime number: a value is required")
    ]


def test_integer(tmp_path: Path) -> None:
    got = field_values(tmp_path, "[A, integer]", ["12", " 7 ", "-3", 4, None, "1.5", "", "3A"])
    assert got == [
        12,
        7,
        -3,
        4,
        None,
        Quarantined("out: not a whole number: '1.5'"),
        Quarantined("out: not a whole number: ''"),
        Quarantined("out: not a whole number: '3A'"),
    ]


def test_boolean_defaults(tmp_path: Path) -> None:
    inputs = ["Y", "n", " yes ", "FALSE", "1", "0", "t", None, True, "maybe"]
    assert field_values(tmp_path, "[A, boolean]", inputs) == [
        True,
        False,
        True,
        False,
        True,
        False,
        True,
        None,
        True,
        Quarantined("out: not a yes/no value: 'maybe'"),
    ]


def test_boolean_with_its_own_true_and_false_values(tmp_path: Path) -> None:
    expr = '[A, {boolean: {"true": [J, H], "false": [X]}}]'
    assert field_values(tmp_path, expr, ["J", "h", "X", "Y"]) == [
        True,
        True,
        False,
        Quarantined("out: not a yes/no value: 'Y'"),
    ]


def test_boolean_with_unquoted_true_and_false_keys(tmp_path: Path) -> None:
    expr = "[A, {boolean: {true: [J], false: [X]}}]"
    assert field_values(tmp_path, expr, ["J", "X"]) == [True, False]


def test_text(tmp_path: Path) -> None:
    assert field_values(tmp_path, "[A, text]", [12, "x", None]) == ["12", "x", None]


def test_max_length_rejects_and_never_truncates(tmp_path: Path) -> None:
    got = field_values(tmp_path, "[A, {max_length: 5}]", ["12345", "123456", None])
    assert got == ["12345", Quarantined("out: longer than 5 characters (6)"), None]


def test_pattern(tmp_path: Path) -> None:
    plain = '[A, {pattern: "[0-9]{2}/[0-9]+[A-Z]"}]'
    assert field_values(tmp_path / "a", plain, ["99/123A", "99/123", None]) == [
        "99/123A",
        Quarantined("out: does not match [0-9]{2}/[0-9]+[A-Z]: '99/123'"),
        None,
    ]
    with_reason = '[A, {pattern: {regex: "[0-9]{2}/[0-9]+[A-Z]", reason: not a PNC ID}}]'
    assert field_values(tmp_path / "b", with_reason, ["X"]) == [
        Quarantined("out: not a PNC ID: 'X'")
    ]


def test_split(tmp_path: Path) -> None:
    assert field_values(
        tmp_path / "first",
        '[A, {split: {sep: "/", index: 0}}]',
        ["8/1", "28A", "/1", None],
    ) == ["8", "28A", None, None]
    assert field_values(
        tmp_path / "last",
        '[A, {split: {sep: "/", index: -1}}]',
        ["8/ 1", "28A"],
    ) == ["1", "28A"]
    assert field_values(tmp_path / "beyond", '[A, {split: {sep: "/", index: 2}}]', ["8/1"]) == [
        None
    ]
    assert field_values(tmp_path / "space", "[A, {split: {index: 1}}]", ["M1   1AE"]) == ["1AE"]


ROLES = "{V: VICTIM, S: SUSPECT, O: OFFENDER, W: WITNESS, R: REPORTER}"


def test_map_rejects_an_unmapped_code_by_default(tmp_path: Path) -> None:
    got = field_values(tmp_path, f"[A, {{map: {{values: {ROLES}}}}}]", ["V", " W ", None, "Z"])
    assert got == ["VICTIM", "WITNESS", None, Quarantined("out: unmapped code 'Z' (map)")]


@pytest.mark.parametrize(
    ("unmapped", "expected"),
    [
        ("reject", Quarantined("out: unmapped code 'Z' (map)")),
        ("keep", "Z"),
        ('"null"', None),
        ("null", None),
    ],
)
def test_map_unmapped(tmp_path: Path, unmapped: str, expected: Any) -> None:
    expr = f"[A, {{map: {{values: {ROLES}, unmapped: {unmapped}}}}}]"
    assert field_values(tmp_path, expr, ["S", "Z"]) == ["SUSPECT", expected]


@pytest.mark.parametrize(
    ("expr", "value"),
    [
        ("[A, {parse_date: {unknown: null}}]", "00/00/1971"),
        ("[A, {postcode: {invalid: null}}]", "XX"),
    ],
)
def test_options_written_as_a_bare_null(tmp_path: Path, expr: str, value: str) -> None:
    assert field_values(tmp_path, expr, [value]) == [None]


def test_map_excluded_codes_are_carried_as_null(tmp_path: Path) -> None:
    expr = f"[A, {{map: {{values: {ROLES}, excluded: [X, 9]}}}}]"
    assert field_values(tmp_path, expr, ["X", 9, "O", "Q"]) == [
        None,
        None,
        "OFFENDER",
        Quarantined("out: unmapped code 'Q' (map)"),
    ]


OFFENCE_CSV = """
    from,to,description
    8/1,8N,Assault with injury
    8.1,8N,Assault with injury
    28A,28E,Burglary - residential
    """


def test_code_through_a_csv_code_table(tmp_path: Path) -> None:
    codes = """
        codes:
          offence:
            file: codes/offence.csv
            version: "2024-04"
            excluded: ["99/9"]
        """
    got = field_values(
        tmp_path,
        "[A, {code: offence}]",
        ["8/1", " 8.1", "28A", "99/9", None, "28Z"],
        codes=codes,
        files={"codes/offence.csv": OFFENCE_CSV},
    )
    assert got == [
        "8N",
        "8N",
        "28E",
        None,
        None,
        Quarantined("out: unmapped code '28Z' (offence v2024-04)"),
    ]


def test_code_through_a_csv_with_other_column_names(tmp_path: Path) -> None:
    codes = """
        codes:
          offence: {file: offence.csv, version: 2, from: legacy, to: home_office}
        """
    csv = """
        legacy,home_office
        8/1,8N
        """
    got = field_values(
        tmp_path, "[A, {code: offence}]", ["8/1", "8.1"], codes=codes, files={"offence.csv": csv}
    )
    assert got == ["8N", Quarantined("out: unmapped code '8.1' (offence v2)")]


def test_code_through_a_yaml_code_table(tmp_path: Path) -> None:
    codes = """
        codes:
          warning:
            file: warnings.yml
            version: 3
            excluded: [TEST_MARKER]
        """
    table = """
        FIREARMS: FI
        FIREARMS_CERT: FI
        VIOLENT: VI
        """
    got = field_values(
        tmp_path,
        "[A, {code: warning}]",
        ["FIREARMS", "VIOLENT", "TEST_MARKER", "SUICIDAL"],
        codes=codes,
        files={"warnings.yml": table},
    )
    assert got == ["FI", "VI", None, Quarantined("out: unmapped code 'SUICIDAL' (warning v3)")]


def test_name_tidies_and_title_cases_upper_case_names_only(tmp_path: Path) -> None:
    got = field_values(
        tmp_path,
        "[A, name]",
        ["O'BRIEN", "  MCDONALD  ", "McDonald", "Siobhán", "mary  ann", "   ", None],
    )
    assert got == ["O'Brien", "McDonald", "McDonald", "Siobhán", "mary ann", None, None]


def test_ascii_fold(tmp_path: Path) -> None:
    got = field_values(tmp_path, "[A, ascii_fold]", ["Siobhán", "Łukasz", "Zoë", None])
    assert got == ["Siobhan", "Lukasz", "Zoe", None]


def test_name_key(tmp_path: Path) -> None:
    got = field_values(tmp_path, "[A, name_key]", ["O'Brien", "OBRIEN", "o brien", "Siobhán", None])
    assert got == ["obrien", "obrien", "obrien", "siobhan", None]


def test_choose(tmp_path: Path) -> None:
    expr = "[A, {choose: {present: MATCHED, absent: UNMATCHED}}]"
    assert field_values(tmp_path, expr, ["100023336956", None, ""]) == [
        "MATCHED",
        "UNMATCHED",
        "MATCHED",  # an empty string is a value
    ]


def test_keep_if(tmp_path: Path) -> None:
    got = field_values(tmp_path, "[A, boolean, {keep_if: false}]", ["N", "Y", None])
    assert got == [False, None, None]


def test_bands(tmp_path: Path) -> None:
    expr = "[A, {bands: {0: HOCR1998, 2002: NCRS2002, 2015: HOCR2015}}]"
    got = field_values(tmp_path, expr, ["1975", 2002, "2014", 2026, -5, None, "x"])
    assert got == [
        "HOCR1998",
        "NCRS2002",
        "NCRS2002",
        "HOCR2015",
        "HOCR1998",  # below every bound: the first band
        None,
        Quarantined("out: not a number: 'x'"),
    ]


def test_attr(tmp_path: Path) -> None:
    got = field_values(tmp_path / "date", "[A, parse_date, {attr: year}]", ["12-MAR-1999", None])
    assert got == [1999, None]
    assert field_values(tmp_path / "none", "[A, {attr: nothing}]", ["x"]) == [None]


FIELDS = """
    version: 1
    entity: thing
    key: thing_id
    sources:
      - source: legacy
        table: T
        key: [REF]
        fields:
          _recorded: [A, {parse_datetime: {zone: null}}]
          out:
            - {field: _recorded}
            - {attr: year}
            - {bands: {0: HOCR1998, 2002: NCRS2002, 2015: HOCR2015, 2024: HOCR2024}}
    """


def test_field_starts_from_an_earlier_field(tmp_path: Path) -> None:
    spec = load(tmp_path, FIELDS)
    rows: list[tuple[Any, ...]] = [("R1", "01/02/03 10:00", None, None)]
    rows += [("R2", "31/12/1999", None, None), ("R3", None, None, None), ("R4", "no", None, None)]
    got = fates(run(compile_(spec), rows))
    assert fates(run_singly(compile_(spec), rows)) == got
    assert got["R1"] == ("NCRS2002",) and got["R2"] == ("HOCR1998",) and got["R3"] == (None,)
    # The earlier field's rejection is the record's reason.
    assert isinstance(got["R4"], Quarantined) and got["R4"].reason.startswith("_recorded: ")


def test_field_naming_a_later_field_is_a_compile_error(tmp_path: Path) -> None:
    text = FIELDS.replace("_recorded: [A", "_late: [A").replace("field: _recorded", "field: _later")
    spec = load(tmp_path, text)
    with pytest.raises(MappingError) as caught:
        compile_(spec)
    assert str(caught.value).startswith(f"{spec.file}:{line_of(text, '- {field: _later}')}: ")
    assert "field: '_later' is not a field written before this one (_late)" in str(caught.value)


def test_key_hash_is_a_stable_number_per_record_and_salt(tmp_path: Path) -> None:
    names = field_values(tmp_path / "a", "{key_hash: name}", ["x", "y", "z"])
    again = field_values(tmp_path / "b", "{key_hash: name}", ["other", None, 1])
    aliases = field_values(tmp_path / "c", "{key_hash: alias}", ["x", "y", "z"])
    assert names == again  # the key decides, not the values
    assert len(set(names)) == 3 and set(names).isdisjoint(aliases)
    assert all(isinstance(n, int) and 0 <= n < 2**31 for n in names + aliases)


ADDRESS_COLUMNS = ("ADDR_REF", "LINE1", "LINE2", "LINE3", "LINE4")
LOCATIONS = """
    version: 1
    entity: location
    key: location_id
    sources:
      - source: legacy
        table: ADDRESS
        key: [ADDR_REF]
        identity:
          - {fields: [uprn], rule: "merge:same_uprn"}
          - {fields: [_address], rule: "merge:same_address"}
        fields:
          _match:
            gazetteer: {source: gazetteer, table: gazetteer, lines: [LINE1, LINE2, LINE3, LINE4]}
          _address: {address_key: {lines: [LINE1, LINE2, LINE3, LINE4]}}
          uprn: [{field: _match}, {attr: match}, {attr: uprn}]
          match_status: [{field: uprn}, {choose: {present: MATCHED, absent: UNMATCHED}}]
          postcode: [{field: _match}, {attr: match}, {attr: postcode}]
    """
LOCATION_TARGET = ("location_id", "uprn", "match_status", "postcode")


def _gazetteer() -> Any:
    from continuity.domain.addresses import Gazetteer

    gazetteer = Gazetteer()
    gazetteer.add("100023336956", "", 12, "HIGH STREET", "DENTON", "MANCHESTER", "M34 3AB")
    return gazetteer


def test_gazetteer_address_key_and_identity(tmp_path: Path) -> None:
    spec = load(tmp_path, LOCATIONS)
    compiled = compile_(
        spec,
        columns=ADDRESS_COLUMNS,
        target=LOCATION_TARGET,
        resources={"gazetteer:gazetteer.gazetteer": _gazetteer()},
    )
    out = run(
        compiled,
        [
            ("A1", "12 HIGH ST", "DENTON", "MANCHESTER", "m343ab"),
            ("A2", "12 High Street", "Denton", "Manchester", "M34 3AB"),
            ("A3", "14 HIGH ST", "DENTON", "MANCHESTER", "M34 3AB"),  # not in the gazetteer
            ("A4", "14 High Street", "Denton, Manchester", None, None),  # the same house
            ("A5", "FLAT", "NFA", None, None),  # too little to be a place
        ],
    )
    rows = {x[2]: (x[4], x[5]) for x in out.crosswalk}
    assert rows["A1"][0] == rows["A2"][0] and rows["A1"][1] == rows["A2"][1] == "merge:same_uprn"
    assert rows["A3"][0] == rows["A4"][0] and rows["A3"][1] == "merge:same_address"
    assert rows["A5"] == (target_key("location", "legacy", "A5"), "anchor")
    assert len({key for key, _ in rows.values()}) == 3
    values = {r[0]: r[1:] for r in out.rows}
    assert values[rows["A1"][0]] == ("100023336956", "MATCHED", "M34 3AB")
    assert values[rows["A3"][0]] == (None, "UNMATCHED", None)


def test_a_gazetteer_the_run_has_not_loaded_is_a_compile_error(tmp_path: Path) -> None:
    spec = load(tmp_path, LOCATIONS)
    with pytest.raises(MappingError, match=r"gazetteer gazetteer\.gazetteer is not loaded"):
        compile_(spec, columns=ADDRESS_COLUMNS, target=LOCATION_TARGET)


PERSONS = """
    version: 1
    entity: person
    key: person_id
    resolve:
      fields: {forename: surname, surname: surname, dob: surname, pnc: _pnc}
    sources:
      - source: legacy
        table: NOMINAL
        key: [NOMINAL_REF]
        identity: {fields: [_anchor], rule_field: _rule}
        row_when: {_role: anchor}
        fields:
          surname: [SURNAME, name]
          _pnc: [PNC_ID, trim]
          _anchor: {resolved: anchor}
          _rule: {resolved: rule}
          _role: {resolved: role}
    """


def test_resolved_identity_and_row_when_make_one_person_per_cluster(tmp_path: Path) -> None:
    from mappings.resolution import Resolver

    spec = load(tmp_path, PERSONS)
    assert spec.resolve is not None and spec.resolve.fields[4] == "_pnc"
    resolver = Resolver(spec.resolve.settings)
    for key, pnc in (("N1", "99/1A"), ("N2", "99/1A"), ("N3", "99/2B")):
        resolver.add(f"legacy|NOMINAL|{key}", {"pnc": pnc})
    compiled = compile_(
        spec,
        columns=("NOMINAL_REF", "SURNAME", "PNC_ID"),
        target=("person_id", "surname"),
        resources={"resolution:person": resolver},
    )
    out = run(compiled, [("N1", "SMITH", "99/1A"), ("N2", "SMYTH", "99/1A"), ("N3", "JONES", "")])
    walk = {x[2]: (x[4], x[5]) for x in out.crosswalk}
    assert walk["N1"][0] == walk["N2"][0] != walk["N3"][0]
    assert [walk[k][1] for k in ("N1", "N2", "N3")] == ["anchor", "merge:same_pnc", "anchor"]
    # The merged record writes only its crosswalk entry: one row per person.
    assert sorted(out.rows) == sorted([(walk["N1"][0], "Smith"), (walk["N3"][0], "Jones")])


def test_copies_and_the_records_they_supersede(tmp_path: Path) -> None:
    text = """
        version: 1
        entity: event
        key: event_id
        sources:
          - source: policeworks
            table: pw_occurrence
            key: [occurrence_id]
            copy_of: {source: legacy, table: CRIME, key: [legacy_crime_no]}
            fields:
              status: status
          - source: legacy
            table: CRIME
            key: [CRIME_NO]
            superseded_by: {source: policeworks, table: pw_occurrence}
            fields:
              status: STATUS
        """
    spec = load(tmp_path, text)
    target = ("event_id", "status")
    newer = run(
        compile_(spec, 0, ("occurrence_id", "legacy_crime_no", "status"), target),
        [("O1", "C1", "CLOSED"), ("O2", None, "OPEN")],
    )
    c1 = target_key("event", "legacy", "C1")
    assert newer.copies == [("legacy", "CRIME", "C1", "loaded", c1)]
    keys = Keys(
        copies={
            ("legacy", "CRIME", "C1"): ("loaded", c1),
            ("legacy", "CRIME", "C2"): ("excluded", "mopi_disposal: MoPI group 3"),
            ("legacy", "CRIME", "C3"): ("rejected", "status: unmapped code 'X' (map)"),
        }
    )
    older = run(
        compile_(spec, 1, ("CRIME_NO", "STATUS"), target, keys=keys),
        [("C1", "OPEN"), ("C2", "CLOSED"), ("C3", "OPEN"), ("C4", "OPEN")],
    )
    c3, c4 = target_key("event", "legacy", "C3"), target_key("event", "legacy", "C4")
    assert older.crosswalk == [
        ("legacy", "CRIME", "C1", "event", c1, "anchor", None),
        ("legacy", "CRIME", "C3", "event", c3, "anchor", None),
        ("legacy", "CRIME", "C4", "event", c4, "anchor", None),
    ]
    # The loaded copy's values win: the legacy record adds no row of its own.
    assert older.rows == [(c3, "OPEN"), (c4, "OPEN")]
    assert older.excluded == [("legacy", "CRIME", "C2", "mopi_disposal: MoPI group 3")]
    assert older.quarantine == []


# --- steps built on continuity.domain (dates, addresses) -------------------------------------
# These depend on continuity.domain.dates / addresses, written alongside the mappings: a failure
# here that is only an ImportError or AttributeError there is theirs, not the mapping language's.


def test_parse_date_reads_the_legacy_shapes_with_a_field_dependent_century(
    tmp_path: Path,
) -> None:
    inputs = ["01/02/03", "01/02/75", "12-MAR-1999", " 05/06/2001 ", "", None]
    crime = field_values(tmp_path / "crime", "[A, parse_date]", inputs)
    assert crime == [
        dt.date(2003, 2, 1),
        dt.date(1975, 2, 1),
        dt.date(1999, 3, 12),
        dt.date(2001, 6, 5),
        None,
        None,
    ]
    dob = field_values(tmp_path / "dob", "[A, {parse_date: {century: 1900}}]", inputs[:2])
    assert dob == [dt.date(1903, 2, 1), dt.date(1975, 2, 1)]
    pivot = field_values(tmp_path / "pivot", "[A, {parse_date: {pivot: 50}}]", ["01/02/60"])
    assert pivot == [dt.date(1960, 2, 1)]
    own = field_values(
        tmp_path / "formats",
        '[A, {parse_date: {formats: ["%Y%m%d"]}}]',
        ["19990312", "12/03/1999"],
    )
    assert own[0] == dt.date(1999, 3, 12)
    assert isinstance(own[1], Quarantined) and "12/03/1999" in own[1].reason


def test_parse_date_rejects_what_is_no_date(tmp_path: Path) -> None:
    (got,) = field_values(tmp_path, "[A, parse_date]", ["31/02/09"])
    assert isinstance(got, Quarantined)
    assert got.reason.startswith("out: ") and "31/02/09" in got.reason


def test_parse_date_unknown_day_and_month(tmp_path: Path) -> None:
    inputs = ["00/00/1971", "00/05/1971", "12/05/1971"]
    rejected = field_values(tmp_path / "reject", "[A, parse_date]", inputs)
    assert all(isinstance(r, Quarantined) and "1971" in r.reason for r in rejected[:2])
    assert rejected[2] == dt.date(1971, 5, 12)
    first = field_values(tmp_path / "first", "[A, {parse_date: {unknown: first}}]", inputs)
    assert first == [dt.date(1971, 1, 1), dt.date(1971, 5, 1), dt.date(1971, 5, 12)]
    null = field_values(tmp_path / "null", '[A, {parse_date: {unknown: "null"}}]', inputs)
    assert null == [None, None, dt.date(1971, 5, 12)]


def test_is_partial_tells_a_date_not_known_to_the_day(tmp_path: Path) -> None:
    inputs = ["00/00/71", "00/05/1971", "03/04/71", None]
    for unknown in ("year", "first"):
        expr = f"[A, {{parse_date: {{century: 1900, unknown: {unknown}}}}}, is_partial]"
        got = field_values(tmp_path / unknown, expr, inputs)
        assert got == [True, True, False, None], unknown


def test_parse_datetime_is_naive_utc(tmp_path: Path) -> None:
    inputs = ["01/07/19 10:00", "01/01/19 10:00", "12-MAR-1999 23:59", "01/07/19", "31/02/09 10:00"]
    got = field_values(tmp_path / "london", "[A, parse_datetime]", inputs)
    assert got[:4] == [
        dt.datetime(2019, 7, 1, 9, 0),  # BST: an hour ahead of UTC
        dt.datetime(2019, 1, 1, 10, 0),
        dt.datetime(1999, 3, 12, 23, 59),
        dt.datetime(2019, 6, 30, 23, 0),  # a date alone is local midnight
    ]
    assert isinstance(got[4], Quarantined) and "31/02/09" in got[4].reason
    as_is = field_values(tmp_path / "none", "[A, {parse_datetime: {zone: null}}]", inputs[:1])
    assert as_is == [dt.datetime(2019, 7, 1, 10, 0)]


def test_parse_datetime_with_an_unknown_zone_fails_when_loaded(tmp_path: Path) -> None:
    text = mapping_of("[A, {parse_datetime: {zone: Mars/Olympus}}]")
    with pytest.raises(MappingError) as caught:
        load(tmp_path, text)
    assert str(caught.value).startswith(
        f"{tmp_path / 'mapping.yml'}:{line_of(text, 'out:')}: sources.0.fields.out.1: "
        "parse_datetime: "
    )
    assert "Mars/Olympus" in str(caught.value)


def test_postcode(tmp_path: Path) -> None:
    inputs = ["m11ae", "M1  1AE", "NOT A POSTCODE", None]
    assert field_values(tmp_path / "keep", "[A, postcode]", inputs) == [
        "M1 1AE",
        "M1 1AE",
        "NOT A POSTCODE",
        None,
    ]
    nulled = field_values(tmp_path / "null", '[A, {postcode: {invalid: "null"}}]', inputs)
    assert nulled == ["M1 1AE", "M1 1AE", None, None]
    rejected = field_values(tmp_path / "reject", "[A, {postcode: {invalid: reject}}]", inputs)
    assert rejected[2] == Quarantined("out: not a postcode: 'NOT A POSTCODE'")


def test_parse_date_arguments_are_checked_when_loaded(tmp_path: Path) -> None:
    text = mapping_of("[A, {parse_date: {unknown: sideways}}]")
    with pytest.raises(MappingError) as caught:
        load(tmp_path, text)
    message = str(caught.value)
    where = f"{tmp_path / 'mapping.yml'}:{line_of(text, 'out:')}: sources.0.fields.out.1"
    assert f"{where}: parse_date" in message
    assert "unknown" in message


# --- rules -----------------------------------------------------------------------------------

RULES = """
    version: 1
    entity: thing
    key: thing_id
    sources:
      - source: legacy
        table: T
        key: [REF]
        fields:
          out: [A, trim]
          _group: [B, integer]
          _hold: [C, boolean]
        reject:
          - when: {out: {not_in: [OPEN, CLOSED]}}
            reason: status is neither OPEN nor CLOSED
        exclude:
          - name: mopi
            when: {_group: 3, out: CLOSED}
            unless: {_hold: true}
            reason: MoPI group 3 and closed
    """


def test_reject_and_exclude_rules_with_unless(tmp_path: Path) -> None:
    spec = load(tmp_path, RULES)
    rows = [
        ("R1", "CLOSED", "3", "N"),  # excluded
        ("R2", "CLOSED", "3", "Y"),  # a legal hold spares it
        ("R3", "OPEN", "3", "N"),  # open: kept
        ("R4", "SHUT", "1", "N"),  # rejected by the rule
        ("R5", "CLOSED", "x", "N"),  # a field rejects it: quarantined, not excluded
        ("R6", "SHUT", "3", "N"),  # rejected and would be excluded: quarantined
    ]
    got = fates(run(compile_(spec), rows))
    assert got == {
        "R1": Excluded("mopi: MoPI group 3 and closed"),
        "R2": ("CLOSED",),
        "R3": ("OPEN",),
        "R4": Quarantined("status is neither OPEN nor CLOSED"),
        "R5": Quarantined("_group: not a whole number: 'x'"),
        "R6": Quarantined("status is neither OPEN nor CLOSED"),
    }


def _excluded_by(folder: Path, condition: str, inputs: Sequence[Any], **kw: Any) -> list[Any]:
    """The inputs (values of A, read by ``_v``) that ``exclude: when: {_v: condition}`` hits."""
    text = f"""
        version: 1
        entity: thing
        key: thing_id
        sources:
          - source: legacy
            table: T
            key: [REF]
            fields:
              out: A
              _v: {kw.pop("expr", "[A, integer]")}
            exclude:
              - when: {{_v: {condition}}}
                reason: hit
        """
    spec = load(folder, text)
    rows = [(f"R{i}", v, None, None) for i, v in enumerate(inputs)]
    got = fates(run(compile_(spec, **kw), rows))
    assert fates(run_singly(compile_(spec, **kw), rows)) == got
    return [v for i, v in enumerate(inputs) if isinstance(got[f"R{i}"], Excluded)]


@pytest.mark.parametrize(
    ("condition", "hit"),
    [
        ("2", ["2"]),
        ("{eq: 2}", ["2"]),
        ("{ne: 2}", ["1", "3", None]),
        ("{in: [1, 3]}", ["1", "3"]),
        ("{not_in: [1, 3]}", ["2", None]),
        ("{lt: 2}", ["1"]),
        ("{le: 2}", ["1", "2"]),
        ("{gt: 2}", ["3"]),
        ("{ge: 2}", ["2", "3"]),
        ("{is_null: true}", [None]),
        ("{is_null: false}", ["1", "2", "3"]),
    ],
)
def test_condition_operators(tmp_path: Path, condition: str, hit: list[Any]) -> None:
    assert _excluded_by(tmp_path, condition, ["1", "2", "3", None]) == hit


def test_conditions_compare_the_value_after_the_steps(tmp_path: Path) -> None:
    # The field is an integer: the text "2" of a condition is not equal to it.
    assert _excluded_by(tmp_path / "int", '"2"', ["2"]) == []
    assert _excluded_by(tmp_path / "text", '"2"', ["2", " 2"], expr="[A, trim]") == ["2", " 2"]


def test_condition_eq_null_holds_for_null(tmp_path: Path) -> None:
    assert _excluded_by(tmp_path, "null", ["1", None]) == [None]


def test_as_of_and_iso_dates_against_date_fields(tmp_path: Path) -> None:
    inputs = ["29/06/26", "30/06/26", "01/07/26", None]
    as_of = dt.date(2026, 6, 30)
    expr = "[A, parse_date]"
    assert _excluded_by(tmp_path / "a", "{lt: $as_of}", inputs, expr=expr, as_of=as_of) == [
        "29/06/26"
    ]
    assert _excluded_by(
        tmp_path / "b", "{lt: $as_of}", inputs, expr=expr, as_of=dt.date(2026, 7, 2)
    ) == ["29/06/26", "30/06/26", "01/07/26"]
    # An ISO date, bare or quoted.
    assert _excluded_by(tmp_path / "c", "{ge: 2026-07-01}", inputs, expr=expr) == ["01/07/26"]
    assert _excluded_by(tmp_path / "d", '{le: "2026-06-29"}', inputs, expr=expr) == ["29/06/26"]


def test_as_of_against_a_timestamp_field_is_midnight(tmp_path: Path) -> None:
    inputs = ["29/06/26 23:59", "30/06/26 00:00", "30/06/26 12:00"]
    expr = "[A, {parse_datetime: {zone: null}}]"
    got = _excluded_by(tmp_path, "{ge: $as_of}", inputs, expr=expr, as_of=dt.date(2026, 6, 30))
    assert got == ["30/06/26 00:00", "30/06/26 12:00"]


# --- each -------------------------------------------------------------------------------------

WARNINGS = """
    version: 1
    entity: warning_marker
    key: warning_id
    sources:
      - source: legacy
        table: NOMINAL
        as_table: NOMINAL.WARN
        key: [NOMINAL_REF]
        each: {columns: [WARN1, WARN2, WARN3, WARN4], as: warning{only}}
        fields:
          code: [warning, {map: {values: {FI: FI, VI: VI, WE: WE, SU: SU}}}]
          subject_type: {const: PERSON}
        reject:
          - when: {warning: WE}
            reason: weapons markers are reviewed by hand
    """
WARN_COLUMNS = ("NOMINAL_REF", "WARN1", "WARN2", "WARN3", "WARN4")
WARN_TARGET = ("warning_id", "subject_type", "code")
WARN_ROWS = [
    ("N1", "FI", "VI", None, "  "),
    ("N2", None, None, None, None),
    ("N3", " SU ", "ZZ", "", "WE"),
]


def test_each_makes_one_record_per_non_blank_value(tmp_path: Path) -> None:
    spec = load(tmp_path, WARNINGS.replace("{only}", ""))
    out = run(compile_(spec, columns=WARN_COLUMNS, target=WARN_TARGET), WARN_ROWS)
    assert fates(out) == {
        "N1|FI": ("PERSON", "FI"),
        "N1|VI": ("PERSON", "VI"),
        "N3|SU": ("PERSON", "SU"),
        "N3|ZZ": Quarantined("code: unmapped code 'ZZ' (map)"),
        "N3|WE": Quarantined("weapons markers are reviewed by hand"),
    }
    assert {(x[0], x[1]) for x in out.crosswalk} == {("legacy", "NOMINAL.WARN")}
    assert {x[1] for x in out.quarantine} == {"NOMINAL.WARN"}
    by_key = {x[2]: x[4] for x in out.crosswalk}
    assert by_key["N1|FI"] == target_key("warning_marker", "legacy", "N1|FI")
    assert {r[0] for r in out.rows} == set(by_key.values())


def test_each_only_keeps_the_listed_values(tmp_path: Path) -> None:
    spec = load(tmp_path, WARNINGS.replace("{only}", ", only: [FI, SU]"))
    out = run(compile_(spec, columns=WARN_COLUMNS, target=WARN_TARGET), WARN_ROWS)
    assert fates(out) == {"N1|FI": ("PERSON", "FI"), "N3|SU": ("PERSON", "SU")}


def test_each_value_loads_into_a_target_column_of_its_name(tmp_path: Path) -> None:
    text = """
        version: 1
        entity: warning_marker
        key: warning_id
        sources:
          - source: legacy
            table: ADDRESS
            as_table: ADDRESS.PREMISES_MARKER
            key: [ADDR_REF]
            each: {columns: [PREMISES_MARKER], as: code}
            fields:
              subject_type: {const: LOCATION}
        """
    spec = load(tmp_path, text)
    compiled = compile_(spec, columns=("ADDR_REF", "PREMISES_MARKER"), target=WARN_TARGET)
    out = run(compiled, [("A1", "FCH"), ("A2", None)])
    assert fates(out) == {"A1|FCH": ("LOCATION", "FCH")}
    assert needed_columns(spec.sources[0]) == ["ADDR_REF", "PREMISES_MARKER"]


def test_each_column_as_names_the_column_a_value_came_from(tmp_path: Path) -> None:
    text = """
        version: 1
        entity: person_identifier
        sources:
          - source: legacy
            table: NOMINAL
            as_table: NOMINAL.IDENTIFIER
            key: [NOMINAL_REF]
            each: {columns: [PNC_ID, CRO_NO], as: id_value, column_as: _column}
            fields:
              id_type: [{from: _column}, {map: {values: {PNC_ID: PNC, CRO_NO: CRO}}}]
              id_value: [id_value, {case: upper}]
            exclude:
              - when: {id_value: UNKNOWN}
                reason: a placeholder
        """
    spec = load(tmp_path, text)
    compiled = compile_(
        spec, columns=("NOMINAL_REF", "PNC_ID", "CRO_NO"), target=("id_type", "id_value")
    )
    out = run(compiled, [("N1", "99/1a", "123/45"), ("N2", "UNKNOWN", None)])
    assert out.rows == [("PNC", "99/1A"), ("CRO", "123/45")]
    assert out.excluded == [
        ("legacy", "NOMINAL.IDENTIFIER", "N2|UNKNOWN", "exclude: a placeholder")
    ]


# --- keys, the crosswalk, copies -----------------------------------------------------------


def test_the_key_column_is_the_target_key_of_entity_source_and_key(tmp_path: Path) -> None:
    spec = load(tmp_path, mapping_of("A"))
    out = run(compile_(spec), [("R1", "x", None, None), (42, "y", None, None)])
    assert out.rows == [
        (target_key("thing", "legacy", "R1"), "x"),
        (target_key("thing", "legacy", "42"), "y"),
    ]
    assert out.crosswalk == [
        ("legacy", "T", "R1", "thing", target_key("thing", "legacy", "R1"), "anchor", None),
        ("legacy", "T", "42", "thing", target_key("thing", "legacy", "42"), "anchor", None),
    ]


def test_composite_keys_are_joined_with_a_bar(tmp_path: Path) -> None:
    text = """
        version: 1
        entity: event_person
        key: link_id
        sources:
          - source: legacy
            table: CRIME_NOMINAL
            key: [CRIME_NO, NOMINAL_REF, ROLE]
            fields:
              role: [ROLE, {map: {values: {V: VICTIM}}}]
        """
    spec = load(tmp_path, text)
    compiled = compile_(
        spec, columns=("CRIME_NO", "NOMINAL_REF", "ROLE"), target=("link_id", "role")
    )
    out = run(compiled, [("C1", "N1", "V"), ("C1", "N2", "Z")])
    assert out.crosswalk == [
        (
            "legacy",
            "CRIME_NOMINAL",
            "C1|N1|V",
            "event_person",
            target_key("event_person", "legacy", "C1|N1|V"),
            "anchor",
            None,
        )
    ]
    assert out.quarantine == [
        ("legacy", "CRIME_NOMINAL", "C1|N2|Z", "role: unmapped code 'Z' (map)")
    ]


def test_without_a_key_column_there_is_no_crosswalk(tmp_path: Path) -> None:
    text = """
        version: 1
        entity: event_person
        sources:
          - source: legacy
            table: CRIME_NOMINAL
            key: [CRIME_NO, NOMINAL_REF, ROLE]
            fields:
              event_id: {ref: {source: legacy, table: CRIME, key: [CRIME_NO], entity: crime}}
              person_id: {ref: {source: legacy, table: NOMINAL, key: [NOMINAL_REF]}}
              role: [ROLE, {map: {values: {V: VICTIM, W: WITNESS}}}]
        """
    spec = load(tmp_path, text)
    keys = Keys({("legacy", "CRIME", "C1"): "event-1", ("legacy", "NOMINAL", "N1"): "person-1"})
    compiled = compile_(
        spec,
        columns=("CRIME_NO", "NOMINAL_REF", "ROLE"),
        target=("event_id", "person_id", "role"),
        required=("event_id", "person_id", "role"),
        keys=keys,
    )
    out = run(compiled, [("C1", "N1", "V"), ("C1", "N9", "W")])
    assert out.rows == [("event-1", "person-1", "VICTIM")]
    assert out.crosswalk == []
    assert out.quarantine == [
        ("legacy", "CRIME_NOMINAL", "C1|N9|W", "dangling reference: NOMINAL N9 does not exist")
    ]


CRIMES = """
    version: 1
    entity: event
    key: event_id
    sources:
      - source: legacy
        table: CRIME
        key: [CRIME_NO]
        fields:
          crime_reference: CRIME_NO
          status: STATUS
      - source: policeworks
        table: pw_occurrence
        key: [occurrence_id]
        copy_of: {source: legacy, table: CRIME, key: [legacy_crime_no]}
        fields:
          crime_reference: crime_reference
          status: status
    """


def test_copy_of_gives_both_copies_one_target_key(tmp_path: Path) -> None:
    spec = load(tmp_path, CRIMES)
    target = ("event_id", "crime_reference", "status")
    legacy = run(compile_(spec, 0, ("CRIME_NO", "STATUS"), target), [("C1", "OPEN")])
    pw_columns = ("occurrence_id", "legacy_crime_no", "crime_reference", "status")
    pw = run(
        compile_(spec, 1, pw_columns, target),
        [("O1", "C1", "C1", "CLOSED"), ("O2", None, "P2", "OPEN"), ("O3", "", "P3", "OPEN")],
    )
    crime = target_key("event", "legacy", "C1")
    assert legacy.crosswalk == [("legacy", "CRIME", "C1", "event", crime, "anchor", None)]
    assert pw.crosswalk == [
        ("policeworks", "pw_occurrence", "O1", "event", crime, "precedence:policeworks", None),
        (
            "policeworks",
            "pw_occurrence",
            "O2",
            "event",
            target_key("event", "policeworks", "O2"),
            "anchor",
            None,
        ),
        (
            "policeworks",
            "pw_occurrence",
            "O3",
            "event",
            target_key("event", "policeworks", "O3"),
            "anchor",
            None,
        ),
    ]
    # The copy's row carries the copy's values under the original's key: loaded after the
    # original, it wins where they differ.
    assert legacy.rows == [(crime, "C1", "OPEN")]
    assert pw.rows[0] == (crime, "C1", "CLOSED")
    assert needed_columns(spec.sources[1]) == [
        "occurrence_id",
        "legacy_crime_no",
        "crime_reference",
        "status",
    ]


def test_needed_columns_lists_every_column_read(tmp_path: Path) -> None:
    text = """
        version: 1
        entity: thing
        key: thing_id
        sources:
          - source: legacy
            table: T
            key: [REF]
            fields:
              a: [A, trim]
              b: {concat: [B, [C, trim], {const: x}]}
              c: {coalesce: [D, {ref: {source: legacy, table: X, key: [E, F]}}]}
              d: {const: 1}
              e: {source_key: null}
        """
    spec = load(tmp_path, text)
    assert needed_columns(spec.sources[0]) == ["REF", "A", "B", "C", "D", "E", "F"]


# --- compile-time errors ------------------------------------------------------------------

ERRORS = """
    version: 1
    entity: person
    key: person_id
    sources:
      - source: legacy
        table: NOMINAL
        key: [NOMINAL_REF]
        fields:
          surname: [SURNAM, trim]
          nickname: [FORENAME1, trim]
          _helper: FORENAME1
    """
PERSON = ("person_id", "surname", "forename", "record_origin")


def test_an_unknown_source_column_names_file_line_and_field(tmp_path: Path) -> None:
    spec = load(tmp_path, ERRORS.replace("          nickname: [FORENAME1, trim]\n", ""))
    with pytest.raises(MappingError) as caught:
        compile_(spec, columns=("NOMINAL_REF", "SURNAME", "FORENAME1"), target=PERSON)
    message = str(caught.value)
    assert message.startswith(f"{spec.file}:{line_of(ERRORS, '- source: legacy')}: sources.0:")
    assert "surname.from: no column 'SURNAM' in legacy.NOMINAL" in message
    assert "NOMINAL_REF, SURNAME, FORENAME1" in message  # the columns it does have
    assert "\n" not in message


def test_a_field_that_is_not_a_target_column(tmp_path: Path) -> None:
    text = ERRORS.replace("SURNAM,", "SURNAME,")
    spec = load(tmp_path, text)
    with pytest.raises(MappingError) as caught:
        compile_(spec, columns=("NOMINAL_REF", "SURNAME", "FORENAME1"), target=PERSON)
    where = f"{spec.file}:{line_of(text, 'nickname:')}: sources.0.fields.nickname"
    # The helper field `_helper` is not a target column, and that is no error.
    assert str(caught.value) == (
        f"{where}: 'nickname' is not a column of target table 'person' (helper fields start with _)"
    )


def test_a_not_null_target_column_nobody_fills(tmp_path: Path) -> None:
    text = ERRORS.replace("SURNAM,", "SURNAME,").replace("nickname", "forename")
    spec = load(tmp_path, text)
    with pytest.raises(MappingError) as caught:
        compile_(
            spec,
            columns=("NOMINAL_REF", "SURNAME", "FORENAME1"),
            target=PERSON,
            required=("person_id", "surname", "record_origin"),
        )
    assert str(caught.value) == (
        f"{spec.file}:{line_of(text, '- source:')}: sources.0: target column "
        "person.record_origin is NOT NULL and no field fills it"
    )


def test_every_compile_error_is_reported_at_once(tmp_path: Path) -> None:
    spec = load(tmp_path, ERRORS)
    with pytest.raises(MappingError) as caught:
        compile_(
            spec,
            columns=("NOMINAL_REF", "SURNAME"),  # no FORENAME1 either
            target=PERSON,
            required=("record_origin",),
        )
    message = str(caught.value)
    assert isinstance(caught.value, ContinuityError)
    assert message.startswith("5 errors: ")
    for part in (
        "no column 'SURNAM'",
        "nickname.from: no column 'FORENAME1'",
        "_helper.from: no column 'FORENAME1'",
        "'nickname' is not a column of target table 'person'",
        "person.record_origin is NOT NULL",
    ):
        assert part in message
    assert "\n" not in message


def test_missing_key_each_copy_and_ref_columns_are_compile_errors(tmp_path: Path) -> None:
    text = """
        version: 1
        entity: thing
        key: thing_id
        sources:
          - source: legacy
            table: T
            key: [REF]
            each: {columns: [W1, W2], as: w}
            copy_of: {source: other, table: X, key: [OTHER_REF]}
            fields:
              out: {ref: {source: legacy, table: X, key: [XREF]}}
        """
    spec = load(tmp_path, text)
    with pytest.raises(MappingError) as caught:
        compile_(spec, columns=("A",))
    message = str(caught.value)
    for part in ("REF", "W1", "W2", "OTHER_REF", "XREF"):
        assert f"no column '{part}'" in message


def test_a_key_column_that_is_not_a_target_column(tmp_path: Path) -> None:
    spec = load(tmp_path, mapping_of("A"))
    with pytest.raises(MappingError, match=r"key: 'thing_id' is not a column of 'thing'"):
        compile_(spec, target=("id", "out"))


def test_a_bad_key_column_names_the_line_of_key(tmp_path: Path) -> None:
    text = mapping_of("A")
    spec = load(tmp_path, text)
    with pytest.raises(MappingError) as caught:
        compile_(spec, target=("id", "out"))
    assert str(caught.value).startswith(f"{spec.file}:{line_of(text, 'key: thing_id')}: key:")


@pytest.mark.parametrize(
    "part", ["[B, {split: {sep: '/'}}]", "[B, {code: nosuch}]", "[B, {case: sideways}]"]
)
def test_a_bad_step_inside_a_concat_part_is_a_mapping_error(tmp_path: Path, part: str) -> None:
    text = mapping_of(f"{{concat: [A, {part}]}}")
    with pytest.raises(MappingError) as caught:
        compile_(load(tmp_path, text))
    assert f":{line_of(text, 'out:')}: sources.0.fields.out" in str(caught.value)


# --- batches agree with rows mapped one at a time; nothing is lost ------------------------------

PROPERTY_MAPPING = """
    version: 1
    entity: thing
    key: thing_id
    codes:
      offence: {file: offence.csv, version: "1", excluded: ["99/9"]}
    sources:
      - source: legacy
        table: T
        key: [REF]
        fields:
          out:
            - A
            - trim
            - null_if: UNKNOWN
            - map: {values: {V: VICTIM, S: SUSPECT}, excluded: [X]}
          code: [B, {code: offence}]
          n: [C, trim, integer]
          band: [{field: n}, {bands: {0: LOW, 5: HIGH}}]
          both: {concat: [A, B]}
          _flag: [D, trim, boolean]
        reject:
          - when: {n: {gt: 5}}
            reason: too big
        exclude:
          - name: flagged
            when: {_flag: true}
            unless: {out: SUSPECT}
            reason: flagged
    """
PROPERTY_COLUMNS = ("REF", "A", "B", "C", "D")
PROPERTY_TARGET = ("thing_id", "out", "code", "n", "band", "both")
POOLS = (
    [None, "", " ", "V", " V ", "S", "X", "Q", "UNKNOWN", "v"],
    [None, "", "8/1", "8.1", " 8/1", "99/9", "28Z", "28A"],
    [None, "", " 3", "7", "x", "-1", "5", "6 "],
    [None, "", "Y", "N", "maybe", " y "],
)


@pytest.fixture(scope="module")
def property_spec(tmp_path_factory: pytest.TempPathFactory) -> MappingSpec:
    return load(tmp_path_factory.mktemp("property"), PROPERTY_MAPPING, {"offence.csv": OFFENCE_CSV})


def _compiled(spec: MappingSpec) -> CompiledSource:
    return compile_(spec, columns=PROPERTY_COLUMNS, target=PROPERTY_TARGET)


def _rows(values: Sequence[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return [(f"R{i}", *v) for i, v in enumerate(values)]


def _accounted(out: BatchOut, keys: Sequence[str]) -> dict[str, Any]:
    """Fates of the batch, asserting every record read is in exactly one place."""
    got = fates(out)
    assert sorted(got) == sorted(keys)
    quarantined = {q[2] for q in out.quarantine}
    assert quarantined.isdisjoint(x[2] for x in out.crosswalk)
    return got


row_values = st.tuples(*(st.sampled_from(pool) for pool in POOLS))


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(values=st.lists(row_values, max_size=80), chunk=st.integers(1, 40))
def test_batches_of_any_size_agree_with_rows_one_at_a_time(
    property_spec: MappingSpec, values: list[tuple[Any, ...]], chunk: int
) -> None:
    rows = _rows(values)
    keys = [r[0] for r in rows]
    whole = _accounted(run(_compiled(property_spec), rows), keys)
    singly = _accounted(run_singly(_compiled(property_spec), rows), keys)
    chunked_source, chunked = _compiled(property_spec), BatchOut()
    for start in range(0, len(rows), chunk):
        chunked_source.map_batch(rows[start : start + chunk], chunked)
    assert whole == singly == _accounted(chunked, keys)


def test_five_thousand_rows_of_few_distinct_values(property_spec: MappingSpec) -> None:
    draw = random.Random(7)
    values = [tuple(draw.choice(pool) for pool in POOLS) for _ in range(5000)]
    rows = _rows(values)
    keys = [r[0] for r in rows]
    compiled = _compiled(property_spec)
    first = _accounted(run(compiled, rows), keys)
    again = _accounted(run(compiled, rows), keys)  # now served from the memo
    singly = _accounted(run_singly(_compiled(property_spec), rows), keys)
    assert first == again == singly
    kinds = {type(v).__name__ for v in first.values()}
    assert kinds == {"tuple", "Quarantined", "Excluded"}  # every fate is exercised


def test_five_thousand_rows_of_all_distinct_values(tmp_path: Path) -> None:
    spec = load(tmp_path, mapping_of("[A, trim, {max_length: 7}, {case: title}]"))
    rows = [(f"R{i}", f" NAME{i:0{i % 5}d} ", None, None) for i in range(5000)]
    keys = [r[0] for r in rows]
    compiled = compile_(spec)
    first = _accounted(run(compiled, rows), keys)
    again = _accounted(run(compiled, rows), keys)
    assert first == again == _accounted(run_singly(compile_(spec), rows), keys)
    assert first["R3"] == ("Name003",)
    assert first["R1234"] == Quarantined("out: longer than 7 characters (8)")


def test_rejected_records_never_reach_rows_or_the_crosswalk(property_spec: MappingSpec) -> None:
    rows = _rows([("Q", "8/1", "1", "N"), ("V", "28Z", "1", "N"), ("V", "8/1", "9", "N")])
    out = run(_compiled(property_spec), rows)
    assert out.rows == [] and out.crosswalk == []
    assert [(q[2], q[3]) for q in out.quarantine] == [
        ("R0", "out: unmapped code 'Q' (map)"),
        ("R1", "code: unmapped code '28Z' (offence v1)"),
        ("R2", "too big"),
    ]


def test_the_memo_starts_again_when_it_is_full(tmp_path: Path) -> None:
    spec = load(tmp_path, mapping_of("[A, trim]"))
    compiled = compile_(spec)
    out = BatchOut()
    # 50 batches of 2,000 rows, each value twice: the memo pays, and fills to 50,000 values.
    for b in range(50):
        batch = [(f"R{b}-{i}", f" v{b}-{i % 1000} ", None, None) for i in range(2000)]
        compiled.map_batch(batch, out)
        out.clear()
    compiled.map_batch([("old", " v0-0 ", None, None), ("new", " fresh ", None, None)], out)
    assert [r[1] for r in out.rows] == ["v0-0", "fresh"]


# --- defects a review found, each pinned ------------------------------------------------

SUPERSEDED = """
    version: 1
    entity: thing
    key: thing_id
    sources:
      - source: legacy
        table: T
        key: [REF]
        superseded_by: {source: pw, table: P}
        fields:
          out: [A, {map: {values: {OPEN: OPEN, CLOSED: CLOSED}}}]
        exclude:
          - {name: closed, when: {out: CLOSED}, reason: closed}
      - source: pw
        table: P
        key: [ID]
        copy_of: {source: legacy, table: T, key: [OLD]}
        fields:
          out: A
"""


def test_a_newer_copy_decides_before_the_older_records_own_values(tmp_path: Path) -> None:
    spec = load(tmp_path, SUPERSEDED)
    keys = Keys(
        copies={
            ("legacy", "T", "C1"): ("loaded", "tk-1"),
            ("legacy", "T", "C2"): ("loaded", "tk-2"),
            ("legacy", "T", "C3"): ("excluded", "mopi: gone"),
        }
    )
    compiled = compile_source(spec, spec.sources[0], ["REF", "A"], ["thing_id", "out"], set(), keys)
    out = BatchOut()
    # C1 is closed (its own rule would exclude it), C2 unreadable (its own value would
    # quarantine it): both copies loaded, so both only point at their copy's record.
    compiled.map_batch([("C1", "CLOSED"), ("C2", "???"), ("C3", "OPEN"), ("C4", "OPEN")], out)
    assert [r[1] for r in out.rows] == ["OPEN"]  # C4 alone is written
    assert {(x[2], x[4], x[5]) for x in out.crosswalk} == {
        ("C1", "tk-1", "anchor"),
        ("C2", "tk-2", "anchor"),
        ("C4", out.rows[0][0], "anchor"),
    }
    assert out.quarantine == []
    assert out.excluded == [("legacy", "T", "C3", "mopi: gone")]


def test_an_attribute_reference_does_not_drag_its_record_out(tmp_path: Path) -> None:
    text = """
        version: 1
        entity: thing
        key: thing_id
        sources:
          - source: legacy
            table: T
            key: [REF]
            fields:
              out:
                ref: {entity: place, source: legacy, table: ADDRESS, key: [A], follow: false}
    """
    spec = load(tmp_path, text)
    keys = Keys(fates={("legacy", "ADDRESS", "NFA"): ("excluded", "placeholder")})
    compiled = compile_source(spec, spec.sources[0], ["REF", "A"], ["thing_id", "out"], set(), keys)
    out = BatchOut()
    compiled.map_batch([("R1", "NFA"), ("R2", None)], out)
    assert [r[1] for r in out.rows] == [None, None]
    assert out.excluded == [] and out.quarantine == []


def test_equal_values_that_read_differently_are_mapped_as_themselves(tmp_path: Path) -> None:
    spec = load(
        tmp_path,
        """
        version: 1
        entity: thing
        key: thing_id
        sources:
          - source: legacy
            table: T
            key: [REF]
            fields:
              out: [A, text, {map: {values: {"1": ONE}}}]
        """,
    )
    compiled = compile_source(spec, spec.sources[0], ["REF", "A"], ["thing_id", "out"], set())
    out = BatchOut()
    compiled.map_batch([("R2", decimal.Decimal("1.0")), ("R1", decimal.Decimal("1"))], out)
    assert [r[1] for r in out.rows] == ["ONE"]
    assert [q[2] for q in out.quarantine] == ["R2"]


def test_yaml_yes_and_no_stay_text(tmp_path: Path) -> None:
    spec = load(
        tmp_path,
        """
        version: 1
        entity: thing
        key: thing_id
        sources:
          - source: legacy
            table: T
            key: [REF]
            fields:
              out: [A, {map: {values: {YES: Y, NO: N, ON: "1"}}}]
        """,
    )
    compiled = compile_source(spec, spec.sources[0], ["REF", "A"], ["thing_id", "out"], set())
    out = BatchOut()
    compiled.map_batch([("R1", "YES"), ("R2", "NO"), ("R3", "ON")], out)
    assert [r[1] for r in out.rows] == ["Y", "N", "1"]


def test_resolved_without_a_resolution_fails_to_compile(tmp_path: Path) -> None:
    spec = load(
        tmp_path,
        """
        version: 1
        entity: thing
        key: thing_id
        sources:
          - source: legacy
            table: T
            key: [REF]
            fields:
              out: {resolved: persn.role}
        """,
    )
    with pytest.raises(
        MappingError,
        match=r"mapping.yml:9: sources.0.fields.out: resolved: no resolution of 'persn'",
    ):
        compile_source(spec, spec.sources[0], ["REF"], ["thing_id", "out"], set())


def test_a_condition_on_a_date_that_does_not_exist_fails_when_loaded(tmp_path: Path) -> None:
    text = """
        version: 1
        entity: thing
        key: thing_id
        sources:
          - source: legacy
            table: T
            key: [REF]
            fields:
              out: [A, parse_date]
            exclude:
              - {name: old, when: {out: {lt: "2024-02-30"}}, reason: too old}
    """
    with pytest.raises(
        MappingError, match=r"mapping.yml:11: sources.0.exclude.0.when.out: not a date"
    ):
        load(tmp_path, text)


def test_coalesce_computes_a_part_only_where_the_earlier_parts_left_null(tmp_path: Path) -> None:
    """The second part rejects any value it sees: it sees only the records the first left
    null, so a record the first part answers is not rejected by the second."""
    spec = load(
        tmp_path,
        """
        version: 1
        entity: thing
        key: thing_id
        sources:
          - source: legacy
            table: T
            key: [REF]
            fields:
              out:
                coalesce: [[A, trim], [B, {pattern: {regex: "[0-9]+", reason: not a number}}]]
        """,
    )
    compiled = compile_source(spec, spec.sources[0], ["REF", "A", "B"], ["thing_id", "out"], set())
    out = BatchOut()
    compiled.map_batch([("R1", "a", "x"), ("R2", " ", "12"), ("R3", None, "y")], out)
    assert [r[1] for r in out.rows] == ["a", "12"]
    assert [(q[2], q[3]) for q in out.quarantine] == [("R3", "out: not a number: 'y'")]


LOOKUP = """
    version: 1
    entity: person
    key: person_id
    sources:
      - source: legacy
        table: NOMINAL
        key: [NOMINAL_REF]
        fields:
          surname: [SURNAME, name]
          home:
            - lookup:
                source: legacy
                table: ADDRESS
                key: [ADDR_REF]
                on: [ADDR_REF]
                value: [LINE1, LINE2]
                then: postcode
            - postcode
"""


def test_lookup_reads_another_tables_value_for_the_record(tmp_path: Path) -> None:
    from mappings.compiler import lookup_resource

    spec = load(tmp_path, LOOKUP)
    (step,) = spec.sources[0].fields[1].steps[:1]
    resource = lookup_resource(step.args)
    compiled = compile_(
        spec,
        columns=("NOMINAL_REF", "SURNAME", "ADDR_REF"),
        target=("person_id", "surname", "home"),
        resources={resource: {"A1": "M1 1AE", "A2": None}},
    )
    out = run(compiled, [("N1", "SMITH", "A1"), ("N2", "JONES", "A2"), ("N3", "BROWN", "A9")])
    homes = {row[1]: row[2] for row in out.rows}
    assert homes == {"Smith": "M1 1AE", "Jones": None, "Brown": None}
    with pytest.raises(MappingError, match=r"lookup in legacy is not loaded"):
        compile_(
            spec,
            columns=("NOMINAL_REF", "SURNAME", "ADDR_REF"),
            target=("person_id", "surname", "home"),
        )


def test_a_lookup_must_say_where_and_how(tmp_path: Path) -> None:
    bad = LOOKUP.replace("                on: [ADDR_REF]\n", "")
    with pytest.raises(MappingError, match=r"lookup: needs \{source, table or query"):
        load(tmp_path, bad)


def test_postcode_finds_the_one_postcode_in_several_lines() -> None:
    from mappings.parsing import postcode_step

    find = postcode_step(None)
    assert find(("141 CHAPEL ROAD", "MANCHESTER", "m26 5uq", None)) == "M26 5UQ"
    assert find(("NFA", None)) is None
    assert find(("1 A ST M1 1AE", "M2 2BB")) is None  # two postcodes disagree: none
