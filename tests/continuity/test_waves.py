"""Migration waves, judged by reconciliation: the bundled project (examples/gmp) run on the
estate must leave a target that reconciles clean, with exactly the records the ground truth says
must be quarantined in quarantine; re-running changes nothing; a dry run writes nothing; a run
killed by SIGKILL at any point resumes to the same target as an uninterrupted run.
"""

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
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine

from continuity import target_schema
from continuity.cli import main
from continuity.db import create_tables, database_digests
from continuity.domain.errors import ConfigError
from continuity.ledger import AuditLedger
from continuity.project import Project, load_project
from continuity.runs import runs
from continuity.waves import run_wave
from reconcile.engine import Connections, reconcile_all
from reconcile.model import Placement, Reconciliation
from reconcile.spec import bundled_specs_dir, load_specs, spec_files

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "gmp"


def new_target(url: str) -> str:
    engine = create_engine(url)
    create_tables(engine, target_schema.metadata)
    engine.dispose()
    return url


def project_for(
    estate: Path, target: str, folder: Path, sources: dict[str, str] | None = None
) -> Project:
    """The bundled project, copied (its ledger goes beside it), aimed at an estate."""
    if not folder.exists():
        shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns(".continuity"))
    env = {"CONTINUITY_ESTATE": str(estate), "CONTINUITY_TARGET": target}
    for system, url in (sources or {}).items():
        env[f"CONTINUITY_{system.upper()}_URL"] = url
    return load_project(folder, env)


def reconcile(estate: Path, target: str, sources: dict[str, str] | None = None) -> Reconciliation:
    info = json.loads((estate / "estate.json").read_text())
    dbs = info["databases"]
    urls = sources or {"legacy": dbs["legacy"], "policeworks": dbs["policeworks"]}
    specs = load_specs(spec_files(bundled_specs_dir()))
    return reconcile_all(specs, Connections(urls, target), dt.date.fromisoformat(info["as_of"]))


def digests(url: str) -> dict[str, tuple[int, str]]:
    return database_digests(url, target_schema.metadata)


def truth_quarantine(estate: Path) -> dict[tuple[str, str, str], str]:
    with sqlite3.connect(estate / "truth.sqlite") as conn:
        rows = conn.execute("SELECT system, source_table, source_key, reason FROM quarantine")
        return {(s, t, k): r for s, t, k, r in rows}


def target_quarantine(url: str) -> dict[tuple[str, str, str], str]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.exec_driver_sql(
                "SELECT source_system, source_table, source_key, reason FROM migration_quarantine"
            )
            return {(s, t, k): r for s, t, k, r in rows}
    finally:
        engine.dispose()


def assert_judged_clean(estate: Path, target: str, sources: dict[str, str] | None = None) -> None:
    """Reconciliation exits 0, and what it calls REJECTED is exactly the truth's quarantine."""
    result = reconcile(estate, target, sources)
    problems = [
        f"{f.cls} {f.system} {f.table} {f.key} {f.placement.value} {f.fields}"
        for c in result.classes
        for f in c.exceptions()
    ]
    assert problems == []
    assert result.clean()
    truth = truth_quarantine(estate)
    loaded = target_quarantine(target)
    assert set(loaded) == set(truth)
    for key, reason in truth.items():
        # The pipeline says more (the value, the code table) after the truth's words.
        assert loaded[key].startswith(reason.split(":")[0]), (key, loaded[key], reason)
    rejected = {
        (f.system, f.table, f.key)
        for c in result.classes
        for f in c.findings
        if f.placement is Placement.REJECTED
    }
    assert rejected <= set(truth)


@pytest.fixture(scope="module")
def migrated(small_estate: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The whole small estate migrated SQLite -> SQLite once, for the module."""
    folder = tmp_path_factory.mktemp("gmp") / "project"
    target = new_target(f"sqlite:///{folder.parent / 'product.sqlite'}")
    project = project_for(small_estate, target, folder)
    summary = run_wave(project, "all")
    assert summary.rows_read > 0
    return folder, target


def test_the_whole_estate_migrates_and_reconciles_clean(
    small_estate: Path, migrated: tuple[Path, str]
) -> None:
    _, target = migrated
    assert_judged_clean(small_estate, target)


def test_rerunning_a_finished_wave_changes_nothing(
    small_estate: Path, migrated: tuple[Path, str]
) -> None:
    folder, target = migrated
    before = digests(target)
    run_wave(project_for(small_estate, target, folder), "all")
    assert digests(target) == before


def test_every_run_is_in_the_audit_ledger(migrated: tuple[Path, str]) -> None:
    folder, _ = migrated
    ledger = AuditLedger(f"sqlite:///{folder / '.continuity' / 'ledger.sqlite'}")
    try:
        assert ledger.verify() >= 2
        finished = [r for r in runs(ledger) if r.state == "finished"]
        assert finished
        started = finished[0].started.payload
        assert set(started["mappings"]) >= {"person", "event", "location", "warning_marker"}
        assert finished[0].counts["event"]["loaded"] > 0
    finally:
        ledger.close()


def test_a_dry_run_writes_nothing_and_says_what_would_change(
    small_estate: Path, tmp_path: Path
) -> None:
    target = new_target(f"sqlite:///{tmp_path / 'empty.sqlite'}")
    before = digests(target)
    project = project_for(small_estate, target, tmp_path / "p")
    summary = run_wave(project, "all", dry_run=True)
    assert digests(target) == before
    assert sum(summary.would_update.values()) == 0
    run_wave(project, "all")
    with sqlite3.connect(target.removeprefix("sqlite:///")) as conn:
        for entity in ("event", "person", "location"):
            (written,) = conn.execute(
                "SELECT COUNT(*) FROM migration_crosswalk WHERE target_table = ?", (entity,)
            ).fetchone()
            assert summary.would_insert[entity] == written


def test_a_dry_run_on_a_migrated_target_counts_updates(
    small_estate: Path, migrated: tuple[Path, str]
) -> None:
    folder, target = migrated
    summary = run_wave(project_for(small_estate, target, folder), "all", dry_run=True)
    assert summary.would_update["person"] > 0
    assert sum(summary.would_insert.values()) == 0


def test_resume_needs_an_interrupted_run(migrated: tuple[Path, str], small_estate: Path) -> None:
    folder, target = migrated
    with pytest.raises(ConfigError, match="nothing to resume"):
        run_wave(project_for(small_estate, target, folder), "all", resume=True)


def _run_cli(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "continuity.cli", *args],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def test_a_run_killed_at_random_points_resumes_to_the_same_target(
    small_estate: Path, migrated: tuple[Path, str], tmp_path: Path
) -> None:
    """SIGKILL twice at random moments, then --resume to the end: the target is the same as
    the uninterrupted run's, row for row (crosswalk, quarantine and checkpoints' effects)."""
    _, reference = migrated
    expected = digests(reference)
    rng = random.Random(20261124)
    for attempt in range(3):
        folder = tmp_path / f"p{attempt}"
        target = new_target(f"sqlite:///{tmp_path / f't{attempt}.sqlite'}")
        project_for(small_estate, target, folder)  # copies the project
        env = {"CONTINUITY_ESTATE": str(small_estate), "CONTINUITY_TARGET": target}
        args = ["run", "all", "--project", str(folder), "--batch-size", "200"]
        command, kills = args, 0
        while True:
            process = _run_cli(command, env)
            if kills < 2:
                time.sleep(rng.uniform(0.4, 1.8))
                if process.poll() is None:
                    process.send_signal(signal.SIGKILL)
                    process.communicate()  # reaps it and closes its pipe
                    kills += 1
                    command = [*args, "--resume"]
                    continue
            _, err = process.communicate(timeout=600)
            if process.returncode == 2 and b"nothing to resume" in err:
                command = args  # killed before its first commit: nothing had happened
                continue
            assert process.returncode == 0, err.decode()
            break
        assert kills > 0, "the run finished before it could be killed: kill sooner"
        for table, digest in digests(target).items():
            assert digest == expected[table], f"attempt {attempt}: {table} differs"


@pytest.mark.postgres
def test_sqlite_sources_into_postgresql(
    small_estate: Path, pg_database: Callable[[], str], tmp_path: Path
) -> None:
    target = new_target(pg_database())
    run_wave(project_for(small_estate, target, tmp_path / "p"), "all")
    assert_judged_clean(small_estate, target)


@pytest.mark.postgres
@pytest.mark.mariadb
def test_mariadb_and_postgresql_sources_into_postgresql(
    pg_database: Callable[[], str],
    mariadb_database: Callable[[], str],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    from continuity.estate.generate import EstateOptions, generate_estate

    estate = tmp_path_factory.mktemp("servers") / "e"
    sources = {"legacy": mariadb_database(), "policeworks": pg_database()}
    generate_estate(
        EstateOptions(
            out=estate,
            persons=1500,
            seed=11,
            processes=1,
            legacy_url=sources["legacy"],
            policeworks_url=sources["policeworks"],
        )
    )
    target = new_target(pg_database())
    run_wave(project_for(estate, target, estate.parent / "p", sources), "all")
    assert_judged_clean(estate, target, sources)


def test_rollback_restores_the_prior_target(small_estate: Path, tmp_path: Path) -> None:
    """A division wave, then the whole estate over it (updates and inserts), then rollbacks:
    each returns the target to exactly what it was before that run."""
    from continuity.rollback import rollback_wave

    target = new_target(f"sqlite:///{tmp_path / 'product.sqlite'}")
    project = project_for(small_estate, target, tmp_path / "p")
    empty = digests(target)
    run_wave(project, "division-1")
    after_first = digests(target)
    assert after_first != empty
    run_wave(project, "all")
    after_all = digests(target)
    assert after_all != after_first
    with pytest.raises(ConfigError, match="wave all ran after wave division-1"):
        rollback_wave(project, "division-1")
    counts = rollback_wave(project, "all")
    assert counts["event deleted"] > 0
    assert counts["migration_crosswalk restored"] > 0  # rows the second run replaced
    assert digests(target) == after_first
    with pytest.raises(ConfigError, match="wave all: no run to roll back"):
        rollback_wave(project, "all")
    rollback_wave(project, "division-1")
    assert digests(target) == empty
    run_wave(project, "all")  # a rolled-back wave runs again as new
    assert digests(target) == after_all


def test_a_division_wave_pulls_in_what_its_crimes_link_to(
    small_estate: Path, tmp_path: Path
) -> None:
    """The division-1 wave names only crimes; their links, bail, persons, the persons' names,
    warnings and homes, and the crime scenes come with them (as SQL on the sources): nothing it
    loads dangles, nothing waits in quarantine that the truth does not quarantine, and the
    whole-estate wave after it leaves a target that reconciles clean."""
    target = new_target(f"sqlite:///{tmp_path / 'product.sqlite'}")
    project = project_for(small_estate, target, tmp_path / "p")
    first = run_wave(project, "division-1")
    assert set(target_quarantine(target)) <= set(truth_quarantine(small_estate))
    assert crosswalk_leads_to_rows(target) == []
    with sqlite3.connect(small_estate / "legacy.sqlite") as conn:
        division = {r[0] for r in conn.execute("SELECT CRIME_NO FROM CRIME WHERE DIVISION = 1")}
    with sqlite3.connect(target.removeprefix("sqlite:///")) as conn:
        placed = {
            r[0]
            for r in conn.execute(
                "SELECT source_key FROM migration_crosswalk WHERE source_table = 'CRIME' "
                "UNION SELECT source_key FROM migration_quarantine WHERE source_table = 'CRIME' "
                "UNION SELECT source_key FROM migration_exclusion WHERE source_table = 'CRIME'"
            )
        }
        (persons,) = conn.execute("SELECT COUNT(*) FROM person").fetchone()
    assert placed == division  # every crime of the division, and only those
    everything = run_wave(project, "all")
    assert 0 < first.entities["person"].read < everything.entities["person"].read
    assert_judged_clean(small_estate, target)
    with sqlite3.connect(target.removeprefix("sqlite:///")) as conn:
        assert conn.execute("SELECT COUNT(*) FROM person").fetchone()[0] > persons


def crosswalk_leads_to_rows(url: str) -> list[str]:
    """Crosswalk entries whose target record is not in its table (none may be)."""
    engine = create_engine(url)
    broken = []
    try:
        with engine.connect() as conn:
            for table in target_schema.metadata.sorted_tables:
                key = [c.name for c in table.primary_key.columns]
                if len(key) != 1 or table.name.startswith("migration_"):
                    continue
                rows = conn.exec_driver_sql(
                    f"SELECT x.source_key FROM migration_crosswalk x LEFT JOIN {table.name} t "
                    f"ON t.{key[0]} = x.target_key WHERE x.target_table = '{table.name}' "
                    f"AND t.{key[0]} IS NULL"
                )
                broken += [f"{table.name}: {r[0]}" for r in rows]
    finally:
        engine.dispose()
    return broken


def test_a_duplicated_nominal_takes_its_merged_records_nowhere_they_cannot_be_found(
    small_estate: Path, tmp_path: Path
) -> None:
    """A nominal whose key is duplicated is quarantined; the records resolution would have
    merged into it must still lead to a person row (or be quarantined), never to nothing."""
    estate = tmp_path / "e"
    shutil.copytree(small_estate, estate)
    with sqlite3.connect(estate / "legacy.sqlite") as conn:
        conn.execute("ATTACH DATABASE ? AS pw", (str(estate / "policeworks.sqlite"),))
        (ref,) = conn.execute(
            "SELECT NOMINAL_REF FROM NOMINAL WHERE PNC_ID IN (SELECT pnc_id FROM pw.pw_person) "
            "ORDER BY NOMINAL_REF LIMIT 1"
        ).fetchone()
        conn.execute("INSERT INTO NOMINAL SELECT * FROM NOMINAL WHERE NOMINAL_REF = ?", (ref,))
    target = new_target(f"sqlite:///{tmp_path / 'product.sqlite'}")
    run_wave(project_for(estate, target, tmp_path / "p"), "all")
    assert ("legacy", "NOMINAL", ref) in target_quarantine(target)
    assert crosswalk_leads_to_rows(target) == []


def test_every_crosswalk_entry_leads_to_a_row(migrated: tuple[Path, str]) -> None:
    _, target = migrated
    assert crosswalk_leads_to_rows(target) == []


def test_contradictory_flags_are_refused_before_anything_is_read(
    small_estate: Path, tmp_path: Path
) -> None:
    target = new_target(f"sqlite:///{tmp_path / 'product.sqlite'}")
    project = project_for(small_estate, target, tmp_path / "p")
    with pytest.raises(ConfigError, match="--resume and --restart contradict"):
        run_wave(project, "all", resume=True, restart=True)
    with pytest.raises(ConfigError, match="a dry run writes nothing"):
        run_wave(project, "all", resume=True, dry_run=True)


def test_a_run_resumes_only_with_the_settings_it_began_with(
    small_estate: Path, tmp_path: Path
) -> None:
    from continuity.loaders.sql import SqlLoader

    target = new_target(f"sqlite:///{tmp_path / 'product.sqlite'}")
    project = project_for(small_estate, target, tmp_path / "p")
    loader = SqlLoader(target, target_schema.metadata)
    loader.prepare()
    with loader.transaction() as tx:  # what a run begun on another day left behind
        tx.set_checkpoint("wave:all", {"run_id": "r-1", "finished": False, "as_of": "2026-01-01"})
    loader.close()
    with pytest.raises(ConfigError, match=r"began with other settings \(as_of was 2026-01-01"):
        run_wave(project, "all", resume=True)
    run_wave(project, "all", resume=True, as_of=dt.date(2026, 1, 1))  # with its date: goes on


def test_a_moved_project_keeps_its_settings_and_a_changed_code_list_does_not(
    small_estate: Path, tmp_path: Path
) -> None:
    """What a resume compares holds no path: the same project in another folder resumes, while
    a code list a suite reads, edited, is a change of settings."""
    from continuity.waves import WaveRunner

    target = f"sqlite:///{tmp_path / 'product.sqlite'}"
    day = dt.date(2026, 1, 1)
    here = WaveRunner(project_for(small_estate, target, tmp_path / "here"), "all", day)
    moved = WaveRunner(project_for(small_estate, target, tmp_path / "there"), "all", day)
    assert any("code_list" in e.arguments for s in here._suites for e in s.expectations), (
        "the bundled suites read a code list"
    )
    assert moved._settings() == here._settings()
    code_list = next(
        Path(e.arguments["code_list"])
        for s in moved._suites
        for e in s.expectations
        if "code_list" in e.arguments
    )
    code_list.write_text(code_list.read_text() + "\n")
    edited = WaveRunner(project_for(small_estate, target, tmp_path / "there"), "all", day)
    assert edited._settings()["suites"] != here._settings()["suites"]


def test_a_gazetteer_read_once_comes_from_the_cache_until_its_file_changes(
    small_estate: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gazetteer a wave builds is kept in the project's cache: the next wave reads it
    from there and builds nothing; a changed file (one row more), a damaged cache file or
    ``CONTINUITY_CACHE=off`` make it read the file again."""
    from continuity.domain.addresses import Gazetteer
    from continuity.waves import WaveRunner

    estate = tmp_path / "estate"
    shutil.copytree(small_estate, estate)
    folder = tmp_path / "p"
    project = project_for(estate, f"sqlite:///{tmp_path / 'product.sqlite'}", folder)
    cache = folder / ".continuity" / "cache"

    def gazetteer() -> Gazetteer:
        found = WaveRunner(project, "all", dt.date(2026, 1, 1)).resources()
        (held,) = [v for k, v in found.items() if k.startswith("gazetteer:")]
        return held

    def built_none(*_: object) -> None:
        raise AssertionError("the gazetteer was built again")

    built = gazetteer()
    (kept,) = cache.glob("gazetteer-*.pickle")
    lines = ["12 Church Road", "Manchester", "M3 7BE"]
    with monkeypatch.context() as m:
        m.setattr(Gazetteer, "add", built_none)
        again = gazetteer()
        assert len(again) == len(built) > 1000
        assert again.resolve(lines) == built.resolve(lines)
        with (estate / "gazetteer.csv").open("a", encoding="utf-8") as f:
            f.write("099999999999,,12,Church Road,,Manchester,M3 7BE,387000,404000\n")
        with pytest.raises(AssertionError, match="built again"):
            gazetteer()
    changed = gazetteer()
    assert len(changed) == len(built) + 1
    assert changed.resolve(lines).match is not None
    (now,) = cache.glob("gazetteer-*.pickle")  # the old file's is gone
    assert now != kept
    now.write_bytes(b"not a pickle")
    assert len(gazetteer()) == len(changed)
    monkeypatch.setenv("CONTINUITY_CACHE", "off")
    shutil.rmtree(cache)
    assert len(gazetteer()) == len(changed)
    assert not cache.exists()


def test_status_says_what_became_of_each_run(small_estate: Path, tmp_path: Path) -> None:
    from continuity.rollback import rollback_wave
    from continuity.runs import wave_status

    target = new_target(f"sqlite:///{tmp_path / 'product.sqlite'}")
    project = project_for(small_estate, target, tmp_path / "p")
    assert "never run" in wave_status(project)
    run_wave(project, "all")
    assert "finished" in wave_status(project)
    rollback_wave(project, "all")
    assert "rolled back" in wave_status(project)


def test_two_entities_reading_one_table_must_name_their_reads_apart(tmp_path: Path) -> None:
    from continuity.domain.errors import MappingError
    from continuity.waves import plan_steps
    from mappings.spec import load_mappings

    files = []
    for entity in ("thing", "other"):
        path = tmp_path / f"{entity}.yml"
        path.write_text(
            f"version: 1\nentity: {entity}\nsources:\n  - source: legacy\n    table: T\n"
            "    key: [REF]\n    fields:\n      out: A\n",
            encoding="utf-8",
        )
        files.append(path)
    expected = r"other.yml:4: sources.0: legacy\.T is also read by the thing mapping"
    with pytest.raises(MappingError, match=expected):
        plan_steps(load_mappings(files))


def test_a_wave_into_staging_files_applied_by_the_vendor_reconciles_clean(
    small_estate: Path, tmp_path: Path
) -> None:
    """The staging loader: the wave writes files and a manifest; applied in manifest order to
    the product (as a vendor's importer would), the product reconciles clean."""
    from continuity.loaders.sql import SqlLoader
    from continuity.loaders.staging import apply_staging, read_manifest

    folder = tmp_path / "p"
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns(".continuity"))
    text = (folder / "continuity.yml").read_text()
    text = text.replace(
        "  loader: sql\n  url: ${CONTINUITY_TARGET:-sqlite:///../../out/product.sqlite}",
        "  loader: staging\n  path: ${CONTINUITY_STAGING}",
    )
    (folder / "continuity.yml").write_text(text)
    staging = tmp_path / "staging"
    project = load_project(
        folder, {"CONTINUITY_ESTATE": str(small_estate), "CONTINUITY_STAGING": str(staging)}
    )
    summary = run_wave(project, "all")
    assert summary.entities["event"].loaded > 0
    assert read_manifest(staging).entries
    target = new_target(f"sqlite:///{tmp_path / 'product.sqlite'}")
    loader = SqlLoader(target, target_schema.metadata)
    try:
        loader.prepare()
        assert apply_staging(staging, loader) > 0
    finally:
        loader.close()
    assert_judged_clean(small_estate, target)


def test_a_finish_the_ledger_never_heard_of_is_recovered(
    small_estate: Path, tmp_path: Path
) -> None:
    """Killed between the wave's finished checkpoint and its ledger entry: the next run of the
    wave writes the finish into the ledger, and status no longer calls that run interrupted."""
    from continuity.loaders.sql import SqlLoader

    target = new_target(f"sqlite:///{tmp_path / 'product.sqlite'}")
    folder = tmp_path / "p"
    project = project_for(small_estate, target, folder)
    ledger = AuditLedger(project.ledger)
    ledger.append("run-started", {"journal": False}, "lost-1", "all")
    ledger.close()
    loader = SqlLoader(target, target_schema.metadata)
    loader.prepare()
    with loader.transaction() as tx:
        tx.set_checkpoint("wave:all", {"run_id": "lost-1", "finished": True})
    loader.close()
    run_wave(project, "all")
    ledger = AuditLedger(project.ledger)
    try:
        states = {r.run_id: r.state for r in runs(ledger)}
        assert ledger.verify() >= 4
    finally:
        ledger.close()
    assert states["lost-1"] == "finished (recovered)"
    assert sorted(states.values()) == ["finished", "finished (recovered)"]


@pytest.mark.parametrize("processes", ["1", "2"])
def test_a_lookup_that_cannot_be_read_stops_the_run_in_one_line(
    small_estate: Path, tmp_path: Path, processes: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lookups are read aside while change detection reads the sources (two processes)
    or in the run's own process (one): a relation the database refuses stops the run either
    way, before anything is written, in one line naming it."""
    monkeypatch.setenv("CONTINUITY_PROCESSES", processes)
    target = new_target(f"sqlite:///{tmp_path / 'product.sqlite'}")
    folder = tmp_path / "project"
    project_for(small_estate, target, folder)
    person = folder / "mappings" / "person.yml"
    person.write_text(
        person.read_text(encoding="utf-8").replace("JOIN pw_location l", "JOIN pw_nowhere l"),
        encoding="utf-8",
    )
    before = digests(target)
    result = CliRunner().invoke(
        main,
        ["run", "all", "-p", str(folder), "--no-search-index"],
        env={"CONTINUITY_ESTATE": str(small_estate), "CONTINUITY_TARGET": target},
    )
    assert result.exit_code == 2, result.output
    (line,) = [x for x in result.output.splitlines() if x.startswith("error:")]
    assert "pw_nowhere" in line
    assert digests(target) == before
