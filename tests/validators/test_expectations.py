"""The policing expectation library on SQLite, PostgreSQL and MariaDB (and in-flight frames).

The fixture's planted rows (every other row is good):

- ``people``: p2 born in the future (2090), p3 before 1900 (1850), p4 estimated with no date of
  birth; p5 postcode unspaced (``BL280NL``), p6 lower case (``m3 7be``).
- ``crimes``: c2 reference ``CRI-21-1``; c3 offence ``ZZ`` (not a Home Office code); c4 legacy
  code ``77/7`` (not in the crosswalk); c5 offence 8N (needs a victim) with only a witness.
- ``links``: the link to p9, who does not exist.
- ``warnings``: w2 code ``XX``; w3 reviewed before it started; w4 ended before its review; w6 has
  no code at all.

NULLs that SQL's three-valued logic would let through are planted too: a person with no id
(so ``person_id IN (...)`` meets a NULL), a victim link with no crime.
"""

from __future__ import annotations

import datetime as dt
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import (
    Boolean,
    Column,
    Date,
    MetaData,
    String,
    Table,
    create_engine,
    insert,
)

from validators import gx

D = dt.date
meta = MetaData()
people = Table(
    "people",
    meta,
    Column("person_id", String(8)),
    Column("dob", Date),
    Column("dob_estimated", Boolean),
    Column("postcode", String(10)),
)
crimes = Table(
    "crimes",
    meta,
    Column("crime_id", String(8)),
    Column("crime_ref", String(20)),
    Column("offence", String(8)),
    Column("legacy_code", String(8)),
)
links = Table(
    "links",
    meta,
    Column("link_id", String(8)),
    Column("crime_id", String(8)),
    Column("person_id", String(8)),
    Column("role", String(10)),
)


def _indexed(table: Table, column: str) -> Table:
    """A copy of ``table`` (``indexed_`` + its name, the same rows) with an index on
    ``column``: a reference or a victim is then looked up per row."""
    return Table(
        f"indexed_{table.name}",
        meta,
        *(Column(c.name, c.type, index=c.name == column) for c in table.columns),
    )


indexed_people = _indexed(people, "person_id")
indexed_links = _indexed(links, "crime_id")
warnings_ = Table(
    "warnings",
    meta,
    Column("warning_id", String(8)),
    Column("code", String(12)),
    Column("start_date", Date),
    Column("review_date", Date),
    Column("end_date", Date),
)

ROWS: dict[Table, list[dict[str, Any]]] = {
    people: [
        {"person_id": "p1", "dob": D(1980, 2, 1), "dob_estimated": False, "postcode": "M3 7BE"},
        {"person_id": "p2", "dob": D(2090, 1, 1), "dob_estimated": False, "postcode": "OL2 8XQ"},
        {"person_id": "p3", "dob": D(1850, 5, 5), "dob_estimated": False, "postcode": None},
        {"person_id": "p4", "dob": None, "dob_estimated": True, "postcode": "M1 1AA"},
        {"person_id": "p5", "dob": D(1971, 1, 1), "dob_estimated": True, "postcode": "BL280NL"},
        {"person_id": "p6", "dob": D(1990, 6, 30), "dob_estimated": None, "postcode": "m3 7be"},
        {"person_id": "p7", "dob": None, "dob_estimated": False, "postcode": None},
        {"person_id": None, "dob": D(1975, 3, 3), "dob_estimated": False, "postcode": "M2 2BB"},
    ],
    crimes: [
        {"crime_id": "c1", "crime_ref": "CRI/21/00000001", "offence": "8N", "legacy_code": "8/1"},
        {"crime_id": "c2", "crime_ref": "CRI-21-1", "offence": "46", "legacy_code": "46"},
        {"crime_id": "c3", "crime_ref": "06/00000003/16", "offence": "ZZ", "legacy_code": "46"},
        {"crime_id": "c4", "crime_ref": "CRI/21/00000004", "offence": "46", "legacy_code": "77/7"},
        {"crime_id": "c5", "crime_ref": "CRI/21/00000005", "offence": "8N", "legacy_code": "8/1"},
        {"crime_id": "c6", "crime_ref": "CRI/21/00000006", "offence": "46", "legacy_code": None},
    ],
    links: [
        {"link_id": "l1", "crime_id": "c1", "person_id": "p1", "role": "VICTIM"},
        {"link_id": "l2", "crime_id": "c5", "person_id": "p1", "role": "WITNESS"},
        {"link_id": "l3", "crime_id": "c6", "person_id": "p9", "role": "SUSPECT"},
        {"link_id": "l4", "crime_id": "c6", "person_id": None, "role": "REPORTER"},
        {"link_id": "l5", "crime_id": None, "person_id": "p1", "role": "VICTIM"},
    ],
    warnings_: [
        {
            "warning_id": "w1",
            "code": "FIREARMS",
            "start_date": D(2019, 1, 1),
            "review_date": D(2020, 1, 1),
            "end_date": D(2021, 1, 1),
        },
        {
            "warning_id": "w2",
            "code": "XX",
            "start_date": None,
            "review_date": None,
            "end_date": None,
        },
        {
            "warning_id": "w3",
            "code": "VIOLENT",
            "start_date": D(2020, 1, 1),
            "review_date": D(2019, 1, 1),
            "end_date": None,
        },
        {
            "warning_id": "w4",
            "code": "VIOLENT",
            "start_date": None,
            "review_date": D(2021, 1, 1),
            "end_date": D(2020, 1, 1),
        },
        {
            "warning_id": "w5",
            "code": "WEAPONS",
            "start_date": D(2019, 1, 1),
            "review_date": None,
            "end_date": None,
        },
        {
            "warning_id": "w6",
            "code": None,
            "start_date": D(2019, 1, 1),
            "review_date": None,
            "end_date": None,
        },
    ],
}


ROWS[indexed_links] = ROWS[links]
ROWS[indexed_people] = ROWS[people]


def load(url: str) -> str:
    engine = create_engine(url)
    meta.create_all(engine)
    with engine.begin() as conn:
        for table, rows in ROWS.items():
            conn.execute(insert(table), rows)
    engine.dispose()
    return url


@pytest.fixture(scope="module")
def codes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("codes")
    (folder / "ho_v1.csv").write_text("code,description,needs_victim\n8N,Assault,1\n46,Shop,0\n")
    (folder / "crosswalk.csv").write_text("from,to\n8/1,8N\n46,46\n")
    return folder


@pytest.fixture(scope="module")
def engine() -> Iterator[gx.GX]:
    with gx.GX() as found:
        yield found


@pytest.fixture(
    scope="module",
    params=[
        "sqlite",
        pytest.param("postgresql", marks=pytest.mark.postgres),
        pytest.param("mariadb", marks=pytest.mark.mariadb),
    ],
)
def url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if request.param == "sqlite":
        yield load(f"sqlite:///{tmp_path_factory.mktemp('db') / 'planted.sqlite'}")
    elif request.param == "postgresql":
        yield load(request.getfixturevalue("pg_database_for_module")())
    else:
        yield load(request.getfixturevalue("mariadb_database_for_module")())


def cases(codes: Path) -> list[tuple[str, str, str, dict[str, Any], set[str]]]:
    """(table, key column, expectation, arguments, keys of the planted bad rows)."""
    ho, crosswalk = str(codes / "ho_v1.csv"), str(codes / "crosswalk.csv")
    return [
        (
            "people",
            "person_id",
            "expect_column_values_to_be_uk_postcodes",
            {"column": "postcode"},
            {"p5", "p6"},
        ),
        (
            "people",
            "person_id",
            "expect_dates_of_birth_to_be_plausible",
            {"column_list": ["dob", "dob_estimated"], "latest": "2026-06-30"},
            {"p2", "p3", "p4"},
        ),
        (
            "crimes",
            "crime_id",
            "expect_column_values_to_be_crime_references",
            {"column": "crime_ref"},
            {"c2"},
        ),
        (
            "crimes",
            "crime_id",
            "expect_column_values_to_be_home_office_offence_codes",
            {"column": "offence", "code_list": ho},
            {"c3"},
        ),
        (
            "crimes",
            "crime_id",
            "expect_column_values_to_be_in_crosswalk",
            {"column": "legacy_code", "code_list": crosswalk},
            {"c4"},
        ),
        (
            "crimes",
            "crime_id",
            "expect_offences_needing_a_victim_to_have_one",
            {
                "column_list": ["crime_id", "offence"],
                "code_list": ho,
                "link_table": "links",
                "link_column": "crime_id",
                "role_column": "role",
                "victim_roles": ["VICTIM"],
            },
            {"c5"},
        ),
        (
            "crimes",
            "crime_id",
            "expect_offences_needing_a_victim_to_have_one",
            {
                "column_list": ["crime_id", "offence"],
                "code_list": ho,
                "link_table": "indexed_links",
                "link_column": "crime_id",
                "role_column": "role",
                "victim_roles": ["VICTIM"],
            },
            {"c5"},
        ),
        (
            "links",
            "link_id",
            "expect_column_values_to_reference_existing_rows",
            {"column": "person_id", "referenced_table": "people", "referenced_column": "person_id"},
            {"l3"},
        ),
        (
            "warnings",
            "warning_id",
            "expect_warning_markers_to_be_valid",
            {
                "column_list": ["code", "start_date", "review_date", "end_date"],
                "codes": ["FIREARMS", "VIOLENT", "WEAPONS"],
            },
            {"w2", "w3", "w4", "w6"},
        ),
    ]


CASE_IDS = [
    "postcode",
    "dob",
    "crime_reference",
    "ho_offence",
    "crosswalk",
    "victim",
    "victim_by_index",
    "dangling",
    "warning",
]


@pytest.mark.parametrize("case", range(len(CASE_IDS)), ids=CASE_IDS)
def test_fails_on_planted_rows_with_their_keys(
    engine: gx.GX, url: str, codes: Path, case: int
) -> None:
    table, key, name, arguments, planted = cases(codes)[case]
    outcome = engine.validate(
        engine.table(url, table), gx.build(name, arguments), "COMPLETE", [key]
    )
    assert outcome.error is None
    assert not outcome.success
    assert {k[0] for k in outcome.keys or ()} == planted
    assert outcome.unexpected_count == len(planted)
    # A validation run aside sends its outcomes to the run, which need not import GX to read
    # them: GX's own text types (a multicolumn example's column names) come back as text.
    assert b"great_expectations" not in pickle.dumps(outcome)


@pytest.mark.parametrize("case", range(len(CASE_IDS)), ids=CASE_IDS)
def test_passes_on_good_rows(engine: gx.GX, url: str, codes: Path, case: int) -> None:
    """The same expectation on the good rows only (a query leaving the planted ones out)."""
    table, key, name, arguments, planted = cases(codes)[case]
    listed = ", ".join(f"'{k}'" for k in sorted(planted))
    batch = engine.query(url, f"SELECT * FROM {table} WHERE {key} NOT IN ({listed})")
    outcome = engine.validate(batch, gx.build(name, arguments), "COMPLETE", [key])
    assert outcome.error is None
    assert outcome.success, outcome
    assert outcome.keys == ()


def test_a_victim_is_looked_up_per_row_only_through_an_index(url: str) -> None:
    """Per row (EXISTS) where the link column leads an index, else one IN list of victims: a
    look-up per row without an index reads the whole link table each time."""
    from validators.expectations import _leads_an_index

    engine = create_engine(url)
    try:
        assert _leads_an_index(engine, "indexed_links", "crime_id")
        assert not _leads_an_index(engine, "links", "crime_id")
        assert not _leads_an_index(engine, "indexed_links", "person_id")
        assert not _leads_an_index(engine, "no_such_table", "crime_id")
    finally:
        engine.dispose()


@pytest.mark.parametrize("referenced", ["people", "indexed_people"])
def test_a_reference_on_a_querys_rows_finds_the_dangling_ones(
    engine: gx.GX, url: str, referenced: str
) -> None:
    """Some rows (a query: a delta's) look each value up where the referenced column leads an
    index; the same dangling link is found either way, and a NULL among the referenced
    values changes nothing."""
    batch = engine.query(url, "SELECT * FROM links WHERE link_id IN ('l1', 'l2', 'l3', 'l4')")
    arguments = {
        "column": "person_id",
        "referenced_table": referenced,
        "referenced_column": "person_id",
    }
    outcome = engine.validate(
        batch,
        gx.build("expect_column_values_to_reference_existing_rows", arguments),
        "COMPLETE",
        ["link_id"],
    )
    assert outcome.error is None
    assert outcome.keys == (("l3",),)
    assert outcome.unexpected_count == 1


def test_row_level_library_works_on_in_flight_rows(engine: gx.GX) -> None:
    """Postcodes, dates of birth and warning markers have pandas implementations too."""
    rows = [(r["person_id"], r["dob"], r["dob_estimated"], r["postcode"]) for r in ROWS[people]]
    batch = engine.frame(["person_id", "dob", "dob_estimated", "postcode"], rows)
    dob = gx.build(
        "expect_dates_of_birth_to_be_plausible",
        {"column_list": ["dob", "dob_estimated"], "latest": "2026-06-30"},
    )
    found = engine.validate(batch, dob, "COMPLETE", ["person_id"])
    assert {k[0] for k in found.keys or ()} == {"p2", "p3", "p4"}
    postcode = gx.build("expect_column_values_to_be_uk_postcodes", {"column": "postcode"})
    found = engine.validate(batch, postcode, "COMPLETE", ["person_id"])
    assert {k[0] for k in found.keys or ()} == {"p5", "p6"}
    w = [tuple(r.values()) for r in ROWS[warnings_]]
    batch = engine.frame(["warning_id", "code", "start_date", "review_date", "end_date"], w)
    markers = gx.build(
        "expect_warning_markers_to_be_valid",
        {
            "column_list": ["code", "start_date", "review_date", "end_date"],
            "codes": ["FIREARMS", "VIOLENT", "WEAPONS"],
        },
    )
    found = engine.validate(batch, markers, "COMPLETE", ["warning_id"])
    assert {k[0] for k in found.keys or ()} == {"w2", "w3", "w4", "w6"}


def test_a_missing_column_is_an_error_not_a_pass(engine: gx.GX, url: str) -> None:
    expectation = gx.build("expect_column_values_to_be_uk_postcodes", {"column": "nope"})
    outcome = engine.validate(engine.table(url, "people"), expectation, "COMPLETE", ["person_id"])
    assert not outcome.success
    assert outcome.error and "nope" in outcome.error
