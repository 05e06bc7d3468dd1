"""`continuity reconcile` and `continuity accept` from the command line, on the small estate."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from click.testing import CliRunner

from continuity.cli import main


def reconcile(estate: Path, store: str, *extra: str) -> tuple[int, str]:
    """Run `continuity reconcile --estate ESTATE --store STORE ...`; return status and stdout."""
    result = CliRunner().invoke(
        main, ["reconcile", "--estate", str(estate), "--store", store, *extra]
    )
    return result.exit_code, result.stdout


def test_exit_0_on_the_ideal_target_and_1_on_the_damaged_one(
    small_estate: Path, tmp_path: Path
) -> None:
    store = f"sqlite:///{tmp_path / 'work.sqlite'}"
    status, stdout = reconcile(small_estate, store)
    assert status == 0, stdout
    assert "CLEAN: 0 exception(s)" in stdout
    assert "firearms_persons (critical" in stdout
    out = tmp_path / "r.json"
    status, stdout = reconcile(small_estate, store, "--damaged", "--json", str(out))
    assert status == 1, stdout
    assert "NOT CLEAN" in stdout and "MISSING" in stdout
    doc = json.loads(out.read_text())
    assert doc["clean"] is False
    crimes = next(c for c in doc["classes"] if c["class"] == "crimes")
    assert any(f["placement"] == "DUPLICATED" for f in crimes["findings"])


def test_a_critical_exception_blocks_until_accepted(small_estate: Path, tmp_path: Path) -> None:
    estate = tmp_path / "e"
    shutil.copytree(small_estate, estate)  # the work store is written beside the estate
    manifest = estate / "estate.json"
    manifest.write_text(manifest.read_text().replace(str(small_estate), str(estate)))
    runner = CliRunner()
    args = ["reconcile", "--estate", str(estate), "--damaged", "--class", "firearms_locations"]
    first = runner.invoke(main, [*args, "--json", str(tmp_path / "a.json")])
    assert first.exit_code == 1
    findings = json.loads((tmp_path / "a.json").read_text())["classes"][0]["findings"]
    blocking = [
        f for f in findings if f["placement"] in ("MISSING",) or f["integrity"] == "ALTERED"
    ]
    assert blocking
    for f in blocking:
        refused = runner.invoke(
            main,
            ["accept", "firearms_locations", f["key"], "--estate", str(estate), "--reason", " "],
        )
        assert refused.exit_code == 2 and "needs a reason" in refused.stderr
        ok = runner.invoke(
            main,
            [
                "accept",
                "firearms_locations",
                f["key"],
                "--estate",
                str(estate),
                "--reason",
                "premises surrendered its certificate; confirmed with licensing",
                "--ledger",
                f"sqlite:///{tmp_path / 'ledger.sqlite'}",
            ],
        )
        assert ok.exit_code == 0, ok.output
    # Each acceptance is in the audit ledger too: hash-chained, append-only.
    from continuity.ledger import AuditLedger

    audit = AuditLedger(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    try:
        assert audit.verify() == len(blocking)
        entries = [e.payload for e in audit.entries("acceptance")]
    finally:
        audit.close()
    assert sorted(e["key"] for e in entries) == sorted(f["key"] for f in blocking)
    assert all(e["class"] == "firearms_locations" and "licensing" in e["reason"] for e in entries)
    again = runner.invoke(main, args)
    assert again.exit_code == 0, again.output
    twice = runner.invoke(
        main,
        [
            "accept",
            "firearms_locations",
            blocking[0]["key"],
            "--estate",
            str(estate),
            "--reason",
            "x",
        ],
    )
    assert twice.exit_code == 2 and "already accepted" in twice.stderr
    # The accepted record then fares worse: its warning is lost. The acceptance covered the
    # finding as it was, not this one: the class blocks again.
    import sqlite3

    altered = next(f for f in blocking if f["integrity"] == "ALTERED")
    with sqlite3.connect(estate / "target_defects.sqlite") as conn:
        (warning,) = conn.execute(
            "SELECT target_key FROM migration_crosswalk WHERE source_key = ?", (altered["key"],)
        ).fetchone()
        conn.execute("DELETE FROM migration_crosswalk WHERE target_key = ?", (warning,))
        conn.execute("DELETE FROM warning_marker WHERE warning_id = ?", (warning,))
    worse = runner.invoke(main, args)
    assert worse.exit_code == 1 and "MISSING" in worse.stdout


def test_accepting_a_record_that_is_not_a_finding_is_refused(
    small_estate: Path, tmp_path: Path
) -> None:
    store = f"sqlite:///{tmp_path / 'work.sqlite'}"
    runner = CliRunner()
    runner.invoke(
        main, ["reconcile", "--estate", str(small_estate), "--store", store, "--class", "crimes"]
    )
    result = runner.invoke(main, ["accept", "crimes", "NOPE", "--store", store, "--reason", "r"])
    assert result.exit_code == 2
    assert "not a finding of the last reconciliation" in result.stderr


def test_an_unknown_class_is_named(small_estate: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        [
            "reconcile",
            "--estate",
            str(small_estate),
            "--class",
            "crimez",
            "--store",
            f"sqlite:///{tmp_path / 'w.sqlite'}",
        ],
    )
    assert result.exit_code == 2 and "unknown class 'crimez'" in result.stderr


def test_only_critical_classes_take_acceptances(small_estate: Path, tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'work.sqlite'}"
    reconcile(
        small_estate, store, "--damaged", "--class", "crimes", "--json", str(tmp_path / "c.json")
    )
    findings = json.loads((tmp_path / "c.json").read_text())["classes"][0]["findings"]
    missing = next(f for f in findings if f["placement"] == "MISSING")
    result = CliRunner().invoke(
        main, ["accept", "crimes", missing["key"], "--store", store, "--reason", "r"]
    )
    assert result.exit_code == 2 and "not a critical class" in result.stderr


def test_a_wave_reads_only_its_records(small_estate: Path, tmp_path: Path) -> None:
    """Division 1's rehearsal wave: the crimes class reads division 1 only, and is clean."""
    import sqlite3

    store = f"sqlite:///{tmp_path / 'work.sqlite'}"
    out = tmp_path / "w.json"
    status, stdout = reconcile(
        small_estate, store, "--class", "crimes", "--wave", "division-1", "--json", str(out)
    )
    assert status == 0, stdout
    assert "wave division-1" in stdout
    (crimes,) = json.loads(out.read_text())["classes"]
    read = {s["system"]: s["source"] for s in crimes["source_identity"]}
    with sqlite3.connect(small_estate / "legacy.sqlite") as conn:
        (legacy,) = conn.execute('SELECT COUNT(*) FROM "CRIME" WHERE "DIVISION" = 1').fetchone()
    with sqlite3.connect(small_estate / "policeworks.sqlite") as conn:
        (pw,) = conn.execute("SELECT COUNT(*) FROM pw_occurrence WHERE division = 1").fetchone()
    assert read == {"legacy": legacy, "policeworks": pw} and legacy + pw > 0
    status, _ = reconcile(small_estate, store, "--wave", "no-such-wave")
    assert status == 2
