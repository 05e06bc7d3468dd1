"""People review from the CLI: a wave lists pairs near the threshold; a reviewer's split or
confirm is written to the audit ledger and survives every later run of the wave."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from continuity.cli import main
from continuity.ledger import AuditLedger
from continuity.waves import run_wave

from ..conftest import EVERY_DATABASE
from .test_waves import new_target, project_for


def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def _person_of(target: str, identity: str) -> str:
    system, table, key = identity.split("|", 2)
    with sqlite3.connect(target.removeprefix("sqlite:///")) as conn:
        (found,) = conn.execute(
            "SELECT target_key FROM migration_crosswalk WHERE source_system = ? AND "
            "source_table = ? AND source_key = ? AND target_table = 'person'",
            (system, table, key),
        ).fetchone()
    return str(found)


@pytest.fixture(scope="module")
def reviewed(
    small_estate: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, str, list[dict[str, object]]]:
    folder = tmp_path_factory.mktemp("people") / "project"
    target = new_target(f"sqlite:///{folder.parent / 'product.sqlite'}")
    summary = run_wave(project_for(small_estate, target, folder), "all")
    assert summary.resolution["person"]["merged"]
    code, out = _cli("people", "review", "-p", str(folder), "--json", "--limit", "0")
    assert code == 0, out
    return folder, target, json.loads(out)


def test_a_wave_lists_pairs_near_the_threshold(
    reviewed: tuple[Path, str, list[dict[str, object]]],
) -> None:
    folder, _, pairs = reviewed
    assert pairs, "the estate's spelling variants and estimates give pairs to review"
    for p in pairs:
        assert p["decision"] is None
        assert p["a"] != p["b"] and p["a_seen"] and p["b_seen"]
    code, out = _cli("people", "review", "-p", str(folder), "--limit", "3", "--order", "pair")
    assert code == 0 and f"3 of {len(pairs)} pairs shown" in out and "#1" in out
    assert "#4 " not in out
    code, out = _cli("people", "review", "-p", str(folder), "--state", "merged", "--json")
    assert code == 0 and all(p["merged"] for p in json.loads(out))


def test_the_riskiest_pairs_come_first(
    reviewed: tuple[Path, str, list[dict[str, object]]],
) -> None:
    """Merges near the threshold (weakest first), then a hard rule's refusals, near misses,
    and last the bulk left apart for want of evidence."""
    folder, _, _ = reviewed
    code, out = _cli("people", "review", "-p", str(folder), "--json", "--limit", "0")
    assert code == 0, out
    pairs = json.loads(out)

    def band(p: dict[str, object]) -> int:
        if p["merged"]:
            return 0
        if p["refused"] in ("ambiguous", "weak"):
            return 3
        return 1 if p["refused"] else 2

    bands = [band(p) for p in pairs]
    assert bands == sorted(bands) and {0, 3} <= set(bands)
    merged = [float(p["score"]) for p in pairs if band(p) == 0]  # type: ignore[arg-type]
    assert merged == sorted(merged)  # the weakest merge first
    code, out = _cli("people", "review", "-p", str(folder), "--limit", "1")
    first = pairs[0]
    assert code == 0 and f"#{first['pair']}" in out.splitlines()[0]


def test_split_and_confirm_survive_reruns_and_reach_the_ledger(
    small_estate: Path, reviewed: tuple[Path, str, list[dict[str, object]]]
) -> None:
    folder, target, pairs = reviewed
    merged = next(p for p in pairs if p["merged"])
    apart = next(p for p in pairs if not p["merged"] and p["refused"] in ("", "weak"))
    a, b = str(merged["a"]), str(merged["b"])
    c, d = str(apart["a"]), str(apart["b"])
    assert _person_of(target, a) == _person_of(target, b)
    assert _person_of(target, c) != _person_of(target, d)

    code, out = _cli(
        "people",
        "decide",
        str(merged["pair"]),
        "split",
        "--reason",
        "different custody photos",
        "-p",
        str(folder),
    )
    assert code == 0, out
    code, out = _cli(
        "people",
        "decide",
        c,
        "confirm",
        "--with",
        d,
        "--reason",
        "same PNC on paper file",
        "-p",
        str(folder),
    )
    assert code == 0, out

    project = project_for(small_estate, target, folder)
    for _ in range(2):  # the decisions hold on the next run, and the one after
        summary = run_wave(project, "all")
        assert summary.resolution["person"]["decisions_applied"] == 2
        assert _person_of(target, a) != _person_of(target, b)
        assert _person_of(target, c) == _person_of(target, d)

    code, out = _cli("people", "review", "-p", str(folder), "--json", "--limit", "0")
    decided = {(p["a"], p["b"]): p["decision"] for p in json.loads(out) if p["decision"]}
    assert decided.get((min(a, b), max(a, b))) == "split" or decided.get((a, b)) == "split"

    ledger = AuditLedger(f"sqlite:///{folder / '.continuity' / 'ledger.sqlite'}")
    try:
        entries = [e.payload for e in ledger.entries("people-decision")]
        assert {e["decision"] for e in entries} == {"split", "confirm"}
        assert any(e["reason"] == "different custody photos" for e in entries)
        ledger.verify()
    finally:
        ledger.close()


def test_bad_decisions_get_one_line_errors(
    reviewed: tuple[Path, str, list[dict[str, object]]],
) -> None:
    folder, _, _ = reviewed
    code, out = _cli("people", "decide", "99999", "split", "--reason", "x", "-p", str(folder))
    assert code == 2 and "no pair 99999" in out and len(out.strip().splitlines()) == 1
    code, out = _cli("people", "decide", "abc", "split", "--reason", "x", "-p", str(folder))
    assert code == 2 and "give its number in the review" in out
    code, out = _cli("people", "decide", "1", "split", "--reason", "  ", "-p", str(folder))
    assert code == 2 and "needs a --reason" in out
    code, out = _cli("people", "decide", "1", "split", "-p", str(folder))
    assert code == 2 and "--reason" in out


def _home_of(estate: Path, tmp: Path, reverse: bool) -> str:
    """The home resolution reads for one PoliceWorks person given two HOME links, inserted in
    one order or the other."""
    import shutil

    from continuity.waves import resolve_people

    copy = tmp / ("reversed" if reverse else "forward")
    shutil.copytree(estate, copy / "estate")
    with sqlite3.connect(copy / "estate" / "policeworks.sqlite") as conn:
        person, location = conn.execute(
            "SELECT from_id, to_id FROM pw_link WHERE link_type = 'HOME' ORDER BY from_id LIMIT 1"
        ).fetchone()
        other = conn.execute(
            "SELECT location_id FROM pw_location WHERE postcode IS NOT NULL AND location_id <> ? "
            "ORDER BY postcode DESC LIMIT 1",
            (location,),
        ).fetchone()[0]
        rows = conn.execute("SELECT * FROM pw_link WHERE from_id = ?", (person,)).fetchall()
        conn.execute("DELETE FROM pw_link WHERE from_id = ?", (person,))
        extra = ("extra-link", "PERSON", person, "LOCATION", other, "HOME")
        for row in [extra, *rows] if reverse else [*rows, extra]:
            conn.execute("INSERT INTO pw_link VALUES (?, ?, ?, ?, ?, ?)", row)
    target = new_target(f"sqlite:///{copy / 'product.sqlite'}")
    resolver = resolve_people(project_for(copy / "estate", target, copy / "project"), "all")
    return str(resolver._home[resolver._ids[f"policeworks|pw_person|{person}"]])


def test_a_lookup_reads_the_same_value_whatever_order_the_rows_come_in(
    small_estate: Path, tmp_path: Path
) -> None:
    forward = _home_of(small_estate, tmp_path, reverse=False)
    assert forward and forward == _home_of(small_estate, tmp_path, reverse=True)


@pytest.mark.parametrize(
    "server",
    [
        pytest.param("pg_database", marks=pytest.mark.postgres),
        pytest.param("mariadb_database", marks=pytest.mark.mariadb),
    ],
)
def test_review_and_decisions_with_the_work_store_on_a_server(
    request: pytest.FixtureRequest, server: str
) -> None:
    """The review list, a decision, its audit entry and the decisions a run applies, with the
    ledger's database on PostgreSQL or MariaDB."""
    from continuity import people
    from mappings.resolution import Pair

    url = request.getfixturevalue(server)()
    pairs = [
        Pair("s|t|1", "s|t|2", 0.95, "name_dob", ("jaro_winkler",), True, "", "A", "B"),
        Pair("s|t|3", "s|t|4", 1.0, "name_dob_year", ("exact",), False, "ambiguous", "C", "D"),
        Pair("s|t|6", "s|t|5", 0.9, "name_dob", ("phonetic",), False, "", "E", "F"),
    ]
    assert people.save_review(url, "person", "run-1", pairs) == 3
    listed = people.review(url, "person")
    assert [p["pair"] for p in listed] == [1, 2, 3]
    assert [p["pair"] for p in sorted(listed, key=people.priority)] == [1, 3, 2]
    people.decide(url, "person", 3, "split", "different custody photos")
    people.decide(url, "person", ("s|t|4", "s|t|3"), "confirm", "same PNC on paper")
    assert people.decisions(url, "person") == {
        ("s|t|5", "s|t|6"): "split",
        ("s|t|3", "s|t|4"): "confirm",
    }
    people.save_review(url, "person", "run-2", pairs[:2])  # a later run's list
    assert people.decisions(url, "person")[("s|t|5", "s|t|6")] == "split"
    with pytest.raises(people.ReviewError, match="no pair 9"):
        people.decide(url, "person", 9, "split", "none such")
    ledger = AuditLedger(url)
    try:
        assert [e.payload["decision"] for e in ledger.entries("people-decision")] == [
            "split",
            "confirm",
        ]
        ledger.verify()
    finally:
        ledger.close()


@pytest.mark.parametrize("kind", EVERY_DATABASE)
def test_a_delta_rewrites_only_the_changed_pairs_of_the_records_it_resolved_again(
    kind: str, any_database: str
) -> None:
    """A pair listed as it is now keeps its number; a changed one, and one no longer found,
    goes; a new one is added; pairs of records not resolved again stay whatever the list."""
    from continuity import people
    from mappings.resolution import Pair

    url = any_database
    same = Pair("s|t|1", "s|t|2", 0.95, "name_dob", ("jaro_winkler",), True, "", "A", "B")
    rescored = Pair("s|t|3", "s|t|4", 0.93, "name_dob", ("phonetic",), True, "", "C", "D")
    dropped = Pair("s|t|5", "s|t|6", 0.9, "name_dob", ("phonetic",), False, "", "E", "F")
    outside = Pair("s|t|7", "s|t|8", 1.0, "name_dob_year", ("exact",), False, "weak", "G", "H")
    assert people.save_review(url, "person", "run-1", [same, rescored, dropped, outside]) == 4
    now = [
        same,
        Pair("s|t|3", "s|t|4", 0.96, "name_dob", ("phonetic",), True, "", "C", "D"),
        Pair("s|t|1", "s|t|9", 0.94, "name_dob", ("jaro_winkler",), False, "ambiguous", "A", "I"),
    ]
    only = {"s|t|1", "s|t|2", "s|t|3", "s|t|4", "s|t|5", "s|t|6", "s|t|9"}
    assert people.save_review(url, "person", "run-2", now, only=only) == 2
    listed = {(p["a"], p["b"]): p for p in people.review(url, "person")}
    assert sorted(listed) == [
        ("s|t|1", "s|t|2"),
        ("s|t|1", "s|t|9"),
        ("s|t|3", "s|t|4"),
        ("s|t|7", "s|t|8"),
    ]
    assert listed[("s|t|1", "s|t|2")]["pair"] == 1  # (as it was: kept, not written again)
    assert listed[("s|t|7", "s|t|8")]["pair"] == 4  # (not resolved again)
    assert listed[("s|t|3", "s|t|4")]["pair"] > 4  # (rescored: listed anew)
    assert listed[("s|t|3", "s|t|4")]["score"] == pytest.approx(0.96)
    assert listed[("s|t|1", "s|t|9")]["pair"] > 4
    assert len({p["pair"] for p in listed.values()}) == 4
