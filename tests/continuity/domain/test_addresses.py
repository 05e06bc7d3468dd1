"""Postcodes, address keys and gazetteer resolution: unit cases, a property, and the estate.

The estate test resolves every legacy ``ADDRESS`` and every ``pw_location`` of the shared small
estate against its ``gazetteer.csv``. Which place each source address is, and that place's UPRN
(or none: not in the gazetteer), is read from the ideal target: its ``migration_crosswalk`` maps
each source address to its ``location``, which holds the UPRN a perfect migration gives it.
"""

from __future__ import annotations

import csv
import sqlite3
from collections import Counter
from contextlib import closing
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from continuity.domain.addresses import (
    BY_POSTCODE,
    BY_STREET_AND_TOWN,
    CONFLICTING_POSTCODES,
    NO_HOUSE_MATCH,
    NO_POSTCODE,
    NO_STREET,
    POSTCODE_NOT_IN_GAZETTEER,
    AddressKey,
    Gazetteer,
    address_key,
    find_postcode,
    normalise_postcode,
    text_key,
)
from continuity.domain.errors import ExtractError

# --- postcodes -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("M1 1AE", "M1 1AE"),
        ("m11ae", "M1 1AE"),
        ("  M1   1AE ", "M1 1AE"),
        ("m1 1ae", "M1 1AE"),
        ("M 1 1AE", "M1 1AE"),
        ("sw1a1aa", "SW1A 1AA"),
        ("EC1A 1BB", "EC1A 1BB"),
        ("W1A 0AX", "W1A 0AX"),
        ("CR2 6XH", "CR2 6XH"),
        ("DN55 1PT", "DN55 1PT"),
        ("WN376TF", "WN37 6TF"),
        ("gir 0aa", "GIR 0AA"),
        # The inward code's first character is always a digit: O and I there are 0 and 1.
        ("M1 IAE", "M1 1AE"),
        ("OL1 OXG", "OL1 0XG"),
    ],
)
def test_postcodes_in_any_case_and_spacing_take_the_canonical_form(
    text: str, expected: str
) -> None:
    assert normalise_postcode(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        None,
        "",
        "M1",
        "NFA",
        "MANCHESTER",
        "12 ACACIA RD",
        "FLAT 2",
        "M1 1AEX",
        "QA1 1AA",  # Q never starts a postcode
        "M1 1CA",  # C is never an inward letter
        "M1 1OE",  # nor is O: no correction outside the inward digit
        "1M 1AE",
        "M1 11A",
    ],
)
def test_what_is_not_a_postcode_is_none(text: str | None) -> None:
    assert normalise_postcode(text) is None


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (["12 ACACIA RD", "MANCHESTER", "M1 1AE", None, None], "M1 1AE"),
        (["M11AE", "12 ACACIA RD", None], "M1 1AE"),
        (["12 ACACIA RD", "MANCHESTER m1 1ae"], "M1 1AE"),
        (["12 ACACIA RD, MANCHESTER, M1 1AE"], "M1 1AE"),
        (["12 ACACIA RD", "M1 1AE", "m11ae"], "M1 1AE"),  # written twice, the same
        (["12 ACACIA RD", "MANCHESTER", None, None, None], None),
        (["12 ACACIA RD", "M1 1AE", "M2 2BD"], None),  # two different postcodes
        ([None, "", None], None),
        (["M1 1AE", "M2 2BD", "M1 1AE"], None),  # (a third line does not settle it)
        (["MANCHESTER", "M\u00b9 \u00b9AE"], "M1 1AE"),  # superscript ones fold into digits
    ],
)
def test_find_postcode_reads_whichever_line_holds_it(
    lines: list[str | None], expected: str | None
) -> None:
    assert find_postcode(lines) == expected


@given(
    st.lists(
        st.one_of(
            st.none(),
            st.text(alphabet="AM12 ,.-'&ée\u00b9", max_size=24),
            st.sampled_from(["M1 1AE", "m11ae", "SALFORD M5 4WT", "12 ACACIA RD, M2 2BD", "M1"]),
        ),
        max_size=5,
    )
)
def test_find_postcode_reads_lines_as_the_address_parser_does(lines: list[str | None]) -> None:
    """The postcode alone, read without the streets, is the one the full reading finds."""
    from continuity.domain.addresses import _line_parts

    found = {p[1] for line in lines if line for p in _line_parts(line) if p[1]}
    assert find_postcode(lines) == (found.pop() if len(found) == 1 else None)


# --- address keys ----------------------------------------------------------------------------

CANAL = AddressKey("M25 9UN", "223", "CANAL TERRACE", "FLAT 2", ("DENTON", "MANCHESTER"))


@pytest.mark.parametrize(
    "lines",
    [
        ["FLAT 2", "223 CANAL TERRACE", "DENTON", "MANCHESTER", "M259UN"],
        ["Flat 2", "223 Canal Terrace", "Denton", "Manchester", "M25 9UN"],
        ["FLAT 2", "223 CANAL TCE", "DENTON", "MANCHESTER", "m25 9un"],
        [None, "FLAT 2", "", "223 CANAL TCE", "DENTON", None, "MANCHESTER", "M25 9UN"],
        ["FLAT 2 223 CANAL TCE, DENTON", "MANCHESTER M25 9UN"],
        ["Flt. 2, 223, Canal Tce.", "Denton, Manchester;M25 9UN"],
        ["FLAT 2", "223 CANAL TCE DENTON", "MANCHESTER", "M25 9UN"],
    ],
)
def test_the_key_survives_case_abbreviations_and_shifted_or_merged_lines(
    lines: list[str | None],
) -> None:
    assert address_key(lines) == CANAL


def test_the_key_reads_numbers_punctuation_and_saints() -> None:
    key = address_key(["12-14 St. John's Rd.", "Ashton-under-Lyne", "OL6 7JP"])
    assert key == AddressKey("OL6 7JP", "12-14", "ST JOHNS ROAD", None, ("ASHTON UNDER LYNE",))
    assert address_key(["12 A ACACIA AVE", "BURY"]).number == "12A"
    assert address_key(["12a Acacia Avenue", "Bury"]).number == "12A"
    high = address_key(["12 HIGH ST ST HELENS"])
    assert (high.street, high.areas) == ("HIGH ST", ("ST HELENS",))
    assert text_key("Saint Helens") == text_key("St. Helens") == "ST HELENS"


def test_an_address_without_a_street_has_no_street_in_its_key() -> None:
    assert address_key(["NFA", None, None, None, None]) == AddressKey(
        None, None, None, None, ("NFA",)
    )
    named = address_key(["ROSE COTTAGE", "ACACIA RD", "M1 1AE"])
    assert (named.number, named.street, named.building) == (None, "ACACIA ROAD", "ROSE COTTAGE")


_ABBREVIATIONS = {
    "Road": ("RD", "ROAD", "road", "Rd."),
    "Street": ("ST", "STREET", "St.", "STR"),
    "Avenue": ("AVE", "AV", "Ave."),
    "Lane": ("LN", "LANE"),
    "Close": ("CL", "CLOSE"),
    "Drive": ("DR", "DRV"),
    "Grove": ("GR", "GRO", "GRV"),
    "Terrace": ("TCE", "TER", "TERR"),
    "Crescent": ("CRES", "CRESC"),
    "Gardens": ("GDNS",),
}
_NAMES = ("Acacia", "Albert", "Victoria", "Church", "Station", "Mill", "Queens", "Oak", "Granby")
_TOWNS = ("Manchester", "Salford", "Ashton-under-Lyne", "Bolton", "Wigan")
_LOCALITIES = ("Moss Side", "Cheetham Hill", "Didsbury", "Hulme")
_BUILDINGS = ("Rose Cottage", "The Old Vicarage", "Flat A", "Flat 2", "Unit 4")
_INWARD_LETTERS = "ABDEFGHJLNPQRSTUWXYZ"


@st.composite
def _address(draw: st.DrawFn) -> list[str]:
    """An address as the gazetteer writes it: building, number and street, locality, town,
    postcode (each optional part may be absent)."""
    lines = []
    if draw(st.booleans()):
        lines.append(draw(st.sampled_from(_BUILDINGS)))
    number = str(draw(st.integers(1, 999))) + draw(st.sampled_from(("", "", "A", "B")))
    words = draw(st.lists(st.sampled_from(_NAMES), min_size=1, max_size=2))
    kind = draw(st.sampled_from(sorted(_ABBREVIATIONS)))
    lines.append(" ".join([number, *words, kind]))
    if draw(st.booleans()):
        lines.append(draw(st.sampled_from(_LOCALITIES)))
    lines.append(draw(st.sampled_from(_TOWNS)))
    area = draw(st.sampled_from(("M", "SK", "OL", "BL", "WN", "WA")))
    inward = draw(st.sampled_from(_INWARD_LETTERS)) + draw(st.sampled_from(_INWARD_LETTERS))
    lines.append(f"{area}{draw(st.integers(1, 39))} {draw(st.integers(0, 9))}{inward}")
    return lines


@st.composite
def _rewritten(draw: st.DrawFn, lines: list[str]) -> list[str | None]:
    """The same address with each word's case changed, spaces added, the street type written
    another way, and empty lines put anywhere."""
    out: list[str | None] = []
    for line in lines:
        words = []
        for word in line.split(" "):
            if word in _ABBREVIATIONS:
                word = draw(st.sampled_from((word, *_ABBREVIATIONS[word])))
            case = draw(st.sampled_from(("same", "upper", "lower", "title", "swap")))
            if case != "same":
                word = getattr(word, case if case != "swap" else "swapcase")()
            words.append(word)
        gap = " " * draw(st.integers(1, 3))
        out.append(" " * draw(st.integers(0, 2)) + gap.join(words) + " " * draw(st.integers(0, 2)))
        if draw(st.booleans()):
            out.append(draw(st.sampled_from((None, "", "   "))))
    return out


@given(st.data())
def test_the_key_is_invariant_under_case_whitespace_and_abbreviations(data: st.DataObject) -> None:
    lines = data.draw(_address())
    variant = data.draw(_rewritten(lines))
    key = address_key(lines)
    assert key.number is not None and key.street is not None and key.postcode is not None
    assert address_key(variant) == key


# --- resolution ------------------------------------------------------------------------------

# uprn, building, number, street, locality, town, postcode, easting, northing
_ROWS = [
    (
        "000000000101",
        "",
        "12",
        "Acacia Road",
        "Moss Side",
        "Manchester",
        "M14 4AB",
        "383000",
        "395000",
    ),
    (
        "000000000102",
        "",
        "14",
        "Acacia Road",
        "Moss Side",
        "Manchester",
        "M14 4AB",
        "383010",
        "395000",
    ),
    ("000000000103", "Flat 1", "16", "Acacia Road", "Moss Side", "Manchester", "M14 4AB", "1", "2"),
    ("000000000104", "Flat 2", "16", "Acacia Road", "Moss Side", "Manchester", "M14 4AB", "1", "2"),
    (
        "000000000105",
        "Rose Cottage",
        "18",
        "Acacia Road",
        "Moss Side",
        "Manchester",
        "M14 4AB",
        "",
        "",
    ),
    ("000000000106", "Flat 2", "20", "Acacia Road", "Moss Side", "Manchester", "M14 4AB", "", ""),
    ("000000000107", "", "12", "Church Road", "", "Bolton", "BL1 2AB", "370000", "408000"),
    ("000000000108", "", "12", "Church Road West", "", "Bolton", "BL1 2AB", "370001", "408001"),
    ("000000000109", "", "30", "Church Road", "", "Bolton", "BL1 2AD", "1", "1"),
    ("000000000110", "", "30", "Church Road", "", "Bolton", "BL1 2AD", "1", "1"),  # duplicated
    ("000000000111", "", "5", "Mill Lane", "Hulme", "Manchester", "M15 5AA", "1", "1"),
    ("000000000111", "", "5", "Mill Lane", "Hulme", "Manchester", "M15 5AA", "1", "1"),  # same UPRN
    ("000000000112", "", "7", "Oak Grove", "Hulme", "Salford", "M6 6AA", "1", "1"),
    ("000000000113", "", "7", "Oak Grove", "Chorlton", "Salford", "M6 7AA", "1", "1"),
    ("000000000114", "", "9", "Elm Street", "", "Wigan", "WN1 1AA", "1", "1"),
    ("ABC-115", "", "3", "High Street", "", "Bury", "BL9 0AA", "1", "1"),
    ("000000000116", "The Lodge", "", "Park Lane", "", "Bury", "BL9 0AB", "1", "1"),
    ("000000000117", "", "7", "Oak Grove", "Hulme", "Salford", "M6 8AA", "1", "1"),
]


@pytest.fixture(scope="module")
def gazetteer() -> Gazetteer:
    g = Gazetteer()
    for row in _ROWS:
        g.add(*row)
    return g


def test_a_legacy_address_resolves_to_the_gazetteer_address_and_its_spelling(
    gazetteer: Gazetteer,
) -> None:
    res = gazetteer.resolve(["12 ACACIA RD", "MOSS SIDE", "MANCHESTER", "m144ab", None])
    assert res.reason is None and res.match is not None
    m = res.match
    assert (m.uprn, m.method, m.postcode, m.easting, m.northing) == (
        "000000000101",
        BY_POSTCODE,
        "M14 4AB",
        383000,
        395000,
    )
    assert m.lines() == (None, "12 Acacia Road", "Moss Side", "Manchester", None)
    assert gazetteer.match(["Rose Cottage", "18 Acacia Road", "M14 4AB"]) == gazetteer.match(
        ["ROSE COTTAGE 18 ACACIA RD, MOSS SIDE, MANCHESTER M14 4AB"]
    )
    cottage = gazetteer.match(["18 ACACIA RD", "M14 4AB"])
    assert cottage is not None and (cottage.easting, cottage.northing) == (None, None)


@pytest.mark.parametrize(
    ("lines", "reason"),
    [
        (["NFA", None, None, None, None], NO_POSTCODE),
        (["12 ACACIA RD", "MANCHESTER", "M14 4AZ"], POSTCODE_NOT_IN_GAZETTEER),
        (["ACACIA RD", "M14 4AB"], NO_HOUSE_MATCH),  # a street is not an address
        (["MOSS SIDE", "M14 4AB"], NO_STREET),
        (["13 ACACIA RD", "M14 4AB"], NO_HOUSE_MATCH),
        (["12 OAK GROVE", "M14 4AB"], NO_HOUSE_MATCH),  # a house of another street
        (["12 ACACIA RD", "M14 4AB", "M15 5AA"], CONFLICTING_POSTCODES),
        # A flat the gazetteer does not list is not the building's (or another flat's) UPRN.
        (["FLAT 3", "16 ACACIA RD", "M14 4AB"], NO_HOUSE_MATCH),
        (["FLAT 3", "12 ACACIA RD", "M14 4AB"], NO_HOUSE_MATCH),
        # A flat the address omits is not taken for the address, even the only one listed.
        (["16 ACACIA RD", "M14 4AB"], NO_HOUSE_MATCH),
        (["20 ACACIA RD", "M14 4AB"], NO_HOUSE_MATCH),
        # Text after the street that is no locality or town of the candidate: another street.
        (["30 CHURCH RD WEST", "BL1 2AD"], NO_HOUSE_MATCH),
    ],
)
def test_no_match_says_why(gazetteer: Gazetteer, lines: list[str | None], reason: str) -> None:
    res = gazetteer.resolve(lines)
    assert (res.match, res.reason, res.candidates) == (None, reason, ())
    assert gazetteer.match(lines) is None


@pytest.mark.parametrize(
    ("lines", "candidates"),
    [
        (["30 CHURCH RD", "BOLTON", "BL1 2AD"], ("000000000109", "000000000110")),
        # Without a postcode, two houses whose written address is the same.
        (["7 OAK GROVE", "HULME", "SALFORD"], ("000000000112", "000000000117")),
    ],
)
def test_two_candidates_equally_good_are_no_match(
    gazetteer: Gazetteer, lines: list[str | None], candidates: tuple[str, ...]
) -> None:
    res = gazetteer.resolve(lines)
    assert res.match is None
    assert res.reason == f"ambiguous: {len(candidates)} candidates"
    assert res.candidates == candidates


@pytest.mark.parametrize(
    ("lines", "uprn"),
    [
        (["FLAT 2", "16 ACACIA RD", "M14 4AB"], "000000000104"),
        (["Flat 1, 16 Acacia Road", "Manchester M14 4AB"], "000000000103"),
        (["18 ACACIA RD", "M14 4AB"], "000000000105"),  # a house name may be left out
        (["12 CHURCH RD", "BOLTON", "BL1 2AB"], "000000000107"),
        (["12 CHURCH RD WEST", "BOLTON", "BL1 2AB"], "000000000108"),
        (["12 CHURCH RD BOLTON", "BL1 2AB"], "000000000107"),  # the town merged on the line
        (["5 MILL LN", "HULME", "MANCHESTER", "M155AA"], "000000000111"),  # listed twice
        (["THE LODGE", "PARK LN", "BL9 0AB"], "000000000116"),  # a name and no number
        (["3 HIGH ST", "BURY", "BL9 0AA"], "ABC-115"),
        (["7 OAK GROVE", "HULME", "SALFORD", "M6 8AA"], "000000000117"),
    ],
)
def test_postcode_street_number_and_building_decide(
    gazetteer: Gazetteer, lines: list[str | None], uprn: str
) -> None:
    m = gazetteer.match(lines)
    assert m is not None and (m.uprn, m.method) == (uprn, BY_POSTCODE)


@pytest.mark.parametrize(
    ("lines", "uprn"),
    [
        (["12 ACACIA ROAD", "MOSS SIDE", "MANCHESTER", None, None], "000000000101"),
        (["7 OAK GR", "CHORLTON, SALFORD"], "000000000113"),
        (["7 OAK GR CHORLTON", "SALFORD"], "000000000113"),
        (["9 ELM ST", "WIGAN"], "000000000114"),
    ],
)
def test_without_a_postcode_street_number_locality_and_town_must_all_agree(
    gazetteer: Gazetteer, lines: list[str | None], uprn: str
) -> None:
    m = gazetteer.match(lines)
    assert m is not None and (m.uprn, m.method) == (uprn, BY_STREET_AND_TOWN)


@pytest.mark.parametrize(
    "lines",
    [
        ["12 ACACIA ROAD", "MANCHESTER"],  # the gazetteer has a locality the address does not
        ["12 ACACIA ROAD", "MOSS SIDE"],  # no town
        ["12 ACACIA ROAD", "HULME", "MANCHESTER"],  # another locality
        ["12 ACACIA ROAD", "MOSS SIDE", "SALFORD"],  # another town
        ["7 OAK GROVE", "SALFORD"],  # the locality, which tells two houses apart, is missing
        ["9 ELM ST", "WIGAN", "LANCASHIRE"],  # text that is neither
    ],
)
def test_without_a_postcode_anything_not_agreeing_is_no_match(
    gazetteer: Gazetteer, lines: list[str | None]
) -> None:
    assert gazetteer.resolve(lines) == (None, NO_POSTCODE, ())


def test_rows_are_held_compactly_and_read_back_as_written(gazetteer: Gazetteer) -> None:
    assert len(gazetteer) == len(_ROWS)
    lodge = gazetteer.match(["THE LODGE", "PARK LANE", "BL9 0AB"])
    assert lodge is not None
    assert (lodge.building, lodge.number, lodge.street, lodge.locality) == (
        "The Lodge",
        None,
        "Park Lane",
        None,
    )
    assert lodge.lines() == ("The Lodge", "Park Lane", None, "Bury", None)


def test_bad_gazetteer_rows_are_one_line_errors() -> None:
    g = Gazetteer()
    g.add("1", "", "1", "Acacia Road", "", "Bury", "BL9 0AA", "1", "1")
    with pytest.raises(ExtractError, match=r"^gazetteer row 2: no UPRN$"):
        g.add("  ", "", "2", "Acacia Road", "", "Bury", "BL9 0AA", "1", "1")
    with pytest.raises(ExtractError, match=r"^gazetteer row 2: northing 'north' is not a number$"):
        g.add("2", "", "2", "Acacia Road", "", "Bury", "BL9 0AA", "1", "north")
    assert len(g) == 1


# --- the estate ------------------------------------------------------------------------------


def _source_addresses(estate: Path) -> dict[tuple[str, str], tuple[list[str | None], str | None]]:
    """(table, key) -> (address lines, UPRN the source itself holds) of every source address."""
    found: dict[tuple[str, str], tuple[list[str | None], str | None]] = {}
    with closing(sqlite3.connect(estate / "legacy.sqlite")) as db:
        for ref, *lines in db.execute(
            "SELECT ADDR_REF, LINE1, LINE2, LINE3, LINE4, LINE5 FROM ADDRESS"
        ):
            found[("ADDRESS", ref)] = (lines, None)
    with closing(sqlite3.connect(estate / "policeworks.sqlite")) as db:
        for key, uprn, *fields in db.execute(
            "SELECT location_id, uprn, building, street, locality, town, postcode FROM pw_location"
        ):
            found[("pw_location", key)] = (fields, uprn)
    return found


def _true_locations(estate: Path) -> dict[tuple[str, str], tuple[str | None, tuple[object, ...]]]:
    """(table, key) -> (true UPRN or None, the target location row) from the ideal target."""
    with closing(sqlite3.connect(estate / "target.sqlite")) as db:
        return {
            (table, key): (uprn, tuple(rest))
            for table, key, uprn, *rest in db.execute(
                "SELECT x.source_table, x.source_key, l.uprn, l.line1, l.line2, l.line3, l.line4,"
                " l.line5, l.postcode, l.easting, l.northing"
                " FROM migration_crosswalk x JOIN location l ON l.location_id = x.target_key"
                " WHERE x.target_table = 'location'"
            )
        }


def test_every_estate_address_resolves_to_its_true_uprn_or_stays_unmatched(
    small_estate: Path,
) -> None:
    gazetteer = Gazetteer()
    with (small_estate / "gazetteer.csv").open(newline="", encoding="utf-8") as fh:
        rows = csv.reader(fh)
        next(rows)
        for row in rows:
            gazetteer.add(*row)
    truth = _true_locations(small_estate)
    outcomes: Counter[str] = Counter()
    wrong, missed, found_unmatchable = [], [], []
    for (table, key), (lines, held_uprn) in _source_addresses(small_estate).items():
        res = gazetteer.resolve(lines)
        got = res.match.uprn if res.match else None
        if (table, key) not in truth:  # the NFA placeholder: no place at all
            assert key == "A000000000" and res.reason == NO_POSTCODE
            continue
        true_uprn, location = truth[(table, key)]
        if held_uprn is not None:
            assert true_uprn == held_uprn  # a PoliceWorks UPRN is the truth too
        if got is not None and got != true_uprn:
            wrong.append((table, key, lines, true_uprn, res))
        elif got is None and true_uprn is not None:
            missed.append((table, key, lines, true_uprn, res))
        elif got is None:
            found_unmatchable.append(res.reason)
        else:
            assert res.match is not None
            outcomes[f"{table} {res.match.method}"] += 1
            # The location a migration writes: the gazetteer's lines, postcode and coordinates.
            assert (
                *res.match.lines(),
                res.match.postcode,
                res.match.easting,
                res.match.northing,
            ) == location
    assert wrong == []  # precision 1.0: never a wrong UPRN
    assert missed == []  # recall 1.0
    # Every path was exercised: places with no UPRN, legacy addresses written without a
    # postcode, PoliceWorks locations held without their UPRN.
    assert len(found_unmatchable) >= 50
    assert set(found_unmatchable) <= {POSTCODE_NOT_IN_GAZETTEER, NO_HOUSE_MATCH, NO_POSTCODE}
    assert outcomes[f"ADDRESS {BY_STREET_AND_TOWN}"] >= 50
    assert outcomes[f"ADDRESS {BY_POSTCODE}"] >= 1000
    assert outcomes[f"pw_location {BY_POSTCODE}"] >= 1000


def test_a_place_held_by_both_systems_has_one_key(small_estate: Path) -> None:
    """The legacy lines and the PoliceWorks fields of one place give the same key (bar the
    postcode, when the legacy system never wrote it down)."""
    addresses = _source_addresses(small_estate)
    legacy_of: dict[str, str] = {}
    pairs = []
    with closing(sqlite3.connect(small_estate / "target.sqlite")) as db:
        for table, key, location in db.execute(
            "SELECT source_table, source_key, target_key FROM migration_crosswalk"
            " WHERE source_table IN ('ADDRESS', 'pw_location') ORDER BY source_table"
        ):
            if table == "ADDRESS":
                legacy_of[location] = key
            elif location in legacy_of:
                pairs.append((legacy_of[location], key))
    assert len(pairs) >= 500
    without_postcode = 0
    for legacy, pw in pairs:
        legacy_key = address_key(addresses[("ADDRESS", legacy)][0])
        pw_key = address_key(addresses[("pw_location", pw)][0])
        if legacy_key.postcode is None:
            without_postcode += 1
            pw_key = pw_key._replace(postcode=None)
        assert legacy_key == pw_key
    assert without_postcode >= 10
