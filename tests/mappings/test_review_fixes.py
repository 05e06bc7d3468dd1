"""Defects a review found, each pinned: a newer copy decides before the older record's own
values; an attribute reference does not drag its record out; equal values that read
differently are mapped as themselves; YAML's yes/no stay text; `resolved` needs a resolution."""

from __future__ import annotations

import decimal
import textwrap
from pathlib import Path

import pytest

from continuity.domain.errors import MappingError
from mappings.compiler import BatchOut, compile_source
from mappings.spec import load_mappings


def load(folder: Path, text: str):  # type: ignore[no-untyped-def]
    path = folder / "m.yml"
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return load_mappings([path])[0]


class Keys:
    def __init__(self, known=None, fates=None, copies=None):  # type: ignore[no-untyped-def]
        self.known, self.fates, self.copies = known or {}, fates or {}, copies or {}

    def target_of(self, source: str, table: str, key: str) -> str | None:
        return self.known.get((source, table, key))

    def fate_of(self, source: str, table: str, key: str) -> tuple[str, str] | None:
        return self.fates.get((source, table, key))

    def copy_fate(self, source: str, table: str, key: str) -> tuple[str, str] | None:
        return self.copies.get((source, table, key))


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
        MappingError, match=r"m.yml:9: sources.0.fields.out: resolved: no resolution of 'persn'"
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
    with pytest.raises(MappingError, match=r"m.yml:11: sources.0.exclude.0.when.out: not a date"):
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
