"""Ground truth and the defects manifest agree with the databases they describe."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select

from continuity import target_schema
from continuity.domain.digest import canonical
from continuity.estate import schemas
from continuity.estate.defects import DEFECT_KINDS, PRIMARY_KEYS


def _read(path: Path, metadata: Any, table: str) -> list[dict[str, Any]]:
    engine = create_engine(f"sqlite:///{path}")
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(select(metadata.tables[table]))]
    engine.dispose()
    return rows


class Estate:
    def __init__(self, out: Path) -> None:
        self.out = out

    def legacy(self, table: str) -> list[dict[str, Any]]:
        return _read(self.out / "legacy.sqlite", schemas.legacy, table)

    def pw(self, table: str) -> list[dict[str, Any]]:
        return _read(self.out / "policeworks.sqlite", schemas.policeworks, table)

    def truth(self, table: str) -> list[dict[str, Any]]:
        return _read(self.out / "truth.sqlite", schemas.truth, table)

    def target(self, table: str, damaged: bool = False) -> list[dict[str, Any]]:
        name = "target_defects.sqlite" if damaged else "target.sqlite"
        return _read(self.out / name, target_schema.metadata, table)


@pytest.fixture(scope="module")
def estate(small_estate: Path) -> Estate:
    return Estate(small_estate)


def _crosswalk(estate: Estate) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {
        (r["source_system"], r["source_table"], r["source_key"]): r
        for r in estate.target("migration_crosswalk")
    }


def test_every_human_is_one_target_person_holding_all_its_records(estate: Estate) -> None:
    humans = {h["human_id"]: h for h in estate.truth("human")}
    persons = {p["person_id"]: p for p in estate.target("person")}
    crosswalk = _crosswalk(estate)
    nominals = {r["NOMINAL_REF"]: r for r in estate.legacy("NOMINAL")}
    pw_persons = {r["person_id"]: r for r in estate.pw("pw_person")}
    records = estate.truth("person_record")
    assert {r["human_id"] for r in records} == set(humans)
    for r in records:
        source = nominals if r["system"] == "legacy" else pw_persons
        assert r["source_key"] in source, r
        if r["system"] == "policeworks":
            assert source[r["source_key"]]["surname"] == r["surname"]
        person_id = humans[r["human_id"]]["target_person_id"]
        assert (
            crosswalk[(r["system"], r["source_table"], r["source_key"])]["target_key"] == person_id
        )
    by_human: dict[int, list[dict[str, Any]]] = {}
    for r in records:
        by_human.setdefault(r["human_id"], []).append(r)
    spelled_by_record = 0
    for h in humans.values():
        p = persons[h["target_person_id"]]
        recs = by_human[h["human_id"]]
        anchor = next(
            r
            for r in recs
            if crosswalk[(r["system"], r["source_table"], r["source_key"])]["rule"] == "anchor"
        )
        # A perfect migration shows only what a record holds: a PoliceWorks anchor's spelling,
        # else the truth (which a legacy anchor holds upper-cased), and a recorded DOB.
        if anchor["system"] == "policeworks":
            assert (p["forename"], p["surname"]) == (anchor["forename"], anchor["surname"])
            spelled_by_record += (p["forename"], p["surname"]) != (h["forename"], h["surname"])
        else:
            assert (p["forename"], p["surname"]) == (h["forename"], h["surname"])
        dobs = {r["dob"] for r in recs if r["dob"] is not None}
        assert p["dob"] in dobs if dobs else p["dob"] is None
    assert spelled_by_record > 0  # the rule matters on this estate
    merged = [r for r in crosswalk.values() if r["rule"] == "merge:same_human"]
    assert len(merged) == len(records) - len(humans)


def test_hard_pairs_are_kept_apart(estate: Estate) -> None:
    humans = {h["human_id"]: h for h in estate.truth("human")}
    pairs = estate.truth("hard_pair")
    assert {p["kind"] for p in pairs} == {"twin", "father_son"}
    for p in pairs:
        a, b = humans[p["human_a"]], humans[p["human_b"]]
        assert a["target_person_id"] != b["target_person_id"]
        assert a["surname"] == b["surname"]
        if p["kind"] == "twin":
            assert a["dob"] == b["dob"] and a["forename"] != b["forename"]
        else:
            assert a["forename"] == b["forename"] and a["dob"] != b["dob"]


def test_crime_dispositions_match_the_target(estate: Estate) -> None:
    events = {e["event_id"]: e for e in estate.target("event")}
    references = {e["crime_reference"] for e in events.values()}
    legacy = {r["CRIME_NO"] for r in estate.legacy("CRIME")}
    pw = {r["occurrence_id"] for r in estate.pw("pw_occurrence")}
    crimes = estate.truth("crime")
    kinds = defaultdict(int)
    for c in crimes:
        kinds[c["disposition"]] += 1
        assert (c["legacy_key"] is None or c["legacy_key"] in legacy) and (
            c["policeworks_key"] is None or c["policeworks_key"] in pw
        )
        if c["disposition"] == "MIGRATED":
            assert events[c["target_event_id"]]["crime_reference"] == c["crime_reference"]
        else:
            assert c["crime_reference"] not in references
    assert kinds["MIGRATED"] and kinds["EXCLUDED"] and kinds["REJECTED"]
    assert len(events) == kinds["MIGRATED"]


def test_every_migrated_crime_keeps_its_victims(estate: Estate) -> None:
    links = {(r["event_id"], r["person_id"], r["role"]) for r in estate.target("event_person")}
    victims = estate.truth("crime_victim")
    migrated = [v for v in victims if v["target_event_id"]]
    assert migrated
    for v in migrated:
        assert (v["target_event_id"], v["target_person_id"], "VICTIM") in links


def test_firearms_flags_are_in_the_target(estate: Estate) -> None:
    warnings = {w["warning_id"]: w for w in estate.target("warning_marker")}
    flagged = estate.truth("firearms")
    assert {f["subject_type"] for f in flagged} == {"PERSON", "LOCATION"}
    for f in flagged:
        w = warnings[f["target_warning_id"]]
        assert w["code"] == "FI"
        subject = w["person_id"] if f["subject_type"] == "PERSON" else w["location_id"]
        assert subject == f["target_subject_id"]


def test_every_source_record_is_migrated_excluded_or_quarantined(estate: Estate) -> None:
    crosswalk = _crosswalk(estate)
    excluded = {
        (r["system"], r["source_table"], r["source_key"])
        for r in estate.truth("exclusion")
        if r["outcome"] == "EXCLUDED"
    }
    quarantined = {
        (r["system"], r["source_table"], r["source_key"]) for r in estate.truth("quarantine")
    }
    assert not excluded & quarantined
    assert not (excluded | quarantined) & set(crosswalk)
    checks = [
        ("legacy", "NOMINAL", [r["NOMINAL_REF"] for r in estate.legacy("NOMINAL")]),
        ("legacy", "ADDRESS", [r["ADDR_REF"] for r in estate.legacy("ADDRESS")]),
        ("legacy", "CRIME", [r["CRIME_NO"] for r in estate.legacy("CRIME")]),
        ("legacy", "BAIL", [f"{r['CRIME_NO']}|{r['NOMINAL_REF']}" for r in estate.legacy("BAIL")]),
        ("policeworks", "pw_person", [r["person_id"] for r in estate.pw("pw_person")]),
        ("policeworks", "pw_location", [r["location_id"] for r in estate.pw("pw_location")]),
        ("policeworks", "pw_occurrence", [r["occurrence_id"] for r in estate.pw("pw_occurrence")]),
        ("policeworks", "pw_warning", [r["warning_id"] for r in estate.pw("pw_warning")]),
        ("policeworks", "pw_intel", [r["intel_id"] for r in estate.pw("pw_intel")]),
        (
            "policeworks",
            "pw_safeguarding",
            [r["referral_id"] for r in estate.pw("pw_safeguarding")],
        ),
        ("policeworks", "pw_bail", [r["bail_id"] for r in estate.pw("pw_bail")]),
    ]
    for system, table, keys in checks:
        for key in keys:
            ident = (system, table, key)
            assert ident in crosswalk or ident in excluded or ident in quarantined, ident
    nominals = {r["NOMINAL_REF"] for r in estate.legacy("NOMINAL")}
    for r in estate.legacy("CRIME_NOMINAL"):
        ident = ("legacy", "CRIME_NOMINAL", f"{r['CRIME_NO']}|{r['NOMINAL_REF']}|{r['ROLE']}")
        if r["NOMINAL_REF"] not in nominals:
            assert ident in quarantined  # a dangling link must be quarantined, never dropped


def test_every_target_row_has_a_crosswalk_entry(estate: Estate) -> None:
    targets = {(r["target_table"], r["target_key"]) for r in estate.target("migration_crosswalk")}
    for table, key in (
        ("person", "person_id"),
        ("location", "location_id"),
        ("event", "event_id"),
        ("warning_marker", "warning_id"),
        ("bail", "bail_id"),
        ("intelligence_report", "intel_id"),
        ("safeguarding_referral", "referral_id"),
    ):
        for row in estate.target(table):
            if table == "person" and row["record_origin"] == "PILOT":
                continue  # a declared target-only population
            assert (table, row[key]) in targets, (table, row[key])


def _keyed(rows: list[dict[str, Any]], table: str) -> dict[tuple[str, ...], dict[str, str]]:
    pk = PRIMARY_KEYS[table]
    return {
        tuple(canonical(r[c]) for c in pk): {c: canonical(v) for c, v in r.items()} for r in rows
    }


def test_ideal_minus_planted_changes_is_the_damaged_copy(
    estate: Estate, small_estate: Path
) -> None:
    manifest = json.loads((small_estate / "defects.json").read_text())
    assert manifest["not_planted"] == []
    assert sorted(d["kind"] for d in manifest["defects"]) == sorted(DEFECT_KINDS)
    model = {t: _keyed(estate.target(t), t) for t in PRIMARY_KEYS}
    planted = [
        c for item in manifest["defects"] + manifest["decoys"] for c in item.get("changes", [])
    ]
    assert planted
    for change in planted:
        table = change["table"]
        key = tuple(canonical(change["key"][c]) for c in PRIMARY_KEYS[table])
        if change["op"] == "delete":
            assert model[table].pop(key, None) is not None, change
        elif change["op"] == "insert":
            assert key not in model[table], change
            model[table][key] = {c: canonical(v) for c, v in change["row"].items()}
        else:
            model[table][key].update({c: canonical(v) for c, v in change["set"].items()})
    for table in PRIMARY_KEYS:
        assert model[table] == _keyed(estate.target(table, damaged=True), table), table


def test_every_defect_says_what_reconciliation_must_report(small_estate: Path) -> None:
    manifest = json.loads((small_estate / "defects.json").read_text())
    placements = {"MISSING", "MERGED", "DUPLICATED", "MIGRATED", "ORPHAN"}
    for defect in manifest["defects"]:
        assert defect["changes"], defect["kind"]
        assert defect["expect"], defect["kind"]
        for e in defect["expect"]:
            assert e["placement"] in placements
            if e.get("integrity") == "ALTERED":
                assert e["fields"]
    decoys = {d["kind"] for d in manifest["decoys"]}
    assert set(manifest["decoy_kinds"]) <= decoys


def test_a_person_held_only_in_policeworks_gets_only_what_policeworks_holds(estate: Estate) -> None:
    """PoliceWorks has no alias table and no handling code: the ideal target cannot invent them."""
    systems = defaultdict(set)
    for r in estate.truth("person_record"):
        systems[r["human_id"]].add(r["system"])
    pw_only = {
        h["target_person_id"]
        for h in estate.truth("human")
        if systems[h["human_id"]] == {"policeworks"}
    }
    assert pw_only
    for p in estate.target("person"):
        if p["person_id"] in pw_only:
            assert p["handling_code"] is None
    assert not [
        n
        for n in estate.target("person_name")
        if n["person_id"] in pw_only and n["name_type"] == "ALIAS"
    ]


def test_quarantine_wins_over_a_legal_hold() -> None:
    """A crime that cannot be read is quarantined even when a legal hold would keep it."""
    from continuity.estate import render
    from continuity.estate.index import ChunkIndex
    from continuity.estate.truth import generate_chunk

    chunk = generate_chunk(7, 0, 1000)
    garbage = next(c for c in chunk.crimes if c.garbage)
    garbage.legal_hold = True
    rows = render.render_truth(chunk, ChunkIndex(chunk))
    key = ("legacy", "CRIME", garbage.crime_no)
    assert key in {r[:3] for r in rows["quarantine"]}
    assert key not in {r[:3] for r in rows["exclusion"]}
