"""Validation wired into waves and the CLI, on the estate.

- A row-level failure on a source quarantines exactly the rows GX found, with the expectation as
  reason (sources on SQLite, PostgreSQL and MariaDB); the rest of the table migrates.
- A table-level critical failure stops the wave before anything is loaded.
- A critical failure on the target marks the run failed (exit 1).
- ``continuity validate`` with the bundled suites passes the ideal target and fails the damaged
  one; every finding and the keys of unexpected rows are in the ledger.
- ``continuity validate --profile`` shows a legacy table's formats and placeholders.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, inspect, text

from continuity import target_schema
from continuity.cli import main
from continuity.db import create_tables
from continuity.domain.errors import ConfigError, ValidationError
from continuity.ledger import AuditLedger
from continuity.project import Project, load_project
from continuity.waves import run_wave

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "gmp"

GENDER_SUITES = {
    "pw.yml": """\
version: 1
side: source
source: policeworks
table: pw_person
key: [person_id]
expectations:
  - expect: expect_column_values_to_be_in_set
    column: gender
    value_set: [M, F]
    severity: quarantine
""",
    "legacy.yml": """\
version: 1
side: source
source: legacy
table: NOMINAL
key: [NOMINAL_REF]
expectations:
  - expect: expect_column_values_to_be_in_set
    column: SEX
    value_set: [M, F]
    severity: quarantine
""",
}


def new_target(url: str) -> str:
    engine = create_engine(url)
    create_tables(engine, target_schema.metadata)
    engine.dispose()
    return url


def project_with(
    estate: Path,
    target: str,
    folder: Path,
    suites: dict[str, str] | None = None,
    sources: dict[str, str] | None = None,
) -> Project:
    """The bundled project copied to ``folder``; its suites replaced by ``suites`` if given."""
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns(".continuity"))
    if suites is not None:
        shutil.rmtree(folder / "suites")
        (folder / "suites").mkdir()
        for name, body in suites.items():
            (folder / "suites" / name).write_text(body, encoding="utf-8")
    return load_project(folder, env(estate, target, sources))


def env(estate: Path, target: str, sources: dict[str, str] | None = None) -> dict[str, str]:
    out = {"CONTINUITY_ESTATE": str(estate), "CONTINUITY_TARGET": target}
    for system, url in (sources or {}).items():
        out[f"CONTINUITY_{system.upper()}_URL"] = url
    return out


def rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql))]
    finally:
        engine.dispose()


@pytest.fixture(
    scope="module",
    params=[
        "sqlite",
        pytest.param("postgresql", marks=pytest.mark.postgres),
        pytest.param("mariadb", marks=pytest.mark.mariadb),
    ],
)
def estate_on(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, dict[str, str]]]:
    """A small estate whose source systems are on the parameter's database: PoliceWorks on
    PostgreSQL (the bundled project reads the legacy system's upper-case names on SQLite and
    MariaDB), both on MariaDB."""
    from continuity.estate.generate import EstateOptions, generate_estate

    out = tmp_path_factory.mktemp(request.param) / "e"
    sources: dict[str, str] = {}
    if request.param != "sqlite":
        fixture = f"{'pg' if request.param == 'postgresql' else 'mariadb'}_database_for_module"
        new_database = request.getfixturevalue(fixture)
        sources = {"policeworks": new_database()}
        if request.param == "mariadb":
            sources["legacy"] = new_database()
    generate_estate(
        EstateOptions(
            out=out,
            persons=400,
            seed=5,
            processes=1,
            legacy_url=sources.get("legacy"),
            policeworks_url=sources.get("policeworks"),
        )
    )
    info = json.loads((out / "estate.json").read_text())
    yield (
        out,
        {"legacy": info["databases"]["legacy"], "policeworks": info["databases"]["policeworks"]},
    )


def test_a_row_level_failure_quarantines_exactly_those_rows(
    estate_on: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    estate, sources = estate_on
    target = new_target(f"sqlite:///{tmp_path / 'product.sqlite'}")
    project = project_with(estate, target, tmp_path / "p", GENDER_SUITES, sources)
    summary = run_wave(project, "all")

    unknown = {
        ("policeworks", "pw_person"): {
            r[0]
            for r in rows(
                sources["policeworks"], "SELECT person_id FROM pw_person WHERE gender = 'U'"
            )
        },
        ("legacy", "NOMINAL"): {
            r[0] for r in rows(sources["legacy"], "SELECT NOMINAL_REF FROM NOMINAL WHERE SEX = 'U'")
        },
    }
    assert all(unknown.values()), "the estate has persons of unknown gender"
    for (system, table), keys in unknown.items():
        quarantined = {
            k: reason
            for k, reason in rows(
                target,
                "SELECT source_key, reason FROM migration_quarantine "
                f"WHERE source_system = '{system}' AND source_table = '{table}'",
            )
        }
        by_validation = {k for k, r in quarantined.items() if r.startswith("validation:")}
        assert by_validation == keys
        reason = quarantined[next(iter(keys))]
        assert "expect_column_values_to_be_in_set" in reason and ".yml:" in reason
        migrated = {
            r[0]
            for r in rows(
                target,
                "SELECT source_key FROM migration_crosswalk "
                f"WHERE source_system = '{system}' AND source_table = '{table}'",
            )
        }
        assert not migrated & keys
        assert migrated, "the rest of the table migrates"
    assert summary.validation["source"]["quarantined_rows"] == sum(map(len, unknown.values()))
    ledger = AuditLedger(project.ledger)
    try:
        (entry,) = [e for e in ledger.entries("validation") if e.payload["side"] == "source"]
    finally:
        ledger.close()
    assert entry.run_id == summary.run_id
    assert entry.payload["counts"]["quarantined_rows"] == sum(map(len, unknown.values()))
    stored = rows(project.ledger, "SELECT source_table, record_key FROM validation_unexpected")
    assert {(t, json.loads(k)[0]) for t, k in stored} == {
        (table, key) for (_, table), keys in unknown.items() for key in keys
    }


def test_a_deltas_warnings_judge_only_the_rows_it_migrates(
    estate_on: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """Given the rows a delta migrates, the row-level warnings judge those rows alone (a key
    with a quote in it is a literal like any other); criticals judge every row."""
    from continuity.validation import run_validation

    estate, urls = estate_on
    target = new_target(f"sqlite:///{tmp_path / 'p.sqlite'}")
    project = project_with(estate, target, tmp_path / "project", sources=urls)
    (nominals,) = rows(urls["legacy"], "SELECT COUNT(*) FROM NOMINAL")[0]
    picked = [r[0] for r in rows(urls["legacy"], "SELECT NOMINAL_REF FROM NOMINAL")[:3]]
    persons = [r[0] for r in rows(urls["policeworks"], "SELECT person_id FROM pw_person")[:2]]
    done = run_validation(
        project,
        "source",
        ledger=False,
        rows={
            ("legacy", "NOMINAL"): ("NOMINAL_REF", [*picked, "O'Brien"]),
            ("policeworks", "pw_person"): ("person_id", persons),
        },
    )
    assert done is not None
    result = done.result
    assert result.scope == {"legacy.NOMINAL": 4, "policeworks.pw_person": 2}
    judged = {
        (f.table, f.severity, f.row_level): f.outcome.element_count
        for f in result.findings
        if f.table in ("NOMINAL", "pw_person") and f.outcome.element_count is not None
    }
    assert judged[("NOMINAL", "warning", True)] == 3  # O'Brien is no nominal
    assert judged[("NOMINAL", "critical", True)] == nominals  # uniqueness: the whole table
    assert judged[("pw_person", "warning", True)] == 2
    other = next(f for f in result.findings if f.table == "CRIME" and f.severity == "warning")
    assert other.outcome.element_count is not None and other.outcome.element_count > 3


@pytest.mark.parametrize("processes", ["1", "2"])
def test_a_table_level_critical_failure_stops_the_wave_with_nothing_loaded(
    estate_on: tuple[Path, dict[str, str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    processes: str,
) -> None:
    """PoliceWorks' persons are on the parameter's database: its count stops the wave, whether
    the sources are validated in the run's own process or aside (while persons resolve)."""
    monkeypatch.setenv("CONTINUITY_PROCESSES", processes)
    estate, sources = estate_on
    suite = GENDER_SUITES["pw.yml"].replace(
        "  - expect: expect_column_values_to_be_in_set\n    column: gender\n"
        "    value_set: [M, F]\n    severity: quarantine\n",
        "  - expect: expect_table_row_count_to_be_between\n    max_value: 10\n"
        "    severity: critical\n",
    )
    target = new_target(f"sqlite:///{tmp_path / 'product.sqlite'}")
    project = project_with(estate, target, tmp_path / "p", {"pw.yml": suite}, sources)
    with pytest.raises(ValidationError) as caught:
        run_wave(project, "all")
    message = str(caught.value)
    assert "stopped before loading" in message
    assert "pw.yml:7: expect_table_row_count_to_be_between on pw_person failed" in message
    for table in ("person", "event", "migration_crosswalk", "migration_quarantine"):
        assert rows(target, f"SELECT COUNT(*) FROM {table}") == [(0,)]
    ledger = AuditLedger(project.ledger)
    try:
        kinds = [e.kind for e in ledger.entries()]
        (entry,) = list(ledger.entries("validation"))
    finally:
        ledger.close()
    assert kinds == ["validation", "run-refused"]  # no run started
    # Persons were resolved meanwhile (aside) but their review list waited for the verdict.
    store = create_engine(project.ledger)
    try:
        if inspect(store).has_table("person_review"):
            assert rows(project.ledger, "SELECT COUNT(*) FROM person_review") == [(0,)]
    finally:
        store.dispose()
    from continuity.runs import wave_status

    status = wave_status(project)
    assert "refused (validation)" in status and "stopped before loading" in status
    assert entry.payload["ok"] is False


def test_the_sources_are_validated_aside_while_persons_resolve(
    small_estate: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With two processes the source suites run in a process of their own (their verdict and
    its quarantine the same); the run's phase is the time it waited, the summary says how long
    the validation took."""
    from continuity.waves import WaveRunner

    monkeypatch.setenv("CONTINUITY_PROCESSES", "2")
    ran_in = tmp_path / "pid"
    own = WaveRunner._run_source_suites

    def noting(self: WaveRunner, *args: Any) -> Any:
        ran_in.write_text(str(os.getpid()))
        return own(self, *args)

    monkeypatch.setattr(WaveRunner, "_run_source_suites", noting)
    target = new_target(f"sqlite:///{tmp_path / 'product.sqlite'}")
    project = project_with(small_estate, target, tmp_path / "p", GENDER_SUITES)
    summary = run_wave(project, "all")
    assert int(ran_in.read_text()) != os.getpid()
    source = summary.validation["source"]
    assert source["ok"] is True and source["seconds"] > 0
    assert summary.phases["source validation"] >= 0
    # the suites quarantined exactly their rows all the same
    unknown = rows(
        f"sqlite:///{small_estate / 'policeworks.sqlite'}",
        "SELECT person_id FROM pw_person WHERE gender = 'U'",
    )
    assert unknown
    assert sorted(unknown) == rows(
        target,
        "SELECT source_key FROM migration_quarantine WHERE source_table = 'pw_person' "
        "AND reason LIKE 'validation:%' ORDER BY source_key",
    )
    # The suites hold back person records: resolution waited for them and left those out,
    # as it does validating in the run's own process.
    monkeypatch.setenv("CONTINUITY_PROCESSES", "1")
    alone = new_target(f"sqlite:///{tmp_path / 'alone.sqlite'}")
    one = run_wave(project_with(small_estate, alone, tmp_path / "q", GENDER_SUITES), "all")
    records = summary.resolution["person"]["records"]
    assert records == one.resolution["person"]["records"]
    (persons,) = rows(
        f"sqlite:///{small_estate / 'policeworks.sqlite'}", "SELECT COUNT(*) FROM pw_person"
    )
    (nominals,) = rows(
        f"sqlite:///{small_estate / 'legacy.sqlite'}", "SELECT COUNT(*) FROM NOMINAL"
    )
    assert records <= persons[0] + nominals[0] - len(unknown)
    crosswalk = "SELECT * FROM migration_crosswalk ORDER BY 1, 2, 3, 4, 5"
    assert rows(target, crosswalk) == rows(alone, crosswalk)


def _dies(*_: Any) -> None:
    os._exit(9)


def test_a_validation_process_that_dies_stops_the_wave_in_one_line(
    small_estate: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from continuity.domain.errors import ContinuityError
    from continuity.waves import WaveRunner

    monkeypatch.setenv("CONTINUITY_PROCESSES", "2")
    monkeypatch.setattr(WaveRunner, "_run_source_suites", _dies)
    target = new_target(f"sqlite:///{tmp_path / 'product.sqlite'}")
    project = project_with(small_estate, target, tmp_path / "p", GENDER_SUITES)
    with pytest.raises(ContinuityError, match=r"source validation: its process died") as raised:
        run_wave(project, "all")
    assert "\n" not in str(raised.value)
    assert rows(target, "SELECT COUNT(*) FROM person") == [(0,)]


LINK_SUITE = """\
version: 1
side: target
table: person_dob
key: [person_id, dob]
expectations:
  - expect: expect_column_values_to_reference_existing_rows
    column: person_id
    referenced_table: person
    referenced_column: person_id
    severity: critical
"""


def test_a_deltas_reference_judges_the_rows_it_wrote_and_those_naming_rows_it_removed(
    small_estate: Path, tmp_path: Path
) -> None:
    """A row's reference can only have broken if the delta wrote the row or removed the row
    it names: those are judged, by the values they hold; no other row is."""
    from continuity.validation import TargetChanges, run_validation

    target = new_target(f"sqlite:///{tmp_path / 'product.sqlite'}")
    project = project_with(small_estate, target, tmp_path / "p", {"t.yml": LINK_SUITE})
    engine = create_engine(target)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO person (person_id, surname, dob_estimated, gender_code, "
                "record_origin) VALUES ('p1', 'A', 0, 'M', 'x'), ('p2', 'B', 0, 'F', 'x')"
            )
        )
        for person, day in (("p1", 1), ("p2", 2), ("written", 3), ("removed", 4), ("other", 5)):
            conn.execute(
                text(f"INSERT INTO person_dob VALUES ('{person}', '2000-01-0{day}', 0, 'x')")
            )
    engine.dispose()

    def judged(changed: TargetChanges | None) -> tuple[int, int, dict[str, int]]:
        done = run_validation(project, "target", ledger=False, changed=changed)
        assert done is not None
        (finding,) = done.result.findings
        outcome = finding.outcome
        return outcome.element_count or 0, outcome.unexpected_count or 0, done.result.scope

    def changes(keyed: bool = True, tables: tuple[str, ...] = ("person", "person_dob")) -> Any:
        return TargetChanges(
            written={"person_dob": {"person_id": {"p1", "written"}}},
            removed={"person": {"removed"}},
            keyed_by={"person": "person_id"} if keyed else {},
            tables=tables,
        )

    # the rows written, and the row naming a removed person: 'other' was judged before
    assert judged(changes()) == (3, 2, {"target.person_dob.person_id": 3})
    assert judged(None) == (5, 3, {})  # a full run's: every row
    # a referenced column not the other table's key: an update may have changed it
    assert judged(changes(keyed=False)) == (5, 3, {})
    # a table the run does not write: only the rows written can have broken
    assert judged(changes(tables=("person_dob",))) == (2, 1, {"target.person_dob.person_id": 2})


@pytest.mark.parametrize(("processes", "journal"), [("1", "wal"), ("2", "wal"), ("2", "delete")])
def test_a_critical_failure_on_the_target_fails_the_run(
    small_estate: Path,
    tmp_path: Path,
    processes: str,
    journal: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Whether the target is validated in the run's own process or, with two, in the one that
    validated the sources (while the run finishes; after it, where the finishing transaction
    would lock the suites' reads out: SQLite not in WAL mode)."""
    import continuity.validation as validation

    suite = """\
version: 1
side: target
table: person
key: [person_id]
expectations:
  - expect: expect_table_row_count_to_be_between
    max_value: 10
    severity: critical
"""
    record = tmp_path / "validated_in.txt"
    original = validation.run_validation

    def noted(project: Any, side: str, **kwargs: Any) -> Any:
        with record.open("a") as out:  # (a forked process's list would not come back)
            out.write(f"{side} {os.getpid()}\n")
        return original(project, side, **kwargs)

    monkeypatch.setattr(validation, "run_validation", noted)
    target = new_target(f"sqlite:///{tmp_path / 'product.sqlite'}")
    folder = tmp_path / "p"
    project_with(
        small_estate,
        target,
        folder,
        {"target.yml": suite, "legacy.yml": GENDER_SUITES["legacy.yml"]},
    )
    project_file = folder / "continuity.yml"
    project_file.write_text(
        project_file.read_text(encoding="utf-8").replace(
            "  loader: sql\n", f"  loader: sql\n  options: {{journal_mode: {journal}}}\n"
        ),
        encoding="utf-8",
    )
    result = CliRunner().invoke(
        main,
        ["run", "all", "-p", str(folder), "--no-search-index"],
        env={**env(small_estate, target), "CONTINUITY_PROCESSES": processes},
    )
    validated_in = [
        (side, int(pid)) for side, pid in map(str.split, record.read_text().split("\n")[:-1])
    ]
    assert [side for side, _ in validated_in] == ["source", "target"]
    (_, source_pid), (_, target_pid) = validated_in
    if processes == "1":
        assert source_pid == target_pid == os.getpid()
    else:  # the process that validated the sources, waiting since, validated the target
        assert source_pid == target_pid != os.getpid()
    assert result.exit_code == 1, result.output
    assert rows(target, "PRAGMA journal_mode")[0][0] == journal
    assert "run failed: target validation:" in result.output
    assert rows(target, "SELECT COUNT(*) FROM person")[0][0] > 10  # loaded, but failed
    project = load_project(folder, env(small_estate, target))
    ledger = AuditLedger(project.ledger)
    try:
        (finished,) = list(ledger.entries("run-finished"))
    finally:
        ledger.close()
    assert finished.payload["failed"].startswith("target validation:")
    from continuity.runs import wave_status

    assert "loaded, failed validation" in wave_status(project)
    # --no-validate skips the suites: the same run passes
    result = CliRunner().invoke(
        main,
        ["run", "all", "-p", str(folder), "--no-search-index", "--no-validate"],
        env=env(small_estate, target),
    )
    assert result.exit_code == 0, result.output


def test_validate_passes_the_ideal_target_and_fails_the_damaged_one(
    small_estate: Path, tmp_path: Path
) -> None:
    ideal = f"sqlite:///{small_estate / 'target.sqlite'}"
    damaged = f"sqlite:///{small_estate / 'target_defects.sqlite'}"
    folder = tmp_path / "p"
    project_with(small_estate, ideal, folder)
    runner = CliRunner()
    good = runner.invoke(
        main,
        ["validate", "-p", str(folder), "--json", str(tmp_path / "v.json")],
        env=env(small_estate, ideal),
    )
    assert good.exit_code == 0, good.output
    assert "Result: OK" in good.output
    found = json.loads((tmp_path / "v.json").read_text())
    # the estate's quirks are expected warnings
    warned = {
        (f["table"], f["expectation"]) for f in found["source"]["findings"] if not f["success"]
    }
    assert ("NOMINAL", "expect_column_values_to_match_regex") in warned  # PNC placeholders
    # each expectation's time is kept; the slowest of each side are named
    for side in ("source", "target"):
        timed = sorted(found[side]["findings"], key=lambda f: -f["seconds"])
        assert timed[0]["seconds"] > 0
        assert sum(f["seconds"] for f in timed) <= found[side]["seconds"]
        tops = [f for f in timed if f["seconds"] >= timed[0]["seconds"] - 0.002]  # (rounded)
        named = [f"Slowest: {f['source'] + '.' if f['source'] else ''}{f['table']}" for f in tops]
        assert any(n in good.output for n in named), good.output
    assert all(
        f["severity"] == "warning"
        for s in found.values()
        for f in s["findings"]
        if not f["success"]
    )
    bad = runner.invoke(
        main,
        ["validate", "-p", str(folder), "--side", "target", "--target", damaged],
        env=env(small_estate, ideal),
    )
    assert bad.exit_code == 1, bad.output
    assert (
        "FAILED  critical   event.crime_reference: expect_column_values_to_be_unique" in bad.output
    )
    project = load_project(folder, env(small_estate, ideal))
    ledger = AuditLedger(project.ledger)
    try:
        entries = list(ledger.entries("validation"))
    finally:
        ledger.close()
    assert [(e.payload["side"], e.payload["ok"]) for e in entries] == [
        ("source", True),
        ("target", True),
        ("target", False),
    ]
    unexpected = sum(
        f["unexpected_count"] or 0
        for f in found["source"]["findings"] + found["target"]["findings"]
        if f["row_level"] and not f["success"]
    )
    stored = rows(
        project.ledger,
        "SELECT COUNT(*) FROM validation_unexpected "
        f"WHERE validation_id IN ('{entries[0].payload['validation_id']}', "
        f"'{entries[1].payload['validation_id']}')",
    )
    assert stored == [(unexpected,)]


def test_profile_shows_formats_placeholders_and_codes(small_estate: Path, tmp_path: Path) -> None:
    folder = tmp_path / "p"
    ideal = f"sqlite:///{small_estate / 'target.sqlite'}"
    project_with(small_estate, ideal, folder)
    out = tmp_path / "profile.json"
    result = CliRunner().invoke(
        main,
        [
            "validate",
            "-p",
            str(folder),
            "--profile",
            "legacy",
            "--table",
            "NOMINAL",
            "--json",
            str(out),
        ],
        env=env(small_estate, ideal),
    )
    assert result.exit_code == 0, result.output
    (table,) = json.loads(out.read_text())
    columns = {c["column"]: c for c in table["columns"]}
    assert (
        table["rows"]
        == rows(f"sqlite:///{small_estate / 'legacy.sqlite'}", "SELECT COUNT(*) FROM NOMINAL")[0][0]
    )
    assert {"99/99/99", "99-AAA-9999"} <= set(columns["DOB"]["shapes"])
    assert "UNKNOWN" in columns["PNC_ID"]["placeholders"]
    assert set(columns["SEX"]["coded_values"]) == {"M", "F", "U"}
    assert "DOB" in result.output and "placeholders" in result.output


def test_a_quarantine_expectation_that_cannot_run_stops_the_wave(
    small_estate: Path, tmp_path: Path
) -> None:
    """A column gone: the rows it should quarantine cannot be named, so none may load."""
    suite = GENDER_SUITES["legacy.yml"].replace("column: SEX", "column: SEXX")
    target = new_target(f"sqlite:///{tmp_path / 'product.sqlite'}")
    project = project_with(small_estate, target, tmp_path / "p", {"legacy.yml": suite})
    with pytest.raises(ValidationError, match=r"stopped before loading: .*SEXX"):
        run_wave(project, "all")
    assert rows(target, "SELECT COUNT(*) FROM person") == [(0,)]


def test_a_quarantine_suite_keyed_unlike_the_mappings_is_refused(
    small_estate: Path, tmp_path: Path
) -> None:
    suite = GENDER_SUITES["legacy.yml"].replace("key: [NOMINAL_REF]", "key: [SURNAME]")
    target = new_target(f"sqlite:///{tmp_path / 'product.sqlite'}")
    project = project_with(small_estate, target, tmp_path / "p", {"legacy.yml": suite})
    with pytest.raises(ConfigError, match=r"legacy.yml:5: key: \['SURNAME'\] is not how"):
        run_wave(project, "all")


def test_an_unreachable_database_is_an_error_not_a_finding(
    small_estate: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "p"
    ideal = f"sqlite:///{small_estate / 'target.sqlite'}"
    project_with(small_estate, ideal, folder)
    environment = {
        **env(small_estate, ideal),
        "CONTINUITY_LEGACY_URL": f"sqlite:///{tmp_path / 'nowhere.sqlite'}",
    }
    result = CliRunner().invoke(main, ["validate", "-p", str(folder)], env=environment)
    assert result.exit_code == 2, result.output
    assert "nowhere.sqlite" in result.output
    assert not (tmp_path / "nowhere.sqlite").exists()


def test_validate_with_a_staging_target_validates_the_sources_and_says_why_not_the_target(
    small_estate: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "p"
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns(".continuity"))
    text = (folder / "continuity.yml").read_text()
    (folder / "continuity.yml").write_text(
        text.replace(
            "  loader: sql\n  url: ${CONTINUITY_TARGET:-sqlite:///../../out/product.sqlite}",
            "  loader: staging\n  path: staging",
        )
    )
    result = CliRunner().invoke(
        main, ["validate", "-p", str(folder)], env={"CONTINUITY_ESTATE": str(small_estate)}
    )
    assert result.exit_code == 0, result.output
    assert "its suites need --target URL" in result.output
    assert "Validation of the source" in result.output
    assert "Validation of the target" not in result.output
