"""Person search: every source record and the target, however the name was spelled.

A 300-person estate (seed 3) is migrated by the bundled project through the command line. Its
ground truth plants spelling variants on PoliceWorks records (Mohammed/Muhammad, O'Brien/O'Bryan,
Smith-Jones/Jones …), day/month swaps and estimated or missing dates of birth; searching for one
spelling must bring back every record of that human, saying why each matched and where it went.
Before the wave the same search finds the source records "not in the target"; a target loaded by
another tool (the estate's ideal target, with one nominal moved to its quarantine) is indexed by
``continuity search --reindex``. Every search reaches the audit ledger with its reason; bad input
is one line and exit 2.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from continuity.cli import main
from continuity.domain.errors import ContinuityError
from continuity.domain.names import clean_name
from continuity.estate import vocab
from continuity.estate.generate import EstateOptions, generate_estate
from continuity.ledger import AuditLedger
from continuity.project import load_project
from continuity.search import (
    Searcher,
    build_index,
    dob_agreement,
    index_info,
    key_texts,
    name_keys,
    parse_query,
)

from .test_waves import new_target, project_for

PERSONS, SEED = 300, 3


@dataclass(frozen=True)
class Migrated:
    estate: Path
    folder: Path
    target: str
    ledger: str
    env: dict[str, str]
    before: list[dict[str, Any]]  # a search made before the wave
    before_name: str
    wave_stderr: str


def _cli(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(main, list(args), env=env)


def _search(m: Migrated, *args: str) -> list[dict[str, Any]]:
    result = _cli(m.env, "search", *args, "--json", "--reason", "test", "-p", str(m.folder))
    assert result.exit_code == 0, result.output
    found: list[dict[str, Any]] = json.loads(result.stdout)
    return found


def _truth(estate: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(estate / "truth.sqlite") as conn:
        return conn.execute(sql, params).fetchall()


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Migrated:
    """The estate, its index built before the wave (sources alone), then the wave by the CLI."""
    root = tmp_path_factory.mktemp("search")
    estate = root / "estate"
    generate_estate(EstateOptions(out=estate, persons=PERSONS, seed=SEED, processes=1))
    folder = root / "project"
    target = new_target(f"sqlite:///{root / 'product.sqlite'}")
    ledger = f"sqlite:///{root / 'ledger.sqlite'}"
    project_for(estate, target, folder)  # copies the bundled project
    env = {
        "CONTINUITY_ESTATE": str(estate),
        "CONTINUITY_TARGET": target,
        "CONTINUITY_LEDGER": ledger,
        "CONTINUITY_OPERATOR": "pc-4242",
    }
    ((forename, surname),) = _truth(
        estate,
        "SELECT forename, surname FROM person_record WHERE system = 'policeworks' "
        "ORDER BY source_key LIMIT 1",
    )
    name = f"{forename} {surname}"
    reindexed = _cli(env, "search", "--reindex", "-p", str(folder))
    assert reindexed.exit_code == 0, reindexed.output
    m = Migrated(estate, folder, target, ledger, env, [], name, "")
    before = _search(m, name)
    wave = _cli(env, "run", "all", "-p", str(folder))
    assert wave.exit_code == 0, wave.output
    return Migrated(estate, folder, target, ledger, env, before, name, wave.stderr)


def test_a_wave_rebuilds_the_index_and_it_reflects_the_wave(migrated: Migrated) -> None:
    assert "Search index built" in migrated.wave_stderr
    assert migrated.before, "the sources alone are searchable before any wave"
    assert {c["system"] for c in migrated.before} <= {"legacy", "policeworks"}
    assert all(c["placement"]["status"] == "not_in_target" for c in migrated.before)
    assert "did not arrive: not in the target" in migrated.before[0]["placement"]["text"]

    after = _search(migrated, migrated.before_name)
    assert any(c["system"] == "target" for c in after)
    with sqlite3.connect(migrated.target.removeprefix("sqlite:///")) as conn:
        crosswalk = {
            (s, t, k): tk
            for s, t, k, tk in conn.execute(
                "SELECT source_system, source_table, source_key, target_key "
                "FROM migration_crosswalk WHERE target_table = 'person'"
            )
        }
    sources = [c for c in after if c["system"] != "target"]
    assert sources
    for c in sources:
        assert c["placement"]["status"] in ("migrated", "merged")
        assert c["placement"]["target_key"] == crosswalk[(c["system"], c["table"], c["key"])]
        assert c["placement"]["target_key"] in c["placement"]["text"]
    for c in after:
        if c["system"] == "target":
            assert c["placement"]["status"] == "in_target"
            assert all(crosswalk[tuple(s.split("|", 2))] == c["key"] for s in c["sources"])
    info = index_info(migrated.ledger)
    assert info is not None and info.counts["target"] > 0


def test_planted_spelling_variants_bring_back_every_record_of_the_human(
    migrated: Migrated,
) -> None:
    """Each human with a PoliceWorks record spelled differently (forename or surname), searched
    by their true spelling: all their source records are in the first (count + 5), and the
    variant says how its spelling matched."""
    varied = _truth(
        migrated.estate,
        "SELECT DISTINCT human_id FROM person_record WHERE system = 'policeworks' "
        "AND (variant LIKE '%forename%' OR variant LIKE '%surname%') ORDER BY human_id",
    )
    assert len(varied) >= 10, "the estate plants spelling variants"
    project = load_project(migrated.folder, migrated.env)
    checked = 0
    with Searcher(project) as searcher:
        for (human,) in varied:
            records = _truth(
                migrated.estate,
                "SELECT system, source_table, source_key, forename, surname, dob, variant "
                "FROM person_record WHERE human_id = ? ORDER BY system, source_key",
                human,
            )
            variant = next(r for r in records if "name" in (r[6] or ""))
            part = "forename" if "forename" in variant[6] else "surname"
            at = 3 if part == "forename" else 4
            # The human's true spelling, which the variant record does not have.
            ((forename, surname, dob),) = _truth(
                migrated.estate,
                "SELECT forename, surname, dob FROM human WHERE human_id = ?",
                human,
            )
            asked = forename if part == "forename" else surname
            checked += 1
            result = searcher.find(
                parse_query(f"{forename} {surname}", dob, limit=len(records) + 5)
            )
            by_record = {(c.system, c.table, c.key): c for c in result.candidates}
            for r in records:
                assert (r[0], r[1], r[2]) in by_record, (forename, surname, r, result.render())
            why = by_record[(variant[0], variant[1], variant[2])].why
            word = next((w for w in why if w.startswith(part)), "")
            if clean_name(asked) == clean_name(variant[at]):  # Siobhán and Siobhan cleanse alike
                assert word == f"{part} exact", why
            elif why != ("names_swapped",):
                assert word.split()[1] in (
                    "nickname",
                    "phonetic",
                    "jaro_winkler",
                    "double_barrelled",
                ), (why, forename, surname, variant)
    assert checked >= 10


def test_an_exact_name_and_dob_ranks_first(migrated: Migrated) -> None:
    rows = _truth(
        migrated.estate,
        "SELECT system, source_table, source_key, forename, surname, dob FROM person_record "
        "WHERE dob IS NOT NULL AND variant = '' ORDER BY source_key LIMIT 15",
    )
    for system, table, key, forename, surname, dob in rows:
        found = _search(migrated, f"{forename} {surname}", "--dob", dob, "--limit", "50")
        first = found[0]
        assert first["score"] == 1.0
        assert {"forename exact", "surname exact", "dob exact"} <= set(first["why"])
        leaders = [c for c in found if c["score"] == 1.0]
        assert any((c["system"], c["table"], c["key"]) == (system, table, key) for c in leaders)
        assert all(c["score"] < 1.0 for c in found[len(leaders) :])


def test_a_dob_with_day_and_month_swapped_is_found_and_said(migrated: Migrated) -> None:
    rows = _truth(
        migrated.estate,
        "SELECT system, source_table, source_key, forename, surname, dob FROM person_record "
        "WHERE system = 'legacy' AND dob IS NOT NULL AND variant = '' "
        "AND CAST(strftime('%d', dob) AS INTEGER) <= 12 "
        "AND strftime('%d', dob) <> strftime('%m', dob) ORDER BY source_key LIMIT 5",
    )
    assert rows
    for system, table, key, forename, surname, dob in rows:
        day = dt.date.fromisoformat(dob)
        swapped = dt.date(day.year, day.day, day.month)
        found = _search(migrated, f"{surname}, {forename}", "--dob", swapped.strftime("%d/%m/%Y"))
        mine = next(c for c in found if (c["system"], c["table"], c["key"]) == (system, table, key))
        assert "dob swap" in mine["why"]
        assert 0.9 < mine["score"] < 1.0
        assert found.index(mine) < 5
    planted = _truth(
        migrated.estate,
        "SELECT source_key, forename, surname, dob, human_id FROM person_record "
        "WHERE variant LIKE '%dob_swap%'",
    )
    for key, forename, surname, dob, human in planted:  # the estate's own swaps
        (true_dob,) = _truth(migrated.estate, "SELECT dob FROM human WHERE human_id = ?", human)[0]
        found = _search(migrated, f"{forename} {surname}", "--dob", true_dob)
        mine = next(c for c in found if c["key"] == key)
        assert dob != true_dob and "dob swap" in mine["why"]


def test_system_filters_the_candidates(migrated: Migrated) -> None:
    name = migrated.before_name
    every = _search(migrated, name)
    assert {c["system"] for c in every} >= {"policeworks", "target"}
    for system in ("policeworks", "legacy", "target"):
        only = _search(migrated, name, "--system", system)
        assert all(c["system"] == system for c in only)
        assert [c["key"] for c in only] == [c["key"] for c in every if c["system"] == system][
            : len(only)
        ]


def test_json_lists_candidates_with_every_field(migrated: Migrated) -> None:
    found = _search(migrated, migrated.before_name, "--limit", "4")
    assert 1 <= len(found) <= 4
    assert [c["rank"] for c in found] == list(range(1, len(found) + 1))
    for c in found:
        assert set(c) == {
            "rank",
            "score",
            "system",
            "table",
            "key",
            "record",
            "forename",
            "surname",
            "dobs",
            "aliases",
            "why",
            "person",
            "placement",
            "sources",
        }
        assert c["person"] == (
            c["key"] if c["system"] == "target" else c["placement"]["target_key"]
        )
        assert c["record"] == f"{c['system']}|{c['table']}|{c['key']}"
        assert all(set(d) == {"dob", "estimated"} for d in c["dobs"])
        assert all(set(a) == {"forename", "surname", "type"} for a in c["aliases"])
        assert set(c["placement"]) == {"status", "target_key", "rule", "detail", "text"}
        assert c["why"] and 0 < c["score"] <= 1


def test_records_of_one_target_person_stand_together(migrated: Migrated) -> None:
    """Best first, but a target person's records follow its best one: groups are contiguous
    and each group's first record scores no more than the previous group's first."""
    names = _truth(
        migrated.estate,
        "SELECT forename, surname, dob FROM human WHERE human_id IN (SELECT human_id FROM "
        "person_record GROUP BY human_id HAVING count(*) > 2) ORDER BY human_id LIMIT 8",
    )
    for forename, surname, dob in names:
        for extra in ([], ["--dob", dob]):
            found = _search(migrated, f"{forename} {surname}", *extra)
            groups: list[list[dict[str, Any]]] = []
            for c in found:
                if groups and c["person"] is not None and c["person"] == groups[-1][0]["person"]:
                    groups[-1].append(c)
                else:
                    groups.append([c])
            people = [g[0]["person"] for g in groups if g[0]["person"] is not None]
            assert len(people) == len(set(people)), found
            leaders = [g[0]["score"] for g in groups]
            assert leaders == sorted(leaders, reverse=True)
            assert all(c["score"] <= g[0]["score"] for g in groups for c in g)


def test_the_table_shows_why_and_where(migrated: Migrated) -> None:
    result = _cli(
        migrated.env,
        "search",
        migrated.before_name,
        "--reason",
        "test",
        "-p",
        str(migrated.folder),
    )
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith(f"Search for {migrated.before_name}:")
    assert "index built" in out and "why: forename exact, surname exact" in out
    assert "where: in the target, from" in out and "person " in out


def test_aliases_are_shown_and_found(migrated: Migrated) -> None:
    """A legacy alias is in the target's person_name: searching by it finds the person, and
    the person's source records show it."""
    with sqlite3.connect(migrated.target.removeprefix("sqlite:///")) as conn:
        person_id, forename, surname = conn.execute(
            "SELECT person_id, forename, surname FROM person_name WHERE name_type = 'ALIAS' "
            "ORDER BY person_id, seq LIMIT 1"
        ).fetchone()
    found = _search(migrated, f"{forename} {surname}", "--limit", "50")
    mine = next(c for c in found if c["key"] == person_id)
    assert "alias" in mine["why"]
    assert {"forename": forename, "surname": surname, "type": "ALIAS"} in mine["aliases"]
    primary = _search(migrated, f"{mine['forename']} {mine['surname']}", "--limit", "50")
    source = next(c for c in primary if c["placement"].get("target_key") == person_id)
    assert {"forename": forename, "surname": surname, "type": "ALIAS"} in source["aliases"]


def test_every_search_is_written_to_the_audit_ledger(migrated: Migrated) -> None:
    result = _cli(
        migrated.env,
        "search",
        migrated.before_name,
        "--dob",
        "1970-01-02",
        "--system",
        "policeworks",
        "--limit",
        "3",
        "--reason",
        "custody check 17/4471",
        "-p",
        str(migrated.folder),
    )
    assert result.exit_code == 0, result.output
    ledger = AuditLedger(migrated.ledger)
    try:
        entry = list(ledger.entries("search"))[-1]
        ledger.verify()
    finally:
        ledger.close()
    assert entry.operator == "pc-4242"
    payload = entry.payload
    assert payload["reason"] == "custody check 17/4471"
    assert payload["query"] == migrated.before_name
    assert (payload["dob"], payload["system"], payload["limit"]) == (
        "1970-01-02",
        "policeworks",
        3,
    )
    assert payload["results"] == result.stdout.count("\n            why:")


def _searches(ledger: str) -> int:
    audit = AuditLedger(ledger)
    try:
        return len(list(audit.entries("search")))
    finally:
        audit.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["Sean Muller"], "a search needs --reason"),
        (["Sean Muller", "--reason", "  "], "a search needs --reason"),
        (["", "--reason", "x"], "a name needs letters in it"),
        (["12 !?", "--reason", "x"], "a name needs letters in it"),
        (["Sean Muller", "--dob", "1984-02-30", "--reason", "x"], "--dob 1984-02-30: no such"),
        (["Sean Muller", "--dob", "tomorrow", "--reason", "x"], "--dob tomorrow: not a date"),
        (["Sean Muller", "--dob", "2999-01-01", "--reason", "x"], "cannot be in the future"),
        (["Sean Muller", "--system", "niche", "--reason", "x"], "--system 'niche'"),
        ([], "give a NAME to search for"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    migrated: Migrated, args: list[str], message: str
) -> None:
    before = _searches(migrated.ledger)
    result = _cli(migrated.env, "search", *args, "-p", str(migrated.folder))
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert result.stderr.count("\n") == 1
    assert _searches(migrated.ledger) == before


def test_searching_before_any_index_says_how_to_make_one(
    migrated: Migrated, tmp_path: Path
) -> None:
    env = {**migrated.env, "CONTINUITY_LEDGER": f"sqlite:///{tmp_path / 'empty.sqlite'}"}
    result = _cli(env, "search", "Sean Muller", "--reason", "x", "-p", str(migrated.folder))
    assert result.exit_code == 2
    assert result.stderr == ("error: no search index: run a wave or continuity search --reindex\n")


def test_reindex_indexes_a_target_loaded_by_another_tool(
    migrated: Migrated, tmp_path: Path
) -> None:
    """The estate's ideal target, as a vendor might have loaded it, with one nominal moved from
    the crosswalk to the quarantine."""
    copy = tmp_path / "vendor.sqlite"
    shutil.copy(migrated.estate / "target.sqlite", copy)
    with sqlite3.connect(copy) as conn:
        key, person_id = conn.execute(
            "SELECT source_key, target_key FROM migration_crosswalk WHERE source_table = "
            "'NOMINAL' AND target_table = 'person' ORDER BY source_key LIMIT 1"
        ).fetchone()
        conn.execute(
            "DELETE FROM migration_crosswalk WHERE source_table = 'NOMINAL' AND source_key = ?",
            (key,),
        )
        conn.execute(
            "INSERT INTO migration_quarantine VALUES ('legacy', 'NOMINAL', ?, ?)",
            (key, "vendor: surname failed validation"),
        )
    ((forename, surname, dob),) = _truth(
        migrated.estate,
        "SELECT forename, surname, dob FROM person_record WHERE source_key = ?",
        key,
    )
    env = {
        **migrated.env,
        "CONTINUITY_TARGET": f"sqlite:///{copy}",
        "CONTINUITY_LEDGER": f"sqlite:///{tmp_path / 'ledger.sqlite'}",
    }
    bare = _cli(env, "search", "--reindex", "-p", str(migrated.folder))
    assert bare.exit_code == 0 and bare.stdout == "", bare.output
    info = index_info(env["CONTINUITY_LEDGER"])
    assert info is not None and info.target.endswith("vendor.sqlite")
    result = _cli(
        env,
        *("search", f"{forename} {surname}", "--dob", dob, "--reason", "x", "--json"),
        *("-p", str(migrated.folder)),
    )
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    nominal = next(c for c in found if c["key"] == key)
    assert nominal["placement"]["status"] == "quarantined"
    assert nominal["placement"]["text"] == (
        "did not arrive: quarantined: vendor: surname failed validation"
    )
    person = next(c for c in found if c["key"] == person_id)
    assert person["system"] == "target" and person["score"] == 1.0


def test_a_failed_rebuild_leaves_the_previous_index_in_use(
    migrated: Migrated, tmp_path: Path
) -> None:
    env = {**migrated.env, "CONTINUITY_LEDGER": f"sqlite:///{tmp_path / 'ledger.sqlite'}"}
    project = load_project(migrated.folder, env)
    first = build_index(project)
    broken = load_project(
        migrated.folder, {**env, "CONTINUITY_LEGACY_URL": f"sqlite:///{tmp_path / 'no.sqlite'}"}
    )
    with pytest.raises(ContinuityError, match=r"no\.sqlite|legacy"):
        build_index(broken)
    info = index_info(env["CONTINUITY_LEDGER"])
    assert info is not None and info.generation == first.generation
    with Searcher(project) as searcher:
        assert searcher.find(parse_query(migrated.before_name)).candidates
    again = build_index(project)  # and the next build clears what the failed one left
    assert again.generation > first.generation
    with sqlite3.connect(tmp_path / "ledger.sqlite") as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        states = [r[0] for r in conn.execute("SELECT state FROM search_index")]
    assert {t for t in tables if t.startswith("search_")} == {
        "search_index",
        f"search_record_{again.generation}",
        f"search_key_{again.generation}",
    }
    assert states == ["current"]


def _same_answers_with_the_work_store_at(migrated: Migrated, url: str) -> None:
    env = {**migrated.env, "CONTINUITY_LEDGER": url}
    sqlite_project = load_project(migrated.folder, migrated.env)
    project = load_project(migrated.folder, env)
    build_index(project)
    _a_second_build_is_refused(project)
    queries = [parse_query(migrated.before_name), parse_query(migrated.before_name, "1970-01-01")]
    for query in queries:
        with Searcher(sqlite_project) as a, Searcher(project) as b:
            expected = [(c.record, round(c.score, 6)) for c in a.find(query).candidates]
            assert [(c.record, round(c.score, 6)) for c in b.find(query).candidates] == expected


def _a_second_build_is_refused(project: Any) -> None:
    """While one build holds the work store's build lock, another is refused at once and the
    current index stays as it was."""
    from continuity.domain.connect import engine_for
    from continuity.search import _BuildLock

    before = index_info(project.ledger)
    engine = engine_for(project.ledger)
    held = _BuildLock(engine)
    held.take()
    try:
        with pytest.raises(ContinuityError, match="another search index build is running"):
            build_index(project)
    finally:
        held.release()
        engine.dispose()
    assert index_info(project.ledger) == before
    build_index(project)  # and once it is released, a build goes through


def test_one_build_at_a_time_on_sqlite(migrated: Migrated, tmp_path: Path) -> None:
    env = {**migrated.env, "CONTINUITY_LEDGER": f"sqlite:///{tmp_path / 'ledger.sqlite'}"}
    project = load_project(migrated.folder, env)
    build_index(project)
    _a_second_build_is_refused(project)


@pytest.mark.postgres
def test_the_index_works_in_postgresql(migrated: Migrated, pg_database: Callable[[], str]) -> None:
    _same_answers_with_the_work_store_at(migrated, pg_database())


@pytest.mark.mariadb
def test_the_index_works_in_mariadb(
    migrated: Migrated, mariadb_database: Callable[[], str]
) -> None:
    _same_answers_with_the_work_store_at(migrated, mariadb_database())


# --- keys, readings and dates, without a database -------------------------------------------


def test_keys_join_the_spellings_they_are_for() -> None:
    def shared(a: tuple[str, str], b: tuple[str, str]) -> bool:
        return bool(set(name_keys(*a)) & set(name_keys(*b)))

    assert shared(("Mohammed", "Khan"), ("Muhammad", "Khan"))  # nickname group
    assert shared(("Aoife", "Byrne"), ("Eva", "Byrne"))  # cross-language equivalent
    assert shared(("Siobhan", "Kelly"), ("Shivaun", "Kelly"))
    assert shared(("Chloe", "Okafor"), ("Chloe", "Okafo"))  # surname cut short
    assert shared(("Ann", "Smith-Jones"), ("Ann", "Jones"))  # one part of a double barrel
    assert shared(("Sean", "O'Brien"), ("Seán", "OBRIEN"))
    assert not shared(("Mohammed", "Khan"), ("Patricia", "Lewandowski"))
    assert key_texts("", ()) == [] and key_texts("", ("khan",)) == ["s|CAN"]
    for table, name_of in (
        (vocab.FORENAME_VARIANTS, lambda n: (n, "Smith")),
        (vocab.SURNAME_VARIANTS, lambda n: ("John", n)),
    ):
        for true, variants in table.items():
            for variant in variants:  # every spelling the estate plants meets the true one
                assert shared(name_of(true), name_of(variant)), (true, variant)


def test_a_query_is_read_as_people_write_names() -> None:
    assert parse_query("Mohammed Khan").readings == (("mohammed", ("khan",)),)
    assert parse_query("KHAN, Mohammed Ali").readings == (("mohammed", ("khan",)),)
    assert parse_query("John Lloyd Davies").readings == (
        ("john", ("lloyd", "davies")),
        ("john", ("davies",)),
    )
    assert parse_query("Begum").readings == (("", ("begum",)),)
    assert parse_query("x", "02/01/1984").dob == dt.date(1984, 1, 2)


def test_dates_of_birth_agree_in_order_of_strength() -> None:
    day = dt.date(1984, 2, 11)
    assert dob_agreement(day, [(day, False)]) == "exact"
    assert dob_agreement(day, [(dt.date(1984, 11, 2), False)]) == "swap"
    assert dob_agreement(day, [(dt.date(1984, 6, 1), True)]) == "year"
    assert dob_agreement(day, [(dt.date(1985, 6, 1), True)]) == "adjacent_year"
    assert dob_agreement(day, [(dt.date(1984, 1, 1), False)]) == "year"  # 1 January: an estimate
    assert dob_agreement(dt.date(1984, 1, 1), [(dt.date(1983, 7, 9), False)]) == "adjacent_year"
    assert dob_agreement(day, [(dt.date(1986, 6, 1), True)]) == "different"
    assert dob_agreement(day, []) == "unknown"
    assert dob_agreement(day, [(dt.date(1990, 1, 5), False), (day, False)]) == "exact"


def test_a_surname_alone_over_the_broad_cap_is_still_found(
    migrated: Migrated, monkeypatch: pytest.MonkeyPatch
) -> None:
    import continuity.search as search_module

    (surname, holders) = _truth(
        migrated.estate,
        "SELECT surname, COUNT(*) FROM person_record GROUP BY surname ORDER BY 2 DESC LIMIT 1",
    )[0]
    assert holders > 3
    # The surname key holds more records than a broad key may: a surname alone is then the
    # strongest key there is, read (bounded) rather than left out.
    monkeypatch.setattr(search_module, "BROAD_KEY_CAP", 2)
    found = _search(migrated, surname, "--limit", "200")
    assert found, "a surname alone finds its holders"
    assert all(clean_name(c["surname"]) == clean_name(surname) for c in found[:3])


def test_a_person_the_wave_quarantined_is_found_and_says_why(
    migrated: Migrated, tmp_path: Path
) -> None:
    estate = tmp_path / "estate"
    shutil.copytree(migrated.estate, estate)
    with sqlite3.connect(estate / "legacy.sqlite") as conn:
        key, forename, surname = conn.execute(
            'SELECT "NOMINAL_REF", "FORENAME1", "SURNAME" FROM "NOMINAL" '
            'ORDER BY "NOMINAL_REF" LIMIT 1'
        ).fetchone()
        conn.execute('UPDATE "NOMINAL" SET "DOB" = ? WHERE "NOMINAL_REF" = ?', ("31/02/1980", key))
    target = new_target(f"sqlite:///{tmp_path / 'product.sqlite'}")
    folder = tmp_path / "project"
    project_for(estate, target, folder)
    env = {
        **migrated.env,
        "CONTINUITY_ESTATE": str(estate),
        "CONTINUITY_TARGET": target,
        "CONTINUITY_LEDGER": f"sqlite:///{tmp_path / 'ledger.sqlite'}",
    }
    wave = _cli(env, "run", "all", "-p", str(folder))
    assert wave.exit_code == 0, wave.output
    result = _cli(
        env,
        *("search", f"{forename} {surname}", "--reason", "x", "--json", "--limit", "100"),
        *("-p", str(folder)),
    )
    assert result.exit_code == 0, result.output
    nominal = next(c for c in json.loads(result.stdout) if c["key"] == key)
    assert nominal["placement"]["status"] == "quarantined"
    assert nominal["placement"]["text"].startswith("did not arrive: quarantined: ")
    assert "31/02/1980" in nominal["placement"]["text"]
