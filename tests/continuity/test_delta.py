"""Delta waves (`continuity run WAVE --delta`): after the sources change, a delta migrates what
changed (records added, changed, deleted, and the parents of changed children) and nothing else,
and reconciliation of the whole estate against the target is clean again."""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine

from continuity import target_schema
from continuity.changes import FINGERPRINTS
from continuity.db import create_tables, database_digests
from continuity.estate.evolve import evolve_estate
from continuity.estate.generate import EstateOptions, generate_estate
from continuity.project import Project, load_project
from continuity.waves import RunSummary, run_wave
from reconcile.engine import Connections, reconcile_all
from reconcile.model import Placement, Reconciliation
from reconcile.spec import bundled_specs_dir, load_specs, spec_files

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "gmp"
PERSONS = 1500


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An estate, migrated whole into a product once: each test works on a copy."""
    base = tmp_path_factory.mktemp("delta")
    generate_estate(EstateOptions(out=base / "estate", persons=PERSONS, seed=21, processes=1))
    _migrate(base, f"sqlite:///{base / 'product.sqlite'}")
    return base


def _migrate(base: Path, target: str) -> None:
    """The bundled project beside the estate in ``base``, run whole into a new ``target``."""
    engine = create_engine(target)
    create_tables(engine, target_schema.metadata)
    engine.dispose()
    shutil.copytree(EXAMPLE, base / "project", ignore=shutil.ignore_patterns(".continuity"))
    run_wave(load_project(base / "project", {**_env(base), "CONTINUITY_TARGET": target}), "all")


def _copy(base: Path, to: Path) -> Path:
    shutil.copytree(base, to)
    manifest = to / "estate" / "estate.json"
    info = json.loads(manifest.read_text())
    info["databases"] = {
        k: v.replace(str(base.resolve()), str(to.resolve())) for k, v in info["databases"].items()
    }
    manifest.write_text(json.dumps(info))
    return to


def _env(base: Path) -> dict[str, str]:
    return {
        "CONTINUITY_ESTATE": str(base / "estate"),
        "CONTINUITY_TARGET": f"sqlite:///{base / 'product.sqlite'}",
    }


def _project(base: Path) -> Project:
    return load_project(base / "project", _env(base))


def _reconcile(base: Path) -> Reconciliation:
    estate = base / "estate"
    urls = {"legacy": f"sqlite:///{estate / 'legacy.sqlite'}"}
    urls["policeworks"] = f"sqlite:///{estate / 'policeworks.sqlite'}"
    specs = load_specs(spec_files(bundled_specs_dir()))
    target = f"sqlite:///{base / 'product.sqlite'}"
    return reconcile_all(specs, Connections(urls, target), dt.date(2026, 6, 30))


def _assert_clean(base: Path) -> Reconciliation:
    result = _reconcile(base)
    problems = [
        f"{f.cls} {f.system} {f.key} {f.placement.value} {f.fields} {f.reason}"
        for c in result.classes
        for f in c.exceptions()
    ]
    assert problems == []
    assert result.clean()
    return result


def _sql(base: Path, db: str, statement: str, params: tuple[Any, ...] = ()) -> list[Any]:
    with sqlite3.connect(base / "estate" / db) as conn:
        rows = conn.execute(statement, params).fetchall()
    return rows


def _product(base: Path, statement: str, params: tuple[Any, ...] = ()) -> list[Any]:
    with sqlite3.connect(base / "product.sqlite") as conn:
        return conn.execute(statement, params).fetchall()


def _delta(base: Path, **options: Any) -> RunSummary:
    return run_wave(_project(base), "all", delta=True, **options)


def digests(url: str) -> dict[str, tuple[int, str]]:
    return database_digests(url, target_schema.metadata)


def test_a_delta_after_no_change_migrates_nothing(
    migrated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONTINUITY_PROCESSES", "2")  # the sources are validated aside
    base = _copy(migrated, tmp_path / "b")
    before = digests(_env(base)["CONTINUITY_TARGET"])
    summary = _delta(base)
    assert summary.rows_read == 0
    assert all(c["added"] == c["changed"] == c["deleted"] == 0 for c in summary.changes.values())
    assert sum(c["unchanged"] for c in summary.changes.values()) > PERSONS
    assert digests(_env(base)["CONTINUITY_TARGET"]) == before
    # where its time went, phase by phase in the order they ended (a freeze is planned on
    # it): the wait for the sources' verdict within person resolution is its own
    assert list(summary.phases) == [
        "change detection",
        "lookups and gazetteers",
        "source validation",
        "person resolution",
        "mapping steps",
        "deletions",
        "finishing",
        "target validation",
    ]
    assert 0 < sum(summary.phases.values()) <= summary.seconds
    assert summary.phases["mapping steps"] == pytest.approx(
        sum(c.seconds for c in summary.steps.values())
    )
    from continuity.cli import _summary_table

    assert "Where the time went: change detection " in _summary_table(summary)


def test_thirty_days_of_live_use_then_a_delta_reconciles_clean(
    migrated: Path, tmp_path: Path
) -> None:
    base = _copy(migrated, tmp_path / "b")
    evolved = evolve_estate(
        base / "estate", 30, {k: v for k, v in EstateOptions(out=base / "estate").urls().items()}
    )
    events = evolved.events
    summary = _delta(base)
    changes = summary.changes
    assert changes["policeworks.pw_occurrence"]["added"] == events["new_crimes"]
    assert changes["policeworks.pw_occurrence"]["changed"] == events["outcomes"]
    assert changes["policeworks.pw_intel"]["added"] == events["intelligence"]
    assert changes["legacy.NOMINAL"]["deleted"] == events["deleted_duplicates"]
    assert summary.moved["person"] == events["deleted_duplicates"]
    # Far fewer rows than the estate's: only what changed (and what it belongs to).
    total = sum(c["unchanged"] + c["added"] + c["changed"] for c in changes.values())
    assert 0 < summary.rows_read < total / 5
    result = _assert_clean(base)
    persons = next(c for c in result.classes if c.name == "persons")
    legacy = next(s for s in persons.sources if s.system == "legacy")
    assert legacy.terms[Placement.DELETED_AT_SOURCE] == events["deleted_duplicates"]
    # And the delta's fingerprints are the baseline now: another delta finds nothing.
    again = _delta(base)
    assert again.rows_read == 0


def test_change_detection_finds_the_same_in_one_process_and_in_several(
    migrated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tables are read by worker processes, a newer copy's after its older copies: what they
    find (counts in table order, keys wanted, deletions) is what one process reading them in
    turn finds."""
    from continuity.changes import Detector
    from continuity.waves import WaveRunner

    base = _copy(migrated, tmp_path / "b")
    evolve_estate(base / "estate", 30, EstateOptions(out=base / "estate").urls(), processes=1)
    # an older copy changed: its newer copy (a PoliceWorks occurrence) is wanted with it
    ((crime,),) = _sql(
        base,
        "policeworks.sqlite",
        "SELECT legacy_crime_no FROM pw_occurrence WHERE legacy_crime_no IS NOT NULL LIMIT 1",
    )
    with sqlite3.connect(base / "estate" / "legacy.sqlite") as conn:
        conn.execute('UPDATE "CRIME" SET "MO_TEXT" = \'changed\' WHERE "CRIME_NO" = ?', (crime,))
    found = []
    for processes in ("1", "3"):
        monkeypatch.setenv("CONTINUITY_PROCESSES", processes)
        runner = WaveRunner(_project(base), "all", dt.date(2026, 6, 30), delta=True)
        try:
            got = Detector(runner, "check", None, keep=True).run()
        finally:
            runner.close()
        found.append(got)
    one, several = found
    assert one.counts == several.counts
    assert list(one.counts) == list(several.counts)  # the tables in the same order
    assert one.wanted == several.wanted
    assert one.deleted == several.deleted
    assert crime in one.keys("legacy", "CRIME")
    ((newer,),) = _sql(
        base,
        "policeworks.sqlite",
        "SELECT occurrence_id FROM pw_occurrence WHERE legacy_crime_no = ?",
        (crime,),
    )
    assert newer in one.keys("policeworks", "pw_occurrence")
    assert sum(c["related"] for c in one.counts.values()) > 0
    assert sum(c["added"] + c["changed"] + c["deleted"] for c in one.counts.values()) > 0


@pytest.mark.parametrize("processes", ["1", "2"])
def test_a_table_change_detection_cannot_read_is_one_line_and_nothing_moves(
    migrated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, processes: str
) -> None:
    """A column gone from a source table: the run stops before anything moves, with one line
    naming the source, whether a worker process or the run's own read the table."""
    from continuity.domain.errors import ContinuityError

    monkeypatch.setenv("CONTINUITY_PROCESSES", processes)
    base = _copy(migrated, tmp_path / "b")
    before = digests(_env(base)["CONTINUITY_TARGET"])
    with sqlite3.connect(base / "estate" / "legacy.sqlite") as conn:
        conn.execute('ALTER TABLE "ALIAS" DROP COLUMN "FORENAME"')
    with pytest.raises(ContinuityError) as raised:
        _delta(base)
    message = str(raised.value)
    assert "legacy" in message and "FORENAME" in message and "\n" not in message
    assert digests(_env(base)["CONTINUITY_TARGET"]) == before


def _dies(*_: Any) -> None:
    """A worker process killed (as by the kernel's out-of-memory killer)."""
    os._exit(9)


def test_a_worker_that_dies_stops_the_run_in_one_line(
    migrated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker process killed while it reads a table (the kernel's out-of-memory killer): the
    run stops in one line saying so and how to read in one process; nothing moves."""
    import continuity.changes as changes_module
    from continuity.domain.errors import ContinuityError

    monkeypatch.setenv("CONTINUITY_PROCESSES", "2")
    monkeypatch.setattr(changes_module, "_scan_in_worker", _dies)  # forked: the workers' too
    base = _copy(migrated, tmp_path / "b")
    before = digests(_env(base)["CONTINUITY_TARGET"])
    with pytest.raises(ContinuityError, match=r"died .*CONTINUITY_PROCESSES=1") as raised:
        _delta(base)
    assert "\n" not in str(raised.value)
    assert digests(_env(base)["CONTINUITY_TARGET"]) == before


def test_an_update_in_place_is_migrated(migrated: Path, tmp_path: Path) -> None:
    base = _copy(migrated, tmp_path / "b")
    (occurrence,) = _sql(
        base,
        "policeworks.sqlite",
        "SELECT occurrence_id FROM pw_occurrence "
        "WHERE status = 'OPEN' ORDER BY occurrence_id LIMIT 1",
    )[0:1]
    _sql(
        base,
        "policeworks.sqlite",
        "UPDATE pw_occurrence SET status = 'CLOSED', outcome_code = 'OC01', "
        "outcome_date = '2026-07-02' WHERE occurrence_id = ?",
        occurrence,
    )
    summary = _delta(base)
    assert summary.changes["policeworks.pw_occurrence"]["changed"] == 1
    assert summary.entities["event"].loaded == 1
    (event,) = _product(
        base,
        "SELECT status, outcome_code FROM event JOIN migration_crosswalk x "
        "ON x.target_key = event.event_id WHERE x.source_key = ?",
        occurrence,
    )
    assert event == ("CLOSED", "OC01")
    _assert_clean(base)


def test_a_delta_asks_the_source_for_key_problems_only_where_detection_met_one(
    migrated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Change detection reads every key of every table: where it met each once, the delta does
    not ask the database again (a grouping query over the whole table). A key held twice, or
    a null key, is still asked for, and quarantined as before."""
    from extractors.sql import SqlExtractor

    base = _copy(migrated, tmp_path / "b")
    (occurrence,), *_ = _sql(
        base, "policeworks.sqlite", "SELECT occurrence_id FROM pw_occurrence ORDER BY 1"
    )
    _sql(
        base,
        "policeworks.sqlite",
        "UPDATE pw_occurrence SET mo_text = 'changed' WHERE occurrence_id = ?",
        (occurrence,),
    )
    (link,), *_ = _sql(base, "policeworks.sqlite", "SELECT link_id FROM pw_link ORDER BY 1")
    _sql(
        base,
        "policeworks.sqlite",
        "INSERT INTO pw_link SELECT link_id, from_type, from_id, to_type, to_id, 'VICTIM' "
        "FROM pw_link WHERE link_id = ?",
        (link,),
    )
    _sql(
        base,
        "policeworks.sqlite",
        "INSERT INTO pw_intel (intel_id, grading, review_state, summary) "
        "VALUES (NULL, 'B2', 'AWAITING_REVIEW', 'no key')",
    )
    asked: list[str] = []
    real = SqlExtractor.key_problems

    def counted(self: SqlExtractor, selection: Any) -> Any:
        asked.append(selection.table)
        return real(self, selection)

    monkeypatch.setattr(SqlExtractor, "key_problems", counted)
    summary = _delta(base)
    assert summary.changes["policeworks.pw_occurrence"]["changed"] == 1
    assert "pw_occurrence" not in asked
    assert "pw_link" in asked and "pw_intel" in asked
    quarantined = _product(
        base,
        "SELECT source_table, source_key, reason FROM migration_quarantine "
        "WHERE source_table LIKE 'pw_link%' OR source_table = 'pw_intel' ORDER BY 1, 2",
    )
    assert link in {k for t, k, _ in quarantined if t.startswith("pw_link")}
    assert any(t == "pw_intel" for t, _, _ in quarantined)
    assert all("duplicate" in r or "null" in r or "no key" in r for _, _, r in quarantined)


def test_a_delta_asks_for_changed_rows_of_a_key_of_several_columns_by_its_first(
    migrated: Path, tmp_path: Path
) -> None:
    """A new crime-nominal link (keyed by crime, nominal and role) is asked of the database by
    its crime number, not found by reading every link; it is migrated."""
    base = _copy(migrated, tmp_path / "b")
    (crime, role), *_ = _sql(
        base, "legacy.sqlite", "SELECT CRIME_NO, ROLE FROM CRIME_NOMINAL ORDER BY 1"
    )
    (other,), *_ = _sql(
        base,
        "legacy.sqlite",
        "SELECT NOMINAL_REF FROM NOMINAL WHERE NOMINAL_REF NOT IN (SELECT NOMINAL_REF FROM "
        "CRIME_NOMINAL WHERE CRIME_NO = ?) ORDER BY 1",
        (crime,),
    )
    _sql(base, "legacy.sqlite", "INSERT INTO CRIME_NOMINAL VALUES (?, ?, ?)", (crime, other, role))
    summary = _delta(base)
    assert summary.changes["legacy.CRIME_NOMINAL"]["added"] == 1
    step = summary.steps["event_person<-legacy.CRIME_NOMINAL"]
    assert step.read >= 1 and step.unchanged == 0
    linked = _product(
        base,
        "SELECT count(*) FROM event_person l "
        "JOIN migration_crosswalk e ON e.target_key = l.event_id AND e.source_table = 'CRIME' "
        "JOIN migration_crosswalk p ON p.target_key = l.person_id "
        "AND p.source_table = 'NOMINAL' WHERE e.source_key = ? AND p.source_key = ?",
        (crime, other),
    )
    assert linked == [(1,)]
    _assert_clean(base)


def test_the_first_parts_of_keys_include_every_reading_of_a_bar_in_a_part() -> None:
    from continuity.waves import _first_parts

    assert _first_parts(["a|b", "a|c", "x|y|z"], 2) == ("a", "x", "x|y")
    assert _first_parts(["p|q|r"], 3) == ("p",)


def test_a_change_in_a_child_only_migrates_its_parent_again(migrated: Path, tmp_path: Path) -> None:
    """A new alias and a corrected one: the aliases' nominals count as changed too."""
    base = _copy(migrated, tmp_path / "b")
    (ref,), *_ = _sql(base, "legacy.sqlite", "SELECT NOMINAL_REF FROM ALIAS ORDER BY 1")
    _sql(
        base, "legacy.sqlite", "UPDATE ALIAS SET SURNAME = 'QUIGLEY' WHERE NOMINAL_REF = ?", (ref,)
    )
    (other,) = _sql(
        base,
        "legacy.sqlite",
        "SELECT NOMINAL_REF FROM NOMINAL WHERE NOMINAL_REF NOT IN (SELECT NOMINAL_REF FROM ALIAS) "
        "ORDER BY 1 LIMIT 1",
    )[0]
    _sql(base, "legacy.sqlite", "INSERT INTO ALIAS VALUES (?, 1, 'ZABINSKI', 'JOLENE')", (other,))
    summary = _delta(base)
    assert summary.changes["legacy.ALIAS"]["changed"] >= 1
    assert summary.changes["legacy.ALIAS"]["added"] == 1
    # Related: the two nominals, and the other records of their persons.
    assert summary.changes["legacy.NOMINAL"]["related"] >= 2
    assert summary.changes["legacy.NOMINAL"]["changed"] == 0
    assert summary.entities["person"].read >= 2
    names = {r[0] for r in _product(base, "SELECT surname FROM person_name")}
    assert {"QUIGLEY", "ZABINSKI"} <= {n.upper() for n in names}
    _assert_clean(base)


def test_a_dry_run_delta_writes_nothing(migrated: Path, tmp_path: Path) -> None:
    base = _copy(migrated, tmp_path / "b")
    evolve_estate(base / "estate", 10, EstateOptions(out=base / "estate").urls(), processes=1)
    url = _env(base)["CONTINUITY_TARGET"]
    before = digests(url)
    baseline = _product(
        base, f"SELECT count(*), total(fingerprint), max(run_id) FROM {FINGERPRINTS}"
    )
    summary = _delta(base, dry_run=True)
    assert summary.changes["policeworks.pw_occurrence"]["added"] > 0
    assert summary.would_insert.get("event", 0) > 0
    assert digests(url) == before
    assert (
        _product(base, f"SELECT count(*), total(fingerprint), max(run_id) FROM {FINGERPRINTS}")
        == baseline
    )


def _whole_resolution_next(base: Path) -> None:
    """Forget the resolution state: the next run resolves every person record again."""
    _product(base, "UPDATE continuity_checkpoint SET state = '{}' WHERE step LIKE 'resolution:%'")


def _target_rows(base: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the product and of its work tables that a run's identity does not name."""
    found = {}
    with sqlite3.connect(base / "product.sqlite") as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            if table in ("continuity_checkpoint", "continuity_journal") or "pending" in table:
                continue
            columns = [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
            kept = [c for c in columns if c not in ("run_id", "detected_by", "replaced_by")]
            found[table] = sorted(map(repr, conn.execute(f"SELECT {', '.join(kept)} FROM {table}")))
    return found


def test_a_delta_resolves_again_only_the_persons_a_change_reaches_as_a_whole_run_would(
    migrated: Path, tmp_path: Path
) -> None:
    """Two deltas one after the other, each resolving the part of the person records its
    changes can reach: the same product, crosswalk and resolution state as deltas resolving
    every record."""
    part = _copy(migrated, tmp_path / "part")
    whole = _copy(migrated, tmp_path / "whole")
    for base in (part, whole):
        assert _delta(base).rows_read == 0  # nothing changed: this keeps the state
    for days, seed in ((30, 1), (20, 2)):
        for base in (part, whole):
            urls = EstateOptions(out=base / "estate").urls()
            evolve_estate(base / "estate", days, urls, seed=seed, processes=1)
        _whole_resolution_next(whole)
        by_part, by_whole = _delta(part), _delta(whole)
        stats = by_part.resolution["person"]
        assert by_whole.resolution["person"]["incremental"] == {}
        assert 0 < stats["incremental"]["resolved_again"] < stats["records"] / 2
        assert stats["records"] == by_whole.resolution["person"]["records"]
        assert by_part.resolution["person"].get("merged_after") == by_whole.resolution[
            "person"
        ].get("merged_after")
        assert _target_rows(part) == _target_rows(whole)
    _assert_clean(part)


def test_the_resolution_state_is_kept_unless_turned_off(
    migrated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """By default a run keeps the resolution state, and the next delta resolves only the part
    a change reaches; with ``CONTINUITY_RESOLUTION_STATE=0`` a run resolves every record and
    keeps none, so the run after it resolves every record too (and keeps the state again)."""
    base = _copy(migrated, tmp_path / "b")
    urls = EstateOptions(out=base / "estate").urls()

    def delta(seed: int) -> dict[str, Any]:
        evolve_estate(base / "estate", 5, urls, seed=seed, processes=1)
        resolution: dict[str, Any] = _delta(base).resolution["person"]
        return resolution

    monkeypatch.setenv("CONTINUITY_RESOLUTION_STATE", "0")
    assert delta(8)["incremental"] == {}
    kept = "SELECT state FROM continuity_checkpoint WHERE step = 'resolution:person'"
    assert [json.loads(s) for (s,) in _product(base, kept)] == [{"kept": False}]
    monkeypatch.delenv("CONTINUITY_RESOLUTION_STATE")
    assert delta(9)["incremental"] == {}
    again = delta(10)
    assert 0 < again["incremental"]["resolved_again"] < again["records"]


def test_a_deltas_warnings_judge_the_rows_it_migrates_until_a_suite_changes(
    migrated: Path, tmp_path: Path
) -> None:
    base = _copy(migrated, tmp_path / "b")
    urls = EstateOptions(out=base / "estate").urls()
    evolve_estate(base / "estate", 10, urls, seed=3, processes=1)
    summary = _delta(base)
    scope = summary.validation["source"]["scope"]
    occurrences = summary.changes["policeworks.pw_occurrence"]
    assert scope["policeworks.pw_occurrence"] == sum(
        occurrences[k] for k in ("added", "changed", "related")
    )
    # A suite changed since the last full judgement: every row is judged, once.
    suite = base / "project" / "suites" / "legacy.CRIME.yml"
    suite.write_text(suite.read_text().replace("[OPEN, CLOSED]", "[OPEN, CLOSED, PENDING]"))
    evolve_estate(base / "estate", 5, urls, seed=4, processes=1)
    assert "scope" not in _delta(base).validation["source"]
    evolve_estate(base / "estate", 5, urls, seed=5, processes=1)
    assert "scope" in _delta(base).validation["source"]
    _assert_clean(base)


def _stops(*_: Any) -> None:
    raise RuntimeError("stopped")


def test_a_deltas_target_validation_judges_the_rows_it_wrote_while_the_target_passes(
    migrated: Path, tmp_path: Path
) -> None:
    base = _copy(migrated, tmp_path / "b")
    urls = EstateOptions(out=base / "estate").urls()
    evolve_estate(base / "estate", 5, urls, seed=6, processes=1)
    summary = _delta(base)
    (events,) = _product(base, "SELECT COUNT(*) FROM event")[0]
    (persons,) = _product(base, "SELECT COUNT(*) FROM person")[0]
    scope = summary.validation["target"]["scope"]
    assert 0 < scope["target.event"] < events
    # a link's reference judges the links of the persons the delta wrote links of
    assert 0 < scope["target.event_person.person_id"] < persons
    # A run that does not finish: the next judges every row.
    from continuity.waves import WaveRunner

    evolve_estate(base / "estate", 5, urls, seed=10, processes=1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(WaveRunner, "_retire", _stops)
        with pytest.raises(RuntimeError, match="stopped"):
            _delta(base)
    assert "scope" not in _delta(base, restart=True).validation["target"]
    # Someone else's duplicate crime: uniqueness judges every row, and the run fails...
    with sqlite3.connect(base / "product.sqlite") as conn:
        conn.executescript(
            "CREATE TEMP TABLE twin AS SELECT * FROM event LIMIT 1;"
            "UPDATE twin SET event_id = 'twin';"
            "INSERT INTO event SELECT * FROM twin;"
        )
    evolve_estate(base / "estate", 5, urls, seed=7, processes=1)
    failed = _delta(base)
    assert failed.failed is not None and "crime_reference" in failed.failed
    # ... so the next judges every row again, and the one after only its own.
    _product(base, "DELETE FROM event WHERE event_id = 'twin'")
    evolve_estate(base / "estate", 5, urls, seed=8, processes=1)
    again = _delta(base)
    assert again.failed is None and "scope" not in again.validation["target"]
    evolve_estate(base / "estate", 5, urls, seed=9, processes=1)
    assert "scope" in _delta(base).validation["target"]


def test_a_rolled_back_delta_is_migrated_again(migrated: Path, tmp_path: Path) -> None:
    from continuity.rollback import rollback_wave

    base = _copy(migrated, tmp_path / "b")
    evolve_estate(base / "estate", 10, EstateOptions(out=base / "estate").urls(), processes=1)
    first = _delta(base)
    rollback_wave(_project(base), "all")
    again = _delta(base)
    assert (
        again.changes["policeworks.pw_occurrence"]["added"]
        >= (first.changes["policeworks.pw_occurrence"]["added"])
    )
    _assert_clean(base)


def test_a_delta_killed_at_random_points_resumes_to_the_same_target(
    migrated: Path, tmp_path: Path
) -> None:
    """SIGKILL during a delta, then --resume: the same target as an uninterrupted delta."""
    reference = _copy(migrated, tmp_path / "ref")
    evolve_estate(reference / "estate", 120, EstateOptions(out=reference / "estate").urls())
    killed = _copy(reference, tmp_path / "killed")  # evolved the same way
    began = time.perf_counter()
    _delta(reference, batch_size=5)
    took = time.perf_counter() - began
    expected = digests(_env(reference)["CONTINUITY_TARGET"])
    rng = random.Random(20261124)
    args = ["run", "all", "--delta", "--project", str(killed / "project"), "--batch-size", "5"]
    args.append("--no-search-index")
    command, kills = args, 0
    while True:
        process = subprocess.Popen(
            [sys.executable, "-m", "continuity.cli", *command],
            env={**os.environ, **_env(killed)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        if kills < 2:
            time.sleep(rng.uniform(0.5, 0.5 + took))  # the interpreter starts in about 0.5 s
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                process.communicate()
                kills += 1
                command = [*args, "--resume"]
                continue
        _, err = process.communicate(timeout=600)
        if process.returncode == 2 and b"nothing to resume" in err:
            command = args  # killed before its first commit
            continue
        assert process.returncode == 0, err.decode()
        break
    assert kills > 0, "the delta finished before it could be killed: kill sooner"
    got = digests(_env(killed)["CONTINUITY_TARGET"])
    for table, digest in expected.items():
        if table != "migration_deletion":  # names the run that found each deletion
            assert got[table] == digest, table
    deletions = "SELECT source_key, target_key, rule, action FROM migration_deletion ORDER BY 1"
    assert _product(killed, deletions) == _product(reference, deletions)
    assert _product(killed, deletions)
    _assert_clean(killed)


def _new_occurrence(base: Path, occurrence: str, reference: str) -> None:
    """A copy of an existing PoliceWorks-only occurrence under a new id and reference."""
    cols = [r[1] for r in _sql(base, "policeworks.sqlite", "PRAGMA table_info(pw_occurrence)")]
    rest = [c for c in cols if c not in ("occurrence_id", "crime_reference", "legacy_crime_no")]
    _sql(
        base,
        "policeworks.sqlite",
        f"INSERT INTO pw_occurrence (occurrence_id, crime_reference, legacy_crime_no, "
        f"{', '.join(rest)}) SELECT ?, ?, NULL, {', '.join(rest)} FROM pw_occurrence "
        "WHERE legacy_crime_no IS NULL AND status = 'OPEN' ORDER BY occurrence_id LIMIT 1",
        (occurrence, reference),
    )


def _pw_person(base: Path, person: str, occurrence: str, dob: str | None, pnc: str | None) -> None:
    _sql(
        base,
        "policeworks.sqlite",
        "INSERT INTO pw_person (person_id, occurrence_id, forename, middle_names, surname, dob, "
        "dob_estimated, gender, pnc_id, created_utc) VALUES (?, ?, 'Zebedee', NULL, "
        "'Quartermaine', ?, 0, 'M', ?, '2026-07-02 10:00:00')",
        (person, occurrence, dob, pnc),
    )
    for link, kind, frm, to_type, to, role in (
        (f"{person}-home", "PERSON", person, "LOCATION", "home-x", "HOME"),
        (f"{person}-occ", "OCCURRENCE", occurrence, "PERSON", person, "VICTIM"),
    ):
        _sql(
            base,
            "policeworks.sqlite",
            "INSERT INTO pw_link VALUES (?, ?, ?, ?, ?, ?)",
            (link, kind, frm, to_type, to, role),
        )


def _person_of(base: Path, system: str, key: str) -> str:
    (found,) = _product(
        base,
        "SELECT target_key FROM migration_crosswalk WHERE source_system = ? AND source_key = ? "
        "AND target_table = 'person'",
        (system, key),
    )
    return str(found[0])


@pytest.mark.parametrize("keys_per_read", [None, 1])
def test_a_new_occurrence_linking_two_persons_migrated_apart_merges_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keys_per_read: int | None
) -> None:
    """A nominal and a PoliceWorks person with no date of birth at another address are two
    persons; a new occurrence's person with the nominal's PNC ID and date of birth, living where
    the second does, shows they are one human: the delta merges them after the fact."""
    base = tmp_path / "b"
    generate_estate(EstateOptions(out=base / "estate", persons=600, seed=8, processes=1))
    (nominal, pnc), *_ = _sql(
        base,
        "legacy.sqlite",
        "SELECT NOMINAL_REF, PNC_ID FROM NOMINAL WHERE PNC_ID LIKE '____/%' "
        "AND DOB LIKE '__-___-____' ORDER BY NOMINAL_REF",
    )
    _sql(
        base,
        "legacy.sqlite",
        "UPDATE NOMINAL SET FORENAME1 = 'ZEBEDEE', SURNAME = 'QUARTERMAINE', SEX = 'M' "
        "WHERE NOMINAL_REF = ?",
        (nominal,),
    )
    _sql(
        base,
        "policeworks.sqlite",
        "INSERT INTO pw_location (location_id, uprn, building, street, locality, town, postcode) "
        "VALUES ('home-x', NULL, NULL, '1 Nowhere Lane', NULL, 'Salford', 'M50 2ZZ')",
    )
    _new_occurrence(base, "occ-1", "CRI/26/99999991")
    _pw_person(base, "pw-b", "occ-1", None, None)
    _migrate(base, f"sqlite:///{base / 'product.sqlite'}")
    kept, apart = _person_of(base, "legacy", nominal), _person_of(base, "policeworks", "pw-b")
    assert kept != apart
    ((dob,),) = _product(base, "SELECT dob FROM person WHERE person_id = ?", (kept,))

    _new_occurrence(base, "occ-2", "CRI/26/99999992")
    _pw_person(base, "pw-c", "occ-2", str(dob)[:10], pnc)
    if keys_per_read is not None:  # keys, and moved keys, read one at a time
        monkeypatch.setattr("continuity.waves.KEYS_PER_READ", keys_per_read)
        monkeypatch.setattr("continuity.waves.MOVED_PER_READ", keys_per_read)
    summary = _delta(base)
    assert summary.retired["merged_after_the_fact"] == {"person": 1}
    assert summary.resolution["person"]["merged_after"] == [
        [f"legacy|NOMINAL|{nominal}", "policeworks|pw_person|pw-b"]
    ]
    assert _person_of(base, "policeworks", "pw-b") == kept
    assert _person_of(base, "policeworks", "pw-c") == kept
    assert not _product(base, "SELECT 1 FROM person WHERE person_id = ?", (apart,))
    assert not _product(base, "SELECT 1 FROM event_person WHERE person_id = ?", (apart,))
    linked = _product(
        base,
        "SELECT count(*) FROM event_person e JOIN migration_crosswalk x ON x.target_key = "
        "e.event_id WHERE x.source_key IN ('occ-1', 'occ-2') AND e.person_id = ?",
        (kept,),
    )
    assert linked == [(2,)]
    # The rows referring to the moved records were asked of the database, not found by
    # reading every row of their tables: none was read and found unchanged.
    link = summary.steps["event_person<-policeworks.pw_link"]
    assert link.read >= 2 and link.unchanged == 0
    _assert_clean(base)


def test_deleting_a_persons_anchor_at_source_keeps_the_person(
    migrated: Path, tmp_path: Path
) -> None:
    """The person's key came from the record now deleted: its other records keep the person."""
    base = _copy(migrated, tmp_path / "b")
    (anchor, person), *_ = _product(
        base,
        "SELECT a.source_key, a.target_key FROM migration_crosswalk a JOIN migration_crosswalk m "
        "ON m.target_key = a.target_key AND m.source_system = 'policeworks' "
        "WHERE a.target_table = 'person' AND a.rule = 'anchor' AND a.source_table = 'NOMINAL' "
        "ORDER BY a.source_key",
    )
    persons = _product(base, "SELECT count(*) FROM person")
    _sql(base, "legacy.sqlite", "DELETE FROM NOMINAL WHERE NOMINAL_REF = ?", (anchor,))
    summary = _delta(base)
    assert summary.changes["legacy.NOMINAL"]["deleted"] == 1
    assert _product(base, "SELECT count(*) FROM person") == persons
    others = _product(
        base,
        "SELECT DISTINCT target_key FROM migration_crosswalk WHERE target_table = 'person' AND "
        "source_system = 'policeworks' AND source_key IN (SELECT source_key FROM "
        "migration_crosswalk WHERE target_key = ?)",
        (person,),
    )
    assert others == [(person,)]
    assert _product(
        base, "SELECT action, rule FROM migration_deletion WHERE source_key = ?", (anchor,)
    ) == [("kept", "anchor")]
    result = _reconcile(base)
    persons_class = next(c for c in result.classes if c.name == "persons")
    assert persons_class.clean()
    legacy = next(s for s in persons_class.sources if s.system == "legacy")
    assert legacy.terms[Placement.DELETED_AT_SOURCE] == 1


def test_a_full_run_finds_deletions_too(migrated: Path, tmp_path: Path) -> None:
    base = _copy(migrated, tmp_path / "b")
    evolved = evolve_estate(base / "estate", 30, EstateOptions(out=base / "estate").urls())
    summary = run_wave(_project(base), "all")  # not a delta: every record, and the deletions
    deleted = evolved.events["deleted_duplicates"]
    assert summary.changes["legacy.NOMINAL"]["deleted"] == deleted
    assert _product(base, "SELECT count(*) FROM migration_deletion") == [(deleted,)]
    _assert_clean(base)


def test_a_rolled_back_delta_finds_its_deletions_again(migrated: Path, tmp_path: Path) -> None:
    from continuity.rollback import rollback_wave

    base = _copy(migrated, tmp_path / "b")
    evolved = evolve_estate(base / "estate", 30, EstateOptions(out=base / "estate").urls())
    deleted = evolved.events["deleted_duplicates"]
    assert _delta(base).changes["legacy.NOMINAL"]["deleted"] == deleted
    rollback_wave(_project(base), "all")
    assert _product(base, "SELECT count(*) FROM migration_deletion") == [(0,)]
    again = _delta(base)
    assert again.changes["legacy.NOMINAL"]["deleted"] == deleted
    assert _product(base, "SELECT count(*) FROM migration_deletion") == [(deleted,)]
    _assert_clean(base)


def test_a_scoped_delta_finds_a_deletion_another_wave_recorded(
    migrated: Path, tmp_path: Path
) -> None:
    base = _copy(migrated, tmp_path / "b")
    (crime,), *_ = _sql(
        base, "legacy.sqlite", "SELECT CRIME_NO FROM CRIME WHERE DIVISION = 1 ORDER BY 1"
    )
    _sql(base, "legacy.sqlite", "DELETE FROM CRIME WHERE CRIME_NO = ?", (crime,))
    summary = run_wave(_project(base), "division-1", delta=True)
    assert summary.changes["legacy.CRIME"]["deleted"] == 1
    assert _product(base, "SELECT source_key FROM migration_deletion") == [(crime,)]


def test_a_delta_after_the_rules_changed_migrates_every_record_again(
    migrated: Path, tmp_path: Path
) -> None:
    """The as-of date the MoPI rules compare with is part of every fingerprint: a delta at
    another date migrates everything, as a full run would; the next finds nothing."""
    base = _copy(migrated, tmp_path / "b")
    summary = _delta(base, as_of=dt.date(2027, 1, 1))
    assert all(c["unchanged"] == 0 for c in summary.changes.values())
    assert summary.rows_read > PERSONS
    assert _delta(base, as_of=dt.date(2027, 1, 1)).rows_read == 0


def test_a_delta_after_the_gazetteer_changed_migrates_every_record_again(
    migrated: Path, tmp_path: Path
) -> None:
    """Addresses resolve against the gazetteer: a new gazetteer file is, like new rules, part
    of every fingerprint. Its cached copy is not: without it, nothing changes."""
    base = _copy(migrated, tmp_path / "b")
    shutil.rmtree(base / "project" / ".continuity" / "cache", ignore_errors=True)
    assert _delta(base).rows_read == 0
    with (base / "estate" / "gazetteer.csv").open("a", encoding="utf-8") as f:
        f.write("099999999999,,12,Church Road,,Manchester,M3 7BE,387000,404000\n")
    summary = _delta(base)
    assert all(c["unchanged"] == 0 for c in summary.changes.values())
    assert summary.rows_read > PERSONS
    assert _delta(base).rows_read == 0


def _delta_into(base: Path, target: str) -> None:
    _migrate(base, target)
    env = {**_env(base), "CONTINUITY_TARGET": target}
    evolve_estate(base / "estate", 30, EstateOptions(out=base / "estate").urls(), processes=1)
    summary = run_wave(load_project(base / "project", env), "all", delta=True)
    assert summary.changes["policeworks.pw_occurrence"]["added"] > 0
    # persons resolved from the state kept there, in part
    stats = summary.resolution["person"]
    assert 0 < stats["incremental"]["resolved_again"] < stats["records"]
    estate = base / "estate"
    urls = {s: f"sqlite:///{estate / f'{s}.sqlite'}" for s in ("legacy", "policeworks")}
    specs = load_specs(spec_files(bundled_specs_dir()))
    result = reconcile_all(specs, Connections(urls, target), dt.date(2026, 6, 30))
    assert [f.key for c in result.classes for f in c.exceptions()] == []


@pytest.mark.postgres
def test_a_delta_into_postgresql(tmp_path: Path, pg_database: Any) -> None:
    """(The resolution state is written there too, as by default.)"""
    base = tmp_path / "b"
    generate_estate(EstateOptions(out=base / "estate", persons=700, seed=4, processes=1))
    _delta_into(base, pg_database())


@pytest.mark.mariadb
def test_a_delta_into_mariadb(tmp_path: Path, mariadb_database: Any) -> None:
    """(The resolution state is written there too, as by default.)"""
    base = tmp_path / "b"
    generate_estate(EstateOptions(out=base / "estate", persons=700, seed=4, processes=1))
    _delta_into(base, mariadb_database())
