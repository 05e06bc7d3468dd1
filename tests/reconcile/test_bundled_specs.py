"""The bundled specs on the estate: the ideal target is clean, and on the damaged target every
planted defect is reported with its disposition and nothing else is (no decoy, no noise).

Run on SQLite, on PostgreSQL, on MariaDB, and across databases (SQLite sources, PostgreSQL
target).
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from continuity.estate.defects import COPY_COMPARED, DEFECT_KINDS
from continuity.estate.generate import EstateOptions, generate_estate
from reconcile.engine import Connections, reconcile_all
from reconcile.model import Placement, Reconciliation
from reconcile.spec import bundled_specs_dir, load_specs, spec_files

Key = tuple[str, str, str, str, str, str, str | None, tuple[str, ...]]


def run(estate: Path, target: str) -> Reconciliation:
    info = json.loads((estate / "estate.json").read_text())
    dbs = info["databases"]
    specs = load_specs(spec_files(bundled_specs_dir()))
    conns = Connections({"legacy": dbs["legacy"], "policeworks": dbs["policeworks"]}, dbs[target])
    return reconcile_all(specs, conns, dt.date.fromisoformat(info["as_of"]))


def reported(result: Reconciliation) -> set[Key]:
    """Every finding a data owner is shown as an exception."""
    return {
        (
            f.side,
            f.cls,
            f.system or "",
            f.table,
            f.key,
            f.placement.value,
            f.integrity.value if f.integrity else None,
            tuple(sorted(f.fields)),
        )
        for c in result.classes
        for f in c.exceptions()
    }


def expected(estate: Path, kind: str | None = None) -> set[Key]:
    manifest = json.loads((estate / "defects.json").read_text())
    out: set[Key] = set()
    for d in manifest["defects"]:
        if kind is not None and d["kind"] != kind:
            continue
        for e in d["expect"]:
            integrity = e.get("integrity")
            if e["side"] == "source" and e["placement"] in ("MIGRATED", "MERGED", "DUPLICATED"):
                integrity = integrity or "EQUAL"
            out.add(
                (
                    e["side"],
                    e["class"],
                    e.get("system") or "",
                    e["table"],
                    e["key"],
                    e["placement"],
                    integrity,
                    tuple(sorted(e.get("fields", []))),
                )
            )
    return out


class Runs:
    def __init__(self, estate: Path) -> None:
        self.estate = estate
        self.ideal = run(estate, "target")
        self.damaged = run(estate, "damaged")


@pytest.fixture(scope="module")
def sqlite_runs(small_estate: Path) -> Runs:
    return Runs(small_estate)


def _server_runs(
    tmp_path_factory: pytest.TempPathFactory, new_database: Callable[[], str], sources_too: bool
) -> Runs:
    out = tmp_path_factory.mktemp("server") / "e"
    sources = (
        {"legacy_url": new_database(), "policeworks_url": new_database()} if sources_too else {}
    )
    generate_estate(
        EstateOptions(
            out=out,
            persons=2500,
            seed=7,
            defects=True,
            processes=1,
            target_url=new_database(),
            damaged_url=new_database(),
            **sources,
        )
    )
    return Runs(out)


@pytest.fixture(scope="module")
def pg_runs(
    tmp_path_factory: pytest.TempPathFactory, pg_database_for_module: Callable[[], str]
) -> Runs:
    """Everything on PostgreSQL."""
    return _server_runs(tmp_path_factory, pg_database_for_module, sources_too=True)


@pytest.fixture(scope="module")
def cross_runs(
    tmp_path_factory: pytest.TempPathFactory, pg_database_for_module: Callable[[], str]
) -> Runs:
    """SQLite sources, PostgreSQL targets."""
    return _server_runs(tmp_path_factory, pg_database_for_module, sources_too=False)


@pytest.fixture(scope="module")
def mariadb_runs(
    tmp_path_factory: pytest.TempPathFactory, mariadb_database_for_module: Callable[[], str]
) -> Runs:
    """Everything on MariaDB (PoliceWorks with zero dates)."""
    return _server_runs(tmp_path_factory, mariadb_database_for_module, sources_too=True)


ALL_RUNS = [
    "sqlite_runs",
    pytest.param("pg_runs", marks=pytest.mark.postgres),
    pytest.param("cross_runs", marks=pytest.mark.postgres),
    pytest.param("mariadb_runs", marks=pytest.mark.mariadb),
]


@pytest.fixture(params=ALL_RUNS)
def runs(request: pytest.FixtureRequest) -> Runs:
    value: Runs = request.getfixturevalue(request.param)
    return value


def test_the_ideal_target_is_clean(runs: Runs) -> None:
    assert runs.ideal.clean(), reported(runs.ideal)
    for c in runs.ideal.classes:
        assert all(s.balanced for s in c.sources) and c.target.balanced
        assert all(s.read > 0 for s in c.sources), c.name
        assert c.years_differing() == [], c.name  # counts per year agree too
    counted = {c.name for c in runs.ideal.classes if c.years}
    assert {"crimes", "intelligence", "safeguarding"} <= counted


@pytest.mark.parametrize("kind", DEFECT_KINDS)
def test_each_defect_is_reported_with_its_disposition(runs: Runs, kind: str) -> None:
    want = expected(runs.estate, kind)
    assert want, f"{kind} was not planted"
    missed = want - reported(runs.damaged)
    assert not missed, missed


def test_nothing_but_the_defects_is_reported(runs: Runs) -> None:
    """Precision: no decoy (case, pilot records, merges, MoPI, legal holds, codes, UTC) shows."""
    extra = reported(runs.damaged) - expected(runs.estate)
    assert not extra, extra


@pytest.mark.postgres
def test_pushdown_gives_the_python_sides_result(cross_runs: Runs) -> None:
    """On a PostgreSQL target the pushable classes were fingerprinted in the database; reading
    every row out instead gives the very same findings, identities and content digests."""
    from continuity.domain.connect import engine_for
    from reconcile import pushdown
    from reconcile.engine import reconcile_class

    info = json.loads((cross_runs.estate / "estate.json").read_text())
    dbs = info["databases"]
    conns = Connections(
        {"legacy": dbs["legacy"], "policeworks": dbs["policeworks"]}, dbs["damaged"]
    )
    engine = engine_for(dbs["damaged"])
    pushed = []
    try:
        for spec in load_specs(spec_files(bundled_specs_dir())):
            if not pushdown.applicable(spec, engine):
                continue
            try:
                for source in spec.sources:
                    pushdown.Located(spec, source, engine)
            except pushdown.NotPushable:
                continue
            pushed.append(spec.name)
            with_pushdown = next(c for c in cross_runs.damaged.classes if c.name == spec.name)
            python = reconcile_class(
                spec, conns, dt.date.fromisoformat(info["as_of"]), pushdown=False
            )
            assert sorted(map(repr, python.findings)) == sorted(map(repr, with_pushdown.findings))
            assert repr(python.sources) == repr(with_pushdown.sources), spec.name
            assert repr(python.target) == repr(with_pushdown.target), spec.name
            assert python.target_digest == with_pushdown.target_digest, spec.name
    finally:
        engine.dispose()
    assert {"crimes", "intelligence", "safeguarding"} <= set(pushed)


def test_the_case_and_whitespace_decoy_is_equal(sqlite_runs: Runs) -> None:
    manifest = json.loads((sqlite_runs.estate / "defects.json").read_text())
    decoy = next(d for d in manifest["decoys"] if d["kind"] == "case_and_whitespace")
    person = decoy["changes"][0]["key"]["person_id"]
    persons = next(c for c in sqlite_runs.damaged.classes if c.name == "persons")
    assert all(f.target_key != person or not f.diffs for f in persons.findings)


def _truth(estate: Path, query: str) -> set[tuple[Any, ...]]:
    with sqlite3.connect(estate / "truth.sqlite") as conn:
        return set(conn.execute(query).fetchall())


def _placed(result: Reconciliation, cls: str, placement: Placement) -> set[tuple[Any, ...]]:
    c = next(c for c in result.classes if c.name == cls)
    return {(f.system, f.table, f.key) for f in c.findings if f.placement is placement}


def test_exclusions_are_recomputed_exactly_as_the_truth_has_them(sqlite_runs: Runs) -> None:
    """MoPI recomputed by reconcile, the legal hold overriding it, equals the ground truth."""
    truth = _truth(
        sqlite_runs.estate,
        "SELECT system, source_table, source_key FROM exclusion WHERE outcome = 'EXCLUDED' "
        "AND source_table IN ('CRIME', 'pw_occurrence')",
    )
    assert truth and _placed(sqlite_runs.ideal, "crimes", Placement.EXCLUDED) == truth
    links = _truth(
        sqlite_runs.estate,
        "SELECT system, source_table, source_key FROM exclusion WHERE outcome = 'EXCLUDED' "
        "AND source_table IN ('CRIME_NOMINAL', 'pw_link')",
    )
    assert _placed(sqlite_runs.ideal, "crime_person_links", Placement.EXCLUDED) == links


def test_rejections_are_the_quarantine(sqlite_runs: Runs) -> None:
    truth = _truth(
        sqlite_runs.estate,
        "SELECT system, source_table, source_key FROM quarantine WHERE source_table = 'CRIME'",
    )
    assert truth and _placed(sqlite_runs.ideal, "crimes", Placement.REJECTED) == truth


def test_merges_are_declared_merges(sqlite_runs: Runs) -> None:
    merged = _placed(sqlite_runs.ideal, "persons", Placement.MERGED)
    truth = _truth(
        sqlite_runs.estate,
        "SELECT COUNT(*) FROM person_record",
    )
    humans = _truth(sqlite_runs.estate, "SELECT COUNT(*) FROM human")
    assert len(merged) == next(iter(truth))[0] - next(iter(humans))[0]


def test_the_defect_manifest_follows_the_bundled_specs() -> None:
    """defects.py states which fields a legacy copy is compared on: the specs must agree."""
    specs = {s.name: s for s in load_specs(spec_files(bundled_specs_dir()))}
    for cls, fields in COPY_COMPARED.items():
        legacy = next(s for s in specs[cls].sources if s.system == "legacy")
        assert legacy.newer_copy is not None
        assert set(legacy.newer_copy.compare or ()) == fields


def test_counts_per_year_show_where_a_crime_was_lost(sqlite_runs: Runs) -> None:
    crimes = {c.name: c for c in sqlite_runs.damaged.classes}["crimes"]
    ideal = {c.name: c for c in sqlite_runs.ideal.classes}["crimes"]
    assert ideal.years_differing() == [] and len(ideal.years["legacy"]) > 40  # back to the 1970s
    deleted = next(e for e in expected(sqlite_runs.estate, "crime_deleted") if e[1] == "crimes")
    system, key = deleted[2], deleted[4]
    column = "legacy_key" if system == "legacy" else "policeworks_key"
    (year,) = next(
        iter(
            _truth(sqlite_runs.estate, f"SELECT recorded_year FROM crime WHERE {column} = '{key}'")
        )
    )
    differing = {(s, y): n for s, y, n in crimes.years_differing()}
    assert set(differing) == {(system, str(year))}
    counts = differing[(system, str(year))]
    assert counts["expected"] - counts["target"] == 1


def test_a_further_link_for_a_placed_pair_is_an_orphan(small_estate: Path, tmp_path: Path) -> None:
    """A victim also recorded as a suspect: the extra target link is unexplained."""
    import shutil

    target = tmp_path / "target.sqlite"
    shutil.copy(small_estate / "target.sqlite", target)
    with sqlite3.connect(target) as conn:
        event, person = conn.execute(
            "SELECT event_id, person_id FROM event_person e WHERE role = 'VICTIM' AND NOT EXISTS "
            "(SELECT 1 FROM event_person o WHERE o.event_id = e.event_id "
            "AND o.person_id = e.person_id AND o.role <> 'VICTIM') LIMIT 1"
        ).fetchone()
        conn.execute("INSERT INTO event_person VALUES (?, ?, 'SUSPECT')", (event, person))
    info = json.loads((small_estate / "estate.json").read_text())
    dbs = info["databases"]
    specs = [
        s for s in load_specs(spec_files(bundled_specs_dir())) if s.name == "crime_person_links"
    ]
    result = reconcile_all(
        specs,
        Connections(
            {"legacy": dbs["legacy"], "policeworks": dbs["policeworks"]}, f"sqlite:///{target}"
        ),
        dt.date.fromisoformat(info["as_of"]),
    )
    (links,) = result.classes
    orphans = [f.key for f in links.findings if f.placement is Placement.ORPHAN]
    assert orphans == [f"{event}|{person}|SUSPECT"]
    assert links.target.balanced and not links.clean()


def test_a_second_role_another_system_records_is_explained(
    small_estate: Path, tmp_path: Path
) -> None:
    """Legacy says VICTIM, PoliceWorks says SUSPECT for the same crime and person, and the target
    holds both links: each is explained by one system's record, so neither is an orphan."""
    import shutil

    target, pw = tmp_path / "target.sqlite", tmp_path / "pw.sqlite"
    shutil.copy(small_estate / "target.sqlite", target)
    shutil.copy(small_estate / "policeworks.sqlite", pw)
    with sqlite3.connect(pw) as conn:
        link, occurrence, person = conn.execute(
            "SELECT l.link_id, l.from_id, l.to_id FROM pw_link l JOIN pw_occurrence o "
            "ON o.occurrence_id = l.from_id WHERE o.legacy_crime_no IS NOT NULL "
            "AND l.link_type = 'VICTIM' LIMIT 1"
        ).fetchone()
        conn.execute("UPDATE pw_link SET link_type = 'SUSPECT' WHERE link_id = ?", (link,))
    with sqlite3.connect(target) as conn:
        (event,) = conn.execute(
            "SELECT target_key FROM migration_crosswalk WHERE source_key = ?", (occurrence,)
        ).fetchone()
        (pid,) = conn.execute(
            "SELECT target_key FROM migration_crosswalk WHERE source_key = ?", (person,)
        ).fetchone()
        conn.execute("INSERT INTO event_person VALUES (?, ?, 'SUSPECT')", (event, pid))
    info = json.loads((small_estate / "estate.json").read_text())
    specs = [
        s for s in load_specs(spec_files(bundled_specs_dir())) if s.name == "crime_person_links"
    ]
    result = reconcile_all(
        specs,
        Connections(
            {"legacy": info["databases"]["legacy"], "policeworks": f"sqlite:///{pw}"},
            f"sqlite:///{target}",
        ),
        dt.date.fromisoformat(info["as_of"]),
    )
    (links,) = result.classes
    assert [f for f in links.findings if f.side == "target"] == []
    assert links.clean(), links.exceptions()
