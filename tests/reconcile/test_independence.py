"""Reconcile proves a load it did not perform, into a schema it has never seen.

The target here is written by plain SQL in a vendor-like schema of this test's own: crimes in
``occurrence_record`` with differently named columns, warnings in a generic ``flag`` table, and
a crosswalk called ``load_map``. Nothing of Continuity's pipeline or bundled schema is involved.

Planted, per source record (source ``crimes`` table, key ``ref``):
- C1: migrated intact (its date written in another format, its code through the crosswalk file)
- C2: its offence code changed in the target -> MIGRATED, ALTERED [offence]
- C3: absent from the target -> MISSING
- C4: absent, but quarantined with a reason -> REJECTED
- C5: absent, disposed of by the rule (status CLOSED, review date passed) -> EXCLUDED
- C6: due for disposal but under a legal hold, and absent -> MISSING (the hold overrides)
- C7: merged into C1's target record by a declared merge -> MERGED, EQUAL
- C8: due for disposal by the rule, yet migrated -> MIGRATED, EQUAL, listed with that reason
Target-side: T9 nobody leads to -> ORPHAN; T8 is a pilot record -> target-only.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconcile.engine import Connections, reconcile_class
from reconcile.model import Integrity, Placement
from reconcile.spec import load_spec

SPEC = """\
version: 1
class: vendor_crimes
owner: Force Crime Registrar
severity: high
segments: 4
target:
  table: occurrence_record
  key: occ_uid
  target_only:
    - {name: pilot, where: {origin: PILOT}}
locate:
  crosswalk:
    table: load_map
    target_table: OCC
    columns: {source_system: sys, source_table: tbl, source_key: src, target_table: ttab,
              target_key: tgt, rule: how}
  merge_rules: ["merged-*"]
quarantine:
  table: rejects
  columns: {source_system: sys, source_table: tbl, source_key: src, reason: why}
fields:
  reference: {target: occ_ref, normalise: [trim, upper], merged: skip}
  offence: {target: ho_code, normalise: [trim, upper]}
  recorded: {target: logged_on, normalise: [date]}
sources:
  - system: oldcrime
    table: crimes
    key: [ref]
    fields:
      reference: ref
      offence: {column: code, normalise: [trim, {crosswalk: {file: codes.csv}}]}
      recorded: {column: rec_date, normalise: [{date: {pivot: 50}}]}
    attributes:
      status: {column: status, normalise: [trim, upper]}
      review: {column: review, normalise: [date]}
      hold: {column: hold, normalise: [{boolean: {empty: false}}]}
    exclude:
      - rule: disposal
        when: [{attribute: status, eq: CLOSED}, {attribute: review, lt: $as_of}]
        unless: [{attribute: hold, eq: true}]
"""

SOURCE_ROWS = [
    # ref, code, rec_date, status, review, hold
    ("C1", "8/1", "03/04/21", "OPEN", "2030-01-01", "N"),
    ("C2", "28A", "05-MAY-2020", "OPEN", "2030-01-01", "N"),
    ("C3", "8.1", "01/01/19", "OPEN", "2030-01-01", "N"),
    ("C4", "XX", "01/01/19", "OPEN", "2030-01-01", "N"),
    ("C5", "8/1", "01/01/99", "CLOSED", "2020-01-01", "N"),
    ("C6", "8/1", "01/01/99", "CLOSED", "2020-01-01", "Y"),
    ("C7", "8/1", "03/04/21", "OPEN", "2030-01-01", "N"),
    ("C8", "8/1", "03/04/21", "CLOSED", "2020-01-01", "N"),
]
TARGET_ROWS = [
    # occ_uid, occ_ref, ho_code, logged_on, origin
    ("T1", "c1 ", "8N", "2021-04-03", "LOAD"),
    ("T2", "C2", "49", "2020-05-05", "LOAD"),
    ("T3", "C8", "8N", "2021-04-03", "LOAD"),
    ("T8", "PILOT-1", "8N", "2024-01-01", "PILOT"),
    ("T9", "C99", "8N", "2024-01-01", "LOAD"),
]
MAP_ROWS = [
    ("oldcrime", "crimes", "C1", "OCC", "T1", "direct"),
    ("oldcrime", "crimes", "C2", "OCC", "T2", "direct"),
    ("oldcrime", "crimes", "C7", "OCC", "T1", "merged-same-crime"),
    ("oldcrime", "crimes", "C8", "OCC", "T3", "direct"),
]


def _write(
    tmp: Path,
    source_rows: list[tuple[str, ...]],
    target_rows: list[tuple[str, ...]],
    map_rows: list[tuple[str, ...]],
    rejects: list[tuple[str, ...]],
) -> Connections:
    src, tgt = tmp / "old.db", tmp / "vendor.db"
    for f in (src, tgt):
        f.unlink(missing_ok=True)
    with sqlite3.connect(src) as c:
        c.execute(
            "CREATE TABLE crimes (ref TEXT, code TEXT, rec_date TEXT, status TEXT, "
            "review TEXT, hold TEXT)"
        )
        c.executemany("INSERT INTO crimes VALUES (?,?,?,?,?,?)", source_rows)
    with sqlite3.connect(tgt) as c:
        c.execute(
            "CREATE TABLE occurrence_record (occ_uid TEXT PRIMARY KEY, occ_ref TEXT, "
            "ho_code TEXT, logged_on DATE, origin TEXT)"
        )
        c.execute(
            "CREATE TABLE load_map (sys TEXT, tbl TEXT, src TEXT, ttab TEXT, tgt TEXT, how TEXT)"
        )
        c.execute("CREATE TABLE rejects (sys TEXT, tbl TEXT, src TEXT, why TEXT)")
        c.executemany("INSERT INTO occurrence_record VALUES (?,?,?,?,?)", target_rows)
        c.executemany("INSERT INTO load_map VALUES (?,?,?,?,?,?)", map_rows)
        c.executemany("INSERT INTO rejects VALUES (?,?,?,?)", rejects)
    return Connections({"oldcrime": f"sqlite:///{src}"}, f"sqlite:///{tgt}")


@pytest.fixture
def spec(tmp_path: Path):  # type: ignore[no-untyped-def]
    (tmp_path / "codes.csv").write_text("from,to\n8/1,8N\n8.1,8N\n28A,28E\n", encoding="utf-8")
    (tmp_path / "vendor.yml").write_text(SPEC, encoding="utf-8")
    return load_spec(tmp_path / "vendor.yml")


AS_OF = dt.date(2026, 6, 30)


def test_reconciles_a_target_in_a_schema_of_its_own(spec, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    conns = _write(
        tmp_path,
        SOURCE_ROWS,
        TARGET_ROWS,
        MAP_ROWS,
        [("oldcrime", "crimes", "C4", "unmapped offence code XX")],
    )
    result = reconcile_class(spec, conns, AS_OF, parallel=False)
    found = {(f.key, f.placement, f.integrity, tuple(f.fields)) for f in result.findings}
    assert found == {
        ("C2", Placement.MIGRATED, Integrity.ALTERED, ("offence",)),
        ("C3", Placement.MISSING, None, ()),
        ("C4", Placement.REJECTED, None, ()),
        ("C5", Placement.EXCLUDED, None, ()),
        ("C6", Placement.MISSING, None, ()),
        ("C7", Placement.MERGED, Integrity.EQUAL, ()),
        ("C8", Placement.MIGRATED, Integrity.EQUAL, ()),
        ("T9", Placement.ORPHAN, None, ()),
    }
    kept = next(f for f in result.findings if f.key == "C8")
    assert kept.reason is not None and "rule disposal" in kept.reason and not kept.is_exception
    rejected = next(f for f in result.findings if f.key == "C4")
    assert rejected.reason == "unmapped offence code XX"
    diff = next(f for f in result.findings if f.key == "C2").diffs[0]
    assert (diff.source, diff.target) == ("28E", "49")
    (identity,) = result.sources
    assert identity.read == 8 and identity.balanced
    assert identity.terms[Placement.MIGRATED] == 3  # C1, C2 (altered), C8
    assert identity.altered == 1
    t = result.target
    assert (t.total, t.explained, dict(t.target_only), t.orphan) == (5, 3, {"pilot": 1}, 1)
    assert t.balanced
    assert not result.clean()


def test_the_same_result_in_parallel_processes(spec, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    conns = _write(tmp_path, SOURCE_ROWS, TARGET_ROWS, MAP_ROWS, [])
    one = reconcile_class(spec, conns, AS_OF, parallel=False)
    two = reconcile_class(spec, conns, AS_OF, parallel=True)
    assert sorted(f.to_dict().items().__repr__() for f in one.findings) == sorted(
        f.to_dict().items().__repr__() for f in two.findings
    )


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    fate=st.lists(st.sampled_from(["keep", "drop", "alter", "reject"]), min_size=1, max_size=40),
    orphans=st.integers(0, 3),
)
def test_both_identities_hold_whatever_is_lost(
    spec, tmp_path: Path, fate: list[str], orphans: int
) -> None:  # type: ignore[no-untyped-def]
    """Property: every source record gets exactly one placement, every target record one term."""
    source, target, xmap, rejects = [], [], [], []
    for i, f in enumerate(fate):
        ref = f"K{i}"
        source.append((ref, "8/1", "01/02/20", "OPEN", "2030-01-01", "N"))
        if f in ("keep", "alter"):
            target.append((f"T{i}", ref, "8N" if f == "keep" else "9Z", "2020-02-01", "LOAD"))
            xmap.append(("oldcrime", "crimes", ref, "OCC", f"T{i}", "direct"))
        elif f == "reject":
            rejects.append(("oldcrime", "crimes", ref, "bad"))
    target += [(f"X{i}", f"Z{i}", "8N", "2020-01-01", "LOAD") for i in range(orphans)]
    result = reconcile_class(
        spec, _write(tmp_path, source, target, xmap, rejects), AS_OF, parallel=False
    )
    (identity,) = result.sources
    assert identity.balanced and identity.read == len(fate)
    assert identity.terms[Placement.MISSING] == fate.count("drop")
    assert identity.terms[Placement.REJECTED] == fate.count("reject")
    assert identity.altered == fate.count("alter")
    assert result.target.balanced and result.target.orphan == orphans
    assert result.clean() == (fate.count("drop") + fate.count("alter") + orphans == 0)


def test_a_record_landed_twice_with_its_own_crosswalk_entry(spec, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """C1 loaded twice (T1 and T1b, same reference), the crosswalk pointing C1 at the copy and
    C7's merge at the original: both copies are explained by the crosswalk, yet C1 landed twice."""
    spec = dataclasses.replace(
        spec, target=dataclasses.replace(spec.target, duplicate_key=("occ_ref",))
    )
    rows = [*TARGET_ROWS, ("T1b", "c1 ", "8N", "2021-04-03", "LOAD")]
    xmap = [("oldcrime", "crimes", "C1", "OCC", "T1b", "direct"), *MAP_ROWS[1:]]
    result = reconcile_class(
        spec, _write(tmp_path, SOURCE_ROWS, rows, xmap, []), AS_OF, parallel=False
    )
    found = {(f.side, f.key, f.placement) for f in result.findings}
    assert ("target", "T1b", Placement.DUPLICATED) in found
    assert ("source", "C1", Placement.DUPLICATED) in found
    assert result.target.balanced and result.target.duplicated == 1


def test_a_merged_record_gone_from_the_source_is_not_credited(spec, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """C7 (merged into T1) deleted from the source: its merge row must not count as MERGED."""
    source = [r for r in SOURCE_ROWS if r[0] != "C7"]
    result = reconcile_class(
        spec, _write(tmp_path, source, TARGET_ROWS, MAP_ROWS, []), AS_OF, parallel=False
    )
    (identity,) = result.sources
    assert identity.balanced and identity.terms[Placement.MERGED] == 0
    assert not any(f.key == "C7" for f in result.findings)


def test_a_percent_sign_in_a_filter_is_a_value(spec, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    source = [*SOURCE_ROWS[:2], ("C%", "8/1", "03/04/21", "OPEN", "2030-01-01", "N")]
    (binding,) = spec.sources
    only = dataclasses.replace(
        binding, population=dataclasses.replace(binding.population, where={"ref": "C%"})
    )
    spec = dataclasses.replace(spec, sources=(only,))
    result = reconcile_class(
        spec, _write(tmp_path, source, TARGET_ROWS, MAP_ROWS, []), AS_OF, parallel=False
    )
    assert result.sources[0].read == 1
    assert [(f.key, f.placement) for f in result.findings if f.side == "source"] == [
        ("C%", Placement.MISSING)
    ]


def test_a_key_held_twice_and_excluded_is_two_records(spec, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    source = [*SOURCE_ROWS, SOURCE_ROWS[4]]  # C5 (due for disposal) held twice
    result = reconcile_class(
        spec, _write(tmp_path, source, TARGET_ROWS, MAP_ROWS, []), AS_OF, parallel=False
    )
    (identity,) = result.sources
    assert identity.read == 9 and identity.balanced
    assert identity.terms[Placement.EXCLUDED] == 2


def test_each_target_record_is_one_term(spec, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A copy of T1 whose own crosswalk entry names a record the source never held: it is a
    DUPLICATED copy, not also an orphan, and the identity still balances."""
    spec = dataclasses.replace(
        spec, target=dataclasses.replace(spec.target, duplicate_key=("occ_ref",))
    )
    rows = [*TARGET_ROWS, ("T1z", "c1 ", "8N", "2021-04-03", "LOAD")]
    xmap = [*MAP_ROWS, ("oldcrime", "crimes", "GONE", "OCC", "T1z", "direct")]
    result = reconcile_class(
        spec, _write(tmp_path, SOURCE_ROWS, rows, xmap, []), AS_OF, parallel=False
    )
    on_copy = [f.placement for f in result.findings if f.key == "T1z"]
    assert on_copy == [Placement.DUPLICATED]
    t = result.target
    assert t.balanced and (t.total, t.explained, t.duplicated) == (6, 3, 1)


def _tabbed(rows: list[tuple[str, ...]], at: tuple[int, ...]) -> list[tuple[str, ...]]:
    """The rows with a tab inside the keys at positions ``at`` (``C1`` -> ``C\\t1``)."""
    return [tuple(v[:1] + "\t" + v[1:] if i in at else v for i, v in enumerate(r)) for r in rows]


def test_keys_holding_a_tab_are_placed_as_any_other(spec, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The engine's later look-ups (landed twice, stale crosswalk entries, further target
    records) find records whose keys hold a tab as they find any other: the findings are
    those of plain keys, with the keys written escaped."""
    spec = dataclasses.replace(
        spec, target=dataclasses.replace(spec.target, duplicate_key=("occ_ref",))
    )
    rows = [*TARGET_ROWS, ("T1b", "c1 ", "8N", "2021-04-03", "LOAD")]
    xmap = [
        ("oldcrime", "crimes", "C1", "OCC", "T1b", "direct"),
        *MAP_ROWS[1:],
        ("oldcrime", "crimes", "GONE", "OCC", "T9", "direct"),
    ]

    def found(source: list, target: list, xw: list) -> set:  # type: ignore[type-arg]
        result = reconcile_class(
            spec, _write(tmp_path, source, target, xw, []), AS_OF, parallel=False
        )
        assert result.target.balanced and all(s.balanced for s in result.sources)
        return {(f.side, f.key, f.placement, f.integrity) for f in result.findings}

    plain = found(SOURCE_ROWS, rows, xmap)
    assert ("source", "C1", Placement.DUPLICATED, Integrity.EQUAL) in plain
    assert ("target", "T9", Placement.ORPHAN, None) in plain
    tabbed = found(_tabbed(SOURCE_ROWS, (0,)), _tabbed(rows, (0, 1)), _tabbed(xmap, (2, 4)))
    assert tabbed == {(side, k[:1] + "\\t" + k[1:], p, i) for side, k, p, i in plain}
