"""`continuity estate evolve`: a live estate's inserts, updates and deletions, written into every
database so that the evolved sources and the evolved ideal target still reconcile."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, insert, select, text

from continuity.cli import main
from continuity.estate.evolve import Evolution, chunk_at, evolve_estate
from continuity.estate.generate import (
    METADATA,
    EstateOptions,
    _chunks,
    estate_digests,
    generate_estate,
)
from continuity.estate.index import ChunkIndex
from continuity.estate.render import render_ideal, render_legacy, render_policeworks, render_truth

PERSONS = 2500
SEED = 11


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("evolve") / "estate"
    generate_estate(EstateOptions(out=out, persons=PERSONS, seed=SEED, processes=1))
    return out


def _copy(src: Path, dst: Path) -> Path:
    """A copy of an estate whose manifest names the copy's databases."""
    shutil.copytree(src, dst)
    manifest = dst / "estate.json"
    info = json.loads(manifest.read_text())
    info["databases"] = {
        side: url.replace(str(src.resolve()), str(dst.resolve()))
        for side, url in info["databases"].items()
    }
    manifest.write_text(json.dumps(info))
    return dst


def _urls(out: Path) -> dict[str, str]:
    return {k: v for k, v in EstateOptions(out=out).urls().items() if k != "damaged"}


@pytest.fixture(scope="module")
def evolved(generated: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    out = _copy(generated, tmp_path_factory.mktemp("evolved") / "estate")
    summary = evolve_estate(out, 30, _urls(out), processes=1)
    return out, summary


def _rows(out: Path, side: str) -> dict[str, Counter[tuple[Any, ...]]]:
    engine = create_engine(_urls(out)[side])
    found: dict[str, Counter[tuple[Any, ...]]] = {}
    with engine.connect() as conn:
        for table in METADATA[side].sorted_tables:
            found[table.name] = Counter(tuple(r) for r in conn.execute(select(table)))
    engine.dispose()
    return found


def _reconcile(out: Path, *args: str) -> tuple[int, dict[str, Any]]:
    """Exit code and JSON report of ``continuity reconcile --estate out``."""
    report = out / "reconciliation.json"
    result = CliRunner().invoke(
        main,
        ["reconcile", "--estate", str(out), "--json", str(report), *args],
        env={"CONTINUITY_FINGERPRINT_KEY": "test"},
    )
    assert result.exit_code in (0, 1), result.output
    return result.exit_code, json.loads(report.read_text())


def test_every_kind_of_change_happens_and_nothing_else_moves(evolved: tuple[Path, Any]) -> None:
    _, summary = evolved
    events, changes = summary.events, summary.changes
    for kind in (
        "new_crimes",
        "outcomes",
        "warnings",
        "corrected_dobs",
        "deleted_duplicates",
        "intelligence",
        "intelligence_reviewed",
    ):
        assert events.get(kind, 0) > 0, kind
    pw, legacy = changes["policeworks"], changes["legacy"]
    # One row per new crime; an update per outcome and nothing else: untouched records render
    # exactly as before.
    assert pw["pw_occurrence"] == {
        "inserted": events["new_crimes"],
        "updated": events["outcomes"],
        "deleted": 0,
    }
    assert pw["pw_intel"]["inserted"] == events["intelligence"]
    assert pw["pw_intel"]["updated"] == events["intelligence_reviewed"]
    assert legacy["NOMINAL"]["deleted"] == events["deleted_duplicates"]
    assert "CRIME" not in legacy or not any(legacy["CRIME"].values())
    assert not pw.get("pw_location", {}).get("updated")
    target = changes["target"]
    assert target["migration_deletion"]["inserted"] == events["deleted_duplicates"]
    assert target["event"]["inserted"] == events["new_crimes"]


def test_the_databases_hold_the_evolved_estate_as_if_generated_so(
    evolved: tuple[Path, Any],
) -> None:
    out, summary = evolved
    renders: dict[str, dict[str, Counter[tuple[Any, ...]]]] = {
        side: {} for side in ("legacy", "policeworks", "target", "truth")
    }
    for index, size in _chunks(PERSONS):
        chunk = chunk_at(SEED, index, size, [summary.evolution])
        idx = ChunkIndex(chunk)
        for side, rows in (
            ("legacy", render_legacy(chunk, idx)),
            ("policeworks", render_policeworks(chunk, idx, False)),
            ("target", render_ideal(chunk, idx)),
            ("truth", render_truth(chunk, idx)),
        ):
            for table, found in rows.items():
                renders[side].setdefault(table, Counter()).update(found)
    for side, tables in renders.items():
        held = _rows(out, side)
        for table, expected in tables.items():
            got = held[table]
            assert not expected - got, (side, table, "missing", list(expected - got)[:3])
            assert not got - expected, (side, table, "stale", list(got - expected)[:3])


def test_the_evolved_sources_reconcile_clean_against_the_evolved_ideal_target(
    evolved: tuple[Path, Any],
) -> None:
    out, summary = evolved
    code, found = _reconcile(out, "--show", "0")
    assert code == 0, found
    persons = next(c for c in found["classes"] if c["class"] == "persons")
    legacy = next(s for s in persons["source_identity"] if s["system"] == "legacy")
    assert legacy["deleted_at_source"] == summary.events["deleted_duplicates"]
    assert legacy["balanced"]


def test_a_deletion_that_did_not_happen_is_missing(
    evolved: tuple[Path, Any], tmp_path: Path
) -> None:
    out = _copy(evolved[0], tmp_path / "estate")
    engine = create_engine(_urls(out)["target"])
    deletion = METADATA["target"].tables["migration_deletion"]
    crosswalk = METADATA["target"].tables["migration_crosswalk"]
    with engine.begin() as conn:
        key, target = conn.execute(
            select(crosswalk.c.source_key, crosswalk.c.target_key).where(
                crosswalk.c.source_table == "NOMINAL", crosswalk.c.rule == "anchor"
            )
        ).first()  # type: ignore[misc]
        # The migration says it was deleted at source: its crosswalk entry moves to deletions.
        conn.execute(crosswalk.delete().where(crosswalk.c.source_key == key))
        conn.execute(
            insert(deletion).values(
                source_system="legacy",
                source_table="NOMINAL",
                source_key=key,
                target_table="person",
                target_key=target,
                rule="anchor",
                action="kept",
            )
        )
        # And one declared kept whose target record is gone.
        gone_key, gone_target = conn.execute(
            select(deletion.c.source_key, deletion.c.target_key).where(deletion.c.source_key != key)
        ).first()  # type: ignore[misc]
        conn.execute(text("DELETE FROM person_name WHERE person_id = :p"), {"p": gone_target})
        conn.execute(text("DELETE FROM person WHERE person_id = :p"), {"p": gone_target})
    engine.dispose()
    code, found = _reconcile(out, "--class", "persons")
    assert code == 1
    findings = {f["key"]: f for c in found["classes"] for f in c["findings"]}
    assert findings[key]["placement"] == "MISSING"
    assert "source still holds it" in findings[key]["reason"]
    assert findings[gone_key]["placement"] == "MISSING"
    assert "target record is gone" in findings[gone_key]["reason"]


def test_evolving_is_deterministic_and_continues_where_the_last_one_ended(
    generated: Path, tmp_path: Path
) -> None:
    a = _copy(generated, tmp_path / "a")
    b = _copy(generated, tmp_path / "b")
    first = evolve_estate(a, 10, _urls(a), processes=1)
    evolve_estate(b, 10, _urls(b), processes=2)
    assert _rows(a, "policeworks") == _rows(b, "policeworks")
    assert _rows(a, "target") == _rows(b, "target")
    second = evolve_estate(a, 5, _urls(a), seed=99, processes=1)
    assert second.evolution == Evolution(2, 99, 5, first.evolution.first_day.replace(day=11))
    info = json.loads((a / "estate.json").read_text())
    assert [e["step"] for e in info["evolutions"]] == [1, 2]
    assert info["evolved_to"] == "2026-07-15"


def test_bad_evolutions_fail_in_one_line(generated: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["estate", "evolve", str(generated), "--days", "0"])
    assert result.exit_code == 2
    assert "--days must be at least 1" in result.output
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(main, ["estate", "evolve", str(empty), "--days", "3"])
    assert result.exit_code == 2
    assert "not an estate" in result.output
    assert len(result.output.strip().splitlines()) == 1


def _server_evolution_matches_sqlite(tmp_path: Path, new_database: Callable[[], str]) -> None:
    """The same evolution on server databases leaves content identical to SQLite's."""
    urls = {name: new_database() for name in ("legacy_url", "policeworks_url", "target_url")}
    lite, server = tmp_path / "lite", tmp_path / "server"
    generate_estate(EstateOptions(out=lite, persons=1200, seed=4, processes=1))
    generate_estate(EstateOptions(out=server, persons=1200, seed=4, processes=1, **urls))
    evolve_estate(lite, 20, _urls(lite), processes=1)
    server_urls = {
        k: v for k, v in EstateOptions(out=server, **urls).urls().items() if k != "damaged"
    }
    evolve_estate(server, 20, server_urls, processes=1)
    lite_urls = {k: v for k, v in _urls(lite).items() if k != "truth"}
    assert estate_digests(lite_urls) == estate_digests(
        {k: v for k, v in server_urls.items() if k != "truth"}
    )


@pytest.mark.postgres
def test_an_evolution_on_postgresql_matches_sqlite(
    tmp_path: Path, pg_database: Callable[[], str]
) -> None:
    _server_evolution_matches_sqlite(tmp_path, pg_database)


@pytest.mark.mariadb
def test_an_evolution_on_mariadb_matches_sqlite(
    tmp_path: Path, mariadb_database: Callable[[], str]
) -> None:
    """MariaDB's PoliceWorks keeps zero dates, and its declared keys are null-safe matched."""
    _server_evolution_matches_sqlite(tmp_path, mariadb_database)
