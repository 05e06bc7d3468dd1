"""Loading mappings: schema and semantic errors, each naming file, line and key path.

Every case starts from a valid mapping of ``legacy.NOMINAL`` into ``person`` (``BASE``) and breaks
one thing; the test asserts the one-line MappingError names the file, the line of the broken key
and its dotted path, and says what is wrong.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from continuity.domain.errors import ContinuityError, MappingError
from mappings import operations
from mappings.spec import CONTEXT_STEPS, HEADS, json_schema, load_mappings, mapping_files

BASE = """\
version: 1
entity: person
key: person_id
codes:
  offence: {file: offence.csv, version: "2024-04"}
sources:
  - source: legacy
    table: NOMINAL
    key: [NOMINAL_REF]
    fields:
      surname: [SURNAME, trim]
      forename: FORENAME1
      _status: [STATUS, {code: offence}]
    reject:
      - when: {surname: {is_null: true}}
        reason: no surname
"""
OFFENCES = "from,to,description\n8/1,8N,Assault with injury\n28A,28E,Burglary - residential\n"

Write = Callable[[str, str], Path]


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    """1-based line of the ``occurrence``-th line of ``text`` containing ``needle``."""
    found = [i for i, line in enumerate(text.splitlines(), 1) if needle in line]
    return found[occurrence - 1]


def load_error(write: Write, text: str, files: dict[str, str] | None = None) -> tuple[Path, str]:
    """Write ``text`` as ``person.yml`` (with ``offence.csv`` unless replaced) and load it."""
    for name, content in {"offence.csv": OFFENCES, **(files or {})}.items():
        write(name, content)
    path = write("person.yml", text)
    with pytest.raises(MappingError) as caught:
        load_mappings([path])
    message = str(caught.value)
    assert "\n" not in message, "an error message is one line"
    assert isinstance(caught.value, ContinuityError)
    return path, message


def test_the_base_mapping_loads(write: Write) -> None:
    write("offence.csv", OFFENCES)
    (spec,) = load_mappings([write("person.yml", BASE)])
    assert spec.entity == "person" and spec.key_column == "person_id"
    (source,) = spec.sources
    assert source.label() == "legacy.NOMINAL" and source.key == ("NOMINAL_REF",)
    assert [f.name for f in source.fields] == ["surname", "forename", "_status"]
    assert [s.op for s in source.fields[0].steps] == ["from", "trim"]
    assert source.fields[1].steps[0].op == "from" and source.fields[1].steps[0].args == "FORENAME1"
    assert dict(spec.codes["offence"].codes) == {"8/1": "8N", "28A": "28E"}
    assert spec.codes["offence"].version == "2024-04"
    assert source.fields[0].at == f"{spec.file}:11: sources.0.fields.surname"


# (name, text replacing a line of BASE, the line's needle, key path, what the message says)
CASES = [
    (
        "malformed YAML",
        ("      forename: FORENAME1", "      forename: FORENAME1: X"),
        "forename:",
        None,
        "malformed YAML: mapping values are not allowed here",
    ),
    (
        "duplicate key",
        ("      forename: FORENAME1", "      forename: FORENAME1\n      surname: SURNAME"),
        "surname: SURNAME",
        "sources.0.fields.surname",
        "duplicate key",
    ),
    (
        "unknown top-level key",
        ("key: person_id", "key: person_id\ncolour: blue"),
        "colour:",
        "colour",
        "unknown key; allowed: ",
    ),
    (
        "unknown key of a source",
        ("    key: [NOMINAL_REF]", "    key: [NOMINAL_REF]\n    wehre: DIVISION = 1"),
        "wehre:",
        "sources.0.wehre",
        "unknown key; allowed: ",
    ),
    (
        "a version that is not 1",
        ("version: 1", "version: 2"),
        "version:",
        "version",
        "1 was expected",
    ),
    (
        "unknown operation",
        ("[SURNAME, trim]", "[SURNAME, trimm]"),
        "surname:",
        "sources.0.fields.surname.1",
        "unknown operation 'trimm'; known: ",
    ),
    (
        "unknown operation as a head",
        ("forename: FORENAME1", "forename: {form: FORENAME1}"),
        "forename:",
        "sources.0.fields.forename",
        "unknown operation 'form'",
    ),
    (
        "a step before a head",
        ("forename: FORENAME1", "forename: {case: upper}"),
        "forename:",
        "sources.0.fields.forename",
        "a field starts with one of ",
    ),
    (
        "a step first in a list",
        ("forename: FORENAME1", "forename: [{case: upper}, trim]"),
        "forename:",
        "sources.0.fields.forename.0",
        "a field starts with one of",
    ),
    (
        "a head after a step",
        ("[SURNAME, trim]", "[SURNAME, trim, {const: X}]"),
        "surname:",
        "sources.0.fields.surname.2",
        "const produces a value: it can only start a field",
    ),
    (
        "case: sideways",
        ("[SURNAME, trim]", "[SURNAME, {case: sideways}]"),
        "surname:",
        "sources.0.fields.surname.1",
        "case: case is one of upper, lower, title",
    ),
    (
        "split without index",
        ("[SURNAME, trim]", '[SURNAME, {split: {sep: " "}}]'),
        "surname:",
        "sources.0.fields.surname.1",
        "split: split needs {sep: TEXT, index: N}",
    ),
    (
        "max_length 0",
        ("[SURNAME, trim]", "[SURNAME, {max_length: 0}]"),
        "surname:",
        "sources.0.fields.surname.1",
        "max_length: max_length is a positive whole number",
    ),
    (
        "a regex that does not compile",
        ("[SURNAME, trim]", '[SURNAME, {pattern: "[A-Z"}]'),
        "surname:",
        "sources.0.fields.surname.1",
        "pattern: pattern needs a valid regex",
    ),
    (
        "values both true and false",
        ("[SURNAME, trim]", '[SURNAME, {boolean: {"true": [Y], "false": [y]}}]'),
        "surname:",
        "sources.0.fields.surname.1",
        "boolean: values both true and false: ['Y']",
    ),
    (
        "map without values",
        ("[SURNAME, trim]", "[SURNAME, {map: {V: VICTIM}}]"),
        "surname:",
        "sources.0.fields.surname.1",
        "map: map needs {values: {FROM: TO, ...}}",
    ),
    (
        "map with an unknown unmapped",
        ("[SURNAME, trim]", "[SURNAME, {map: {values: {V: VICTIM}, unmapped: drop}}]"),
        "surname:",
        "sources.0.fields.surname.1",
        "map: unmapped is one of reject, keep, null",
    ),
    (
        "a step that needs arguments written bare",
        ("[SURNAME, trim]", "[SURNAME, case]"),
        "surname:",
        "sources.0.fields.surname.1",
        "case needs arguments",
    ),
    (
        "two operations in one step",
        ("[SURNAME, trim]", "[SURNAME, {trim: null, name: null}]"),
        "surname:",
        "sources.0.fields.surname.1",
        "a step is one operation (and an optional reason)",
    ),
    (
        "from naming no column",
        ("forename: FORENAME1", "forename: {from: [A, B]}"),
        "forename:",
        "sources.0.fields.forename",
        "from: names one source column",
    ),
    (
        "concat of nothing",
        ("forename: FORENAME1", "forename: {concat: []}"),
        "forename:",
        "sources.0.fields.forename",
        "concat: needs a list of columns or expressions",
    ),
    (
        "ref without its key",
        ("forename: FORENAME1", "forename: {ref: {source: legacy, table: ADDRESS}}"),
        "forename:",
        "sources.0.fields.forename",
        "ref: needs {source, table, key: [COLUMNS], entity}",
    ),
    (
        "ref with an unknown missing",
        (
            "forename: FORENAME1",
            "forename: {ref: {source: legacy, table: ADDRESS, key: [A], missing: skip}}",
        ),
        "forename:",
        "sources.0.fields.forename",
        "ref: missing is reject or null",
    ),
    (
        "a code table that is not declared",
        ("{code: offence}", "{code: offences}"),
        "_status:",
        "sources.0.fields._status.1",
        "code: no code table 'offences' (offence)",
    ),
    (
        "a condition on a field that does not exist",
        ("      - when: {surname: {is_null: true}}", "      - when: {sex: M}"),
        "- when:",
        "sources.0.reject.0.when.sex",
        "no field 'sex' in this source; fields: ['_status', 'forename', 'surname']",
    ),
    (
        "an unless on a field that does not exist",
        ("        reason: no surname", "        unless: {dob: null}\n        reason: no surname"),
        "unless:",
        "sources.0.reject.0.unless.dob",
        "no field 'dob' in this source",
    ),
    (
        "an unknown condition operator",
        ("{surname: {is_null: true}}", "{surname: {like: SMI%}}"),
        "- when:",
        "sources.0.reject.0.when.surname",
        "one of eq, ne, in, not_in, lt, le, gt, ge, is_null",
    ),
    (
        "in without a list",
        ("{surname: {is_null: true}}", "{surname: {in: SMITH}}"),
        "- when:",
        "sources.0.reject.0.when.surname",
        "in takes a list",
    ),
    (
        "an identity naming no field",
        (
            "    key: [NOMINAL_REF]\n",
            '    key: [NOMINAL_REF]\n    identity: {fields: [_uprn], rule: "merge:same_uprn"}\n',
        ),
        "identity:",
        "sources.0.identity.fields.0",
        "no field '_uprn'",
    ),
    (
        "an identity with both rule and rule_field",
        (
            "    key: [NOMINAL_REF]\n",
            "    key: [NOMINAL_REF]\n"
            "    identity: {fields: [surname], rule: a, rule_field: forename}\n",
        ),
        "identity:",
        "sources.0.identity",
        "give exactly one of rule and rule_field",
    ),
    (
        "row_when on a field that does not exist",
        ("    key: [NOMINAL_REF]\n", "    key: [NOMINAL_REF]\n    row_when: {_role: anchor}\n"),
        "row_when:",
        "sources.0.row_when._role",
        "no field '_role' in this source",
    ),
    (
        "resolved asking for something resolution does not give",
        ("forename: FORENAME1", "forename: {resolved: cluster}"),
        "forename:",
        "sources.0.fields.forename",
        "resolved: is anchor, rule, role or score",
    ),
    (
        "resolve on a field a source does not map",
        (
            "key: person_id\n",
            "key: person_id\nresolve: {fields: {forename: surname, surname: surname, "
            "dob: surname, pnc: _pnc}}\n",
        ),
        "    fields:",
        "sources.0.fields",
        "resolve uses field '_pnc', which this source does not map",
    ),
    (
        "a resolve threshold above 1",
        (
            "key: person_id\n",
            "key: person_id\nresolve: {fields: {forename: f, surname: s, dob: d}, match: 1.5}\n",
        ),
        "resolve:",
        "resolve.match",
        "1.5 is greater than the maximum of 1",
    ),
    (
        "a rule without a reason",
        ("        reason: no surname\n", ""),
        "- when:",
        "sources.0.reject.0",
        "'reason' is a required property",
    ),
]


@pytest.mark.parametrize(
    ("replace", "needle", "path", "says"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_an_error_names_file_line_and_key(
    write: Write, replace: tuple[str, str], needle: str, path: str | None, says: str
) -> None:
    old, new = replace
    assert old in BASE
    text = BASE.replace(old, new, 1)
    file, message = load_error(write, text)
    line = line_of(text, needle)
    where = f"{file}:{line}: {path}: " if path else f"{file}:{line}: "
    assert message == f"{where}{says}" or message.startswith(f"{where}{says}"), message


def test_an_unknown_operation_lists_every_known_one(write: Write) -> None:
    _, message = load_error(write, BASE.replace("[SURNAME, trim]", "[SURNAME, trimm]"))
    known = message.split("known: ", 1)[1].split(", ")
    assert known == sorted({*HEADS, *CONTEXT_STEPS, *operations.STEPS})


def test_an_unknown_key_lists_the_keys_allowed_there(write: Write) -> None:
    _, message = load_error(write, BASE.replace("key: person_id", "key: person_id\ncolour: blue"))
    allowed = message.split("allowed: ", 1)[1].split(", ")
    assert allowed == sorted(json_schema()["properties"])


def test_a_field_must_start_with_a_head(write: Write) -> None:
    _, message = load_error(write, BASE.replace("forename: FORENAME1", "forename: {trim: null}"))
    heads = message.split("a field starts with one of ", 1)[1].removesuffix(" (or a column name)")
    assert heads.split(", ") == list(HEADS)


def test_a_source_with_neither_table_nor_query(write: Write) -> None:
    text = BASE.replace("    table: NOMINAL\n", "")
    file, message = load_error(write, text)
    assert message.startswith(f"{file}:{line_of(text, '- source:')}: sources.0: ")


def test_a_missing_code_table(write: Write) -> None:
    text = BASE.replace("offence.csv", "codes/nowhere.csv")
    file, message = load_error(write, text)
    assert message.startswith(f"{file}:{line_of(text, 'offence:')}: codes.offence.file: ")
    assert "cannot read code table" in message and "nowhere.csv" in message


@pytest.mark.parametrize(
    ("csv", "says"),
    [
        ("code,target\n8/1,8N\n", "needs columns 'from' and 'to'"),
        ("from,to\n8/1,8N\n28A,28E\n8/1,105A\n", "line 4: code '8/1' mapped twice"),
    ],
    ids=["missing columns", "mapped twice"],
)
def test_a_bad_csv_code_table(write: Write, csv: str, says: str) -> None:
    file, message = load_error(write, BASE, {"offence.csv": csv})
    assert message.startswith(f"{file}:{line_of(BASE, 'offence:')}: codes.offence.file: ")
    assert message.endswith(says)


def test_a_code_mapped_twice_to_the_same_target_is_fine(write: Write) -> None:
    write("offence.csv", "from,to\n8/1,8N\n8/1,8N\n")
    (spec,) = load_mappings([write("person.yml", BASE)])
    assert dict(spec.codes["offence"].codes) == {"8/1": "8N"}


def test_a_code_both_mapped_and_excluded(write: Write) -> None:
    text = BASE.replace('version: "2024-04"}', 'version: "2024-04", excluded: [28A, "99/9"]}')
    file, message = load_error(write, text)
    assert message == (
        f"{file}:{line_of(text, 'offence:')}: codes.offence.excluded: "
        "codes both mapped and excluded: ['28A']"
    )


def test_a_yaml_code_table_that_is_not_a_mapping(write: Write) -> None:
    text = BASE.replace("offence.csv", "offence.yml")
    file, message = load_error(write, text, {"offence.yml": "- 8N\n- 28E\n"})
    assert message.startswith(f"{file}:{line_of(text, 'offence:')}: codes.offence.file: ")
    assert "a YAML code table is a mapping" in message


def test_a_yaml_code_table_mapping_a_code_twice(write: Write) -> None:
    text = BASE.replace("offence.csv", "offence.yml")
    file, message = load_error(write, text, {"offence.yml": '"8/1": 8N\n28A: 28E\n"8/1": 105A\n'})
    assert message.startswith(f"{file}:{line_of(text, 'offence:')}: codes.offence.file: ")


def test_two_files_mapping_the_same_entity(write: Write) -> None:
    write("offence.csv", OFFENCES)
    first = write("a_person.yml", BASE)
    second = write("b_person.yml", BASE)
    with pytest.raises(MappingError) as caught:
        load_mappings([first, second])
    message = str(caught.value)
    assert message.startswith(f"{second}:")
    assert f"entity: 'person' is also mapped by {first}" in message


def test_two_files_mapping_the_same_entity_names_the_line_of_entity(write: Write) -> None:
    write("offence.csv", OFFENCES)
    text = "# persons, again\n" + BASE
    first, second = write("a_person.yml", BASE), write("b_person.yml", text)
    with pytest.raises(MappingError) as caught:
        load_mappings([first, second])
    assert str(caught.value).startswith(f"{second}:{line_of(text, 'entity:')}: entity: ")


def test_a_file_that_is_not_a_mapping(write: Write) -> None:
    file, message = load_error(write, "- version: 1\n")
    assert message == f"{file}:1: a mapping is a mapping (version, entity, sources)"


def test_every_error_of_every_file_is_reported_at_once(write: Write) -> None:
    write("offence.csv", OFFENCES)
    files = [
        write("1_malformed.yml", "version: 1\nentity: [x\n"),
        write("2_person.yml", BASE.replace("[SURNAME, trim]", "[SURNAME, trimm]")),
        write(
            "3_event.yml",
            BASE.replace("entity: person", "entity: event")
            .replace("offence.csv", "missing.csv")
            .replace("{surname: {is_null: true}}", "{sex: M}"),
        ),
        write("4_fine.yml", BASE.replace("entity: person", "entity: fine")),
    ]
    with pytest.raises(MappingError) as caught:
        load_mappings(files)
    message = str(caught.value)
    assert message.startswith("4 errors: ")
    assert "\n" not in message
    parts = message.removeprefix("4 errors: ")
    for expected in (
        f"{files[0]}:3: malformed YAML",
        f"{files[1]}:11: sources.0.fields.surname.1: unknown operation 'trimm'",
        f"{files[2]}:5: codes.offence.file: cannot read code table",
        f"{files[2]}:15: sources.0.reject.0.when.sex: no field 'sex'",
    ):
        assert expected in parts
    assert str(files[3]) not in parts


def test_mapping_files(write: Write, tmp_path: Path) -> None:
    for name in ("b.yml", "a.yaml", "notes.md", "codes.csv"):
        write(f"maps/{name}", "x: 1\n")
    assert mapping_files(tmp_path / "maps") == [tmp_path / "maps/a.yaml", tmp_path / "maps/b.yml"]
    with pytest.raises(MappingError, match="no such mappings folder"):
        mapping_files(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MappingError, match=r"no mappings \(\*\.yml\)"):
        mapping_files(tmp_path / "empty")


def test_the_digest_follows_the_mapping_and_its_code_table_versions(write: Write) -> None:
    write("offence.csv", OFFENCES)
    digests = [
        load_mappings([write(f"{i}.yml", text)])[0].digest
        for i, text in enumerate(
            (BASE, BASE, BASE.replace('"2024-04"', '"2024-05"'), BASE.replace("trim]", "name]"))
        )
    ]
    assert digests[0] == digests[1]
    assert len(set(digests)) == 3


def test_the_digest_follows_a_code_tables_content_too(write: Write) -> None:
    """A code remapped in the CSV without a new version still changes the digest (the delta
    migrates the records it touches again, a resumed run refuses the change)."""
    write("offence.csv", OFFENCES)
    before = load_mappings([write("a.yml", BASE)])[0].digest
    lines = OFFENCES.splitlines()
    write("offence.csv", "\n".join([lines[0], *reversed(lines[1:])]) + "\n")  # same codes
    assert load_mappings([write("a.yml", BASE)])[0].digest == before
    first = lines[1].split(",")
    first[1] = first[1] + "X"
    write("offence.csv", "\n".join([lines[0], ",".join(first), *lines[2:]]) + "\n")
    assert load_mappings([write("a.yml", BASE)])[0].digest != before
