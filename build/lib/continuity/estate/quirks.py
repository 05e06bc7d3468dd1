"""The estate's quirks, each with its stated minimum rate, measured on the databases.

This catalogue is the single statement of what the estate promises: docs/estate.md lists it,
``continuity estate quirks DIR`` prints the measured rates, and the tests assert every measured
rate is at least its minimum. Rates are measured on the data, never taken from the generator.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import MetaData, func, select

from continuity import target_schema
from continuity.domain.connect import engine_for
from continuity.domain.dates import london_to_utc
from continuity.domain.names import strip_diacritics
from continuity.estate import schemas, vocab

Row = Mapping[str, Any]


@dataclass(frozen=True)
class Quirk:
    """One quirk: rows of ``table`` (those passing ``among``) of which ``share`` show it."""

    name: str
    system: str
    table: str
    description: str
    minimum: float
    share: Callable[[Row], bool]
    among: Callable[[Row], bool] = lambda r: True


_TWO_DIGIT = re.compile(r"^\d\d/\d\d/\d\d( |$)")
_MONTH_NAME = re.compile(r"^\d\d-[A-Z]{3}-\d{4}( |$)")
_POSTCODE_SPACED = re.compile(r"^[A-Z]{1,2}\d{1,2} \d[A-Z]{2}$")
_POSTCODE_ANY = re.compile(r"^[A-Za-z]{1,2}\d{1,2} ?\d[A-Za-z]{2}$")
_MAPPED = {code for o in vocab.OFFENCES for code in o.legacy_codes}


def _lines(r: Row) -> list[str]:
    return [r[f"LINE{i}"] for i in range(1, 6) if r[f"LINE{i}"]]


def _postcode_line(r: Row) -> str | None:
    return next((x for x in _lines(r) if _POSTCODE_ANY.match(x)), None)


def _real_address(r: Row) -> bool:
    return r["LINE1"] != "NFA"


def _is_zero_date(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("0000-00-00")


SIMPLE: tuple[Quirk, ...] = (
    Quirk(
        "dob_two_digit_year",
        "legacy",
        "NOMINAL",
        "DOB as DD/MM/YY (century 19 for DOBs)",
        0.30,
        lambda r: bool(_TWO_DIGIT.match(r["DOB"] or "")),
    ),
    Quirk(
        "dob_month_name",
        "legacy",
        "NOMINAL",
        "DOB as DD-MON-YYYY",
        0.25,
        lambda r: bool(_MONTH_NAME.match(r["DOB"] or "")),
    ),
    Quirk(
        "dob_unknown_day_month",
        "legacy",
        "NOMINAL",
        "DOB as 00/00/YYYY (day and month unknown)",
        0.01,
        lambda r: (r["DOB"] or "").startswith("00/00/"),
    ),
    Quirk(
        "crime_date_two_digit_20xx",
        "legacy",
        "CRIME",
        "RECORDED as DD/MM/YY with YY < 70, meaning 20YY",
        0.15,
        lambda r: bool(_TWO_DIGIT.match(r["RECORDED"])) and r["RECORDED"][6:8] < "70",
    ),
    Quirk(
        "crime_date_two_digit_19xx",
        "legacy",
        "CRIME",
        "RECORDED as DD/MM/YY with YY >= 70, meaning 19YY",
        0.15,
        lambda r: bool(_TWO_DIGIT.match(r["RECORDED"])) and r["RECORDED"][6:8] >= "70",
    ),
    Quirk(
        "crime_date_month_name",
        "legacy",
        "CRIME",
        "RECORDED as DD-MON-YYYY HH:MM",
        0.25,
        lambda r: bool(_MONTH_NAME.match(r["RECORDED"])),
    ),
    Quirk(
        "crime_date_garbage",
        "legacy",
        "CRIME",
        "RECORDED that is no date (31/02, month 13)",
        0.0005,
        lambda r: r["RECORDED"][:6] in {"31/02/", "00/13/", "32/01/"},
    ),
    Quirk(
        "records_from_the_1970s",
        "legacy",
        "CRIME",
        "crimes recorded in 1975-1979",
        0.005,
        lambda r: bool(re.search(r"(/7[5-9] |-197[5-9] )", r["RECORDED"])),
    ),
    Quirk(
        "placeholder_unknown_name",
        "legacy",
        "NOMINAL",
        "FORENAME2 holds the placeholder UNKNOWN",
        0.01,
        lambda r: r["FORENAME2"] == "UNKNOWN",
    ),
    Quirk(
        "placeholder_unknown_pnc",
        "legacy",
        "NOMINAL",
        "PNC_ID holds the placeholder UNKNOWN",
        0.02,
        lambda r: r["PNC_ID"] == "UNKNOWN",
    ),
    Quirk(
        "placeholder_unknown_oic",
        "legacy",
        "CRIME",
        "OIC holds UNKNOWN on closed crimes",
        0.005,
        lambda r: r["OIC"] == "UNKNOWN",
        lambda r: r["STATUS"] == "CLOSED",
    ),
    Quirk(
        "placeholder_nfa_address",
        "legacy",
        "NOMINAL",
        "address is the NFA (no fixed abode) placeholder",
        0.005,
        lambda r: r["ADDR_REF"] == "A000000000",
    ),
    Quirk(
        "names_upper_case",
        "legacy",
        "NOMINAL",
        "names in upper case without diacritics",
        0.99,
        lambda r: r["SURNAME"] == r["SURNAME"].upper() and r["SURNAME"].isascii(),
    ),
    Quirk(
        "offence_code_slash",
        "legacy",
        "CRIME",
        "old-vocabulary offence code written with / (8/1)",
        0.15,
        lambda r: "/" in r["OFFENCE_CODE"],
    ),
    Quirk(
        "offence_code_dot",
        "legacy",
        "CRIME",
        "old-vocabulary offence code written with . (8.1)",
        0.10,
        lambda r: "." in r["OFFENCE_CODE"],
    ),
    Quirk(
        "offence_code_old_letter",
        "legacy",
        "CRIME",
        "old code with no Home Office twin (28A for 28E)",
        0.05,
        lambda r: r["OFFENCE_CODE"] in {"28A", "28B", "30", "30A", "49A"},
    ),
    Quirk(
        "offence_code_unmapped",
        "legacy",
        "CRIME",
        "offence code no crosswalk maps (quarantine)",
        0.001,
        lambda r: r["OFFENCE_CODE"] not in _MAPPED,
    ),
    Quirk(
        "address_postcode_missing",
        "legacy",
        "ADDRESS",
        "five free-text lines and no postcode",
        0.05,
        lambda r: _postcode_line(r) is None,
        _real_address,
    ),
    Quirk(
        "address_postcode_unspaced",
        "legacy",
        "ADDRESS",
        "postcode written without its space",
        0.05,
        lambda r: " " not in (_postcode_line(r) or " "),
        _real_address,
    ),
    Quirk(
        "address_postcode_lower_case",
        "legacy",
        "ADDRESS",
        "postcode written in lower case",
        0.05,
        lambda r: (_postcode_line(r) or "A") != (_postcode_line(r) or "A").upper(),
        _real_address,
    ),
    Quirk(
        "address_abbreviated_street",
        "legacy",
        "ADDRESS",
        "street type abbreviated (RD, AVE, ST)",
        0.15,
        lambda r: bool(
            re.search(
                r" (RD|ST|AVE|LN|CL|DR|GR|TCE)$",
                next((x for x in _lines(r) if x[:1].isdigit()), ""),
            )
        ),
        _real_address,
    ),
    Quirk(
        "warning_columns",
        "legacy",
        "NOMINAL",
        "warnings held in WARN1..WARN4",
        0.05,
        lambda r: bool(r["WARN1"]),
    ),
    Quirk(
        "premises_firearms_marker",
        "legacy",
        "ADDRESS",
        "premises marker FCH (firearms certificate holder)",
        0.002,
        lambda r: r["PREMISES_MARKER"] == vocab.LEGACY_PREMISES_FIREARMS,
        _real_address,
    ),
    Quirk(
        "pw_dob_estimated",
        "policeworks",
        "pw_person",
        "DOB flagged estimated",
        0.03,
        lambda r: bool(r["dob_estimated"]),
    ),
    Quirk(
        "pw_dob_unknown",
        "policeworks",
        "pw_person",
        "DOB unknown (NULL, or a zero date on MariaDB)",
        0.01,
        lambda r: r["dob"] is None or _is_zero_date(r["dob"]),
    ),
    Quirk(
        "pw_location_without_uprn",
        "policeworks",
        "pw_location",
        "location held without a UPRN",
        0.2,
        lambda r: r["uprn"] is None,
    ),
    Quirk(
        "pw_vendor_codes",
        "policeworks",
        "pw_occurrence",
        "vendor classification beside the HO code",
        0.99,
        lambda r: bool(r["vendor_class_code"]) and bool(r["ho_offence_code"]),
    ),
    Quirk(
        "pw_intelligence_unreviewed",
        "policeworks",
        "pw_intel",
        "intelligence report never reviewed",
        0.1,
        lambda r: r["review_state"] == "AWAITING_REVIEW",
    ),
    Quirk(
        "pw_restricted_warning",
        "policeworks",
        "pw_warning",
        "warning flagged restricted",
        0.02,
        lambda r: bool(r["restricted"]),
    ),
    Quirk(
        "pw_ended_warning",
        "policeworks",
        "pw_warning",
        "warning with an end date",
        0.05,
        lambda r: r["end_date"] is not None and not _is_zero_date(r["end_date"]),
    ),
)

#: Quirks measured across tables or against the ground truth (name, system, description, minimum).
DERIVED: tuple[tuple[str, str, str, float], ...] = (
    ("dangling_role_links", "legacy", "CRIME_NOMINAL rows whose nominal does not exist", 0.001),
    ("legacy_duplicate_nominals", "legacy", "humans held as two legacy nominals", 0.005),
    ("aliases", "legacy", "nominals with aliases in the ALIAS side table", 0.05),
    (
        "pw_person_per_occurrence",
        "policeworks",
        "humans in PoliceWorks held as 2+ person records",
        0.15,
    ),
    (
        "pw_spelling_transliteration",
        "policeworks",
        "person records spelled another way (Mohammed/Muhammad)",
        0.02,
    ),
    (
        "pw_spelling_apostrophe",
        "policeworks",
        "person records differing by an apostrophe or space (O'Brien)",
        0.002,
    ),
    (
        "pw_spelling_diacritics",
        "policeworks",
        "person records differing only by diacritics (Siobhán)",
        0.002,
    ),
    (
        "pw_dob_day_month_swapped",
        "policeworks",
        "person records with day and month of DOB swapped",
        0.01,
    ),
    ("twins", "truth", "humans who are twins (same surname and DOB, other forename)", 0.008),
    ("father_son", "truth", "humans in a father/son pair (same names, other DOB)", 0.005),
    (
        "crimes_in_both_systems",
        "policeworks",
        "PoliceWorks crimes loaded from legacy in 2019",
        0.15,
    ),
    (
        "both_systems_differ",
        "policeworks",
        "of those, copies differing in status, outcome, MO or offence",
        0.03,
    ),
    (
        "utc_vs_local",
        "policeworks",
        "of those, recorded time shifted by BST (UTC vs legacy local time)",
        0.3,
    ),
    ("gazetteer_unmatched", "target", "target locations with no UPRN in the gazetteer", 0.03),
)
MAXIMUM = {"gazetteer_unmatched": 0.15}  # "most but not all" addresses resolve


def _rows(engine: Any, metadata: MetaData, table: str) -> Iterator[Row]:
    t = metadata.tables[table]
    with engine.connect() as conn:
        yield from (r._mapping for r in conn.execution_options(yield_per=10_000).execute(select(t)))


def _parse_legacy(text: str) -> dt.datetime:
    day, _rest = text.split(" ")
    if "-" in day:
        return dt.datetime.strptime(text, "%d-%b-%Y %H:%M")
    value = dt.datetime.strptime(text, "%d/%m/%y %H:%M")
    century = 2000 if value.year % 100 < 70 else 1900
    return value.replace(year=century + value.year % 100)


def measure(urls: Mapping[str, str]) -> dict[str, tuple[int, int]]:
    """(rows showing the quirk, rows considered) for every quirk, read from the databases.

    ``urls`` maps ``legacy``, ``policeworks``, ``target`` and ``truth`` to SQLAlchemy URLs.
    """
    engines = {k: engine_for(v) for k, v in urls.items()}
    md = {"legacy": schemas.legacy, "policeworks": schemas.policeworks, "truth": schemas.truth}
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    by_table: dict[tuple[str, str], list[Quirk]] = defaultdict(list)
    for q in SIMPLE:
        by_table[(q.system, q.table)].append(q)
    for (system, table), quirks in by_table.items():
        for row in _rows(engines[system], md[system], table):
            for q in quirks:
                if q.among(row):
                    c = counts[q.name]
                    c[1] += 1
                    c[0] += bool(q.share(row))

    nominals = {r["NOMINAL_REF"] for r in _rows(engines["legacy"], md["legacy"], "NOMINAL")}
    dangling = sum(
        1
        for r in _rows(engines["legacy"], md["legacy"], "CRIME_NOMINAL")
        if r["NOMINAL_REF"] not in nominals
    )
    counts["dangling_role_links"] = [
        dangling,
        _count(engines["legacy"], md["legacy"], "CRIME_NOMINAL"),
    ]
    aliased = {r["NOMINAL_REF"] for r in _rows(engines["legacy"], md["legacy"], "ALIAS")}
    counts["aliases"] = [len(aliased), len(nominals)]

    humans = {r["human_id"]: r for r in _rows(engines["truth"], md["truth"], "human")}
    legacy_per_human: Counter[int] = Counter()
    pw_per_human: Counter[int] = Counter()
    spelling: Counter[str] = Counter()
    swapped = pw_records = 0
    for r in _rows(engines["truth"], md["truth"], "person_record"):
        if r["system"] == "legacy":
            legacy_per_human[r["human_id"]] += 1
            continue
        pw_per_human[r["human_id"]] += 1
        pw_records += 1
        h = humans[r["human_id"]]
        swapped += "dob_swap" in (r["variant"] or "")
        for true, seen in ((h["forename"], r["forename"]), (h["surname"], r["surname"])):
            if true == seen:
                continue
            if strip_diacritics(true) == strip_diacritics(seen):
                spelling["diacritics"] += 1
            elif re.sub(r"['\s]", "", true).lower() == re.sub(r"['\s]", "", seen).lower():
                spelling["apostrophe"] += 1
            else:
                spelling["transliteration"] += 1
    counts["legacy_duplicate_nominals"] = [
        sum(1 for n in legacy_per_human.values() if n > 1),
        len(legacy_per_human),
    ]
    counts["pw_person_per_occurrence"] = [
        sum(1 for n in pw_per_human.values() if n > 1),
        len(pw_per_human),
    ]
    for kind in ("transliteration", "apostrophe", "diacritics"):
        counts[f"pw_spelling_{kind}"] = [spelling[kind], pw_records]
    counts["pw_dob_day_month_swapped"] = [swapped, pw_records]
    pairs = Counter(r["kind"] for r in _rows(engines["truth"], md["truth"], "hard_pair"))
    counts["twins"] = [2 * pairs["twin"], len(humans)]
    counts["father_son"] = [2 * pairs["father_son"], len(humans)]

    legacy_crimes = {r["CRIME_NO"]: r for r in _rows(engines["legacy"], md["legacy"], "CRIME")}
    loaded = differ = shifted = occurrences = 0
    for r in _rows(engines["policeworks"], md["policeworks"], "pw_occurrence"):
        occurrences += 1
        if r["origin"] != "LEGACY_LOAD":
            continue
        loaded += 1
        old = legacy_crimes[r["legacy_crime_no"]]
        differ += (
            old["STATUS"] != r["status"]
            or old["MO_TEXT"] != r["mo_text"]
            or (old["OUTCOME"] or None) != r["outcome_code"]
        )
        local = _parse_legacy(old["RECORDED"])
        shifted += london_to_utc(local) != local and r["recorded_utc"] == london_to_utc(local)
    counts["crimes_in_both_systems"] = [loaded, occurrences]
    counts["both_systems_differ"] = [differ, loaded]
    counts["utc_vs_local"] = [shifted, loaded]

    unmatched = total = 0
    for r in _rows(engines["target"], target_schema.metadata, "location"):
        total += 1
        unmatched += r["match_status"] == "UNMATCHED"
    counts["gazetteer_unmatched"] = [unmatched, total]
    for engine in engines.values():
        engine.dispose()
    return {k: (v[0], v[1]) for k, v in counts.items()}


def _count(engine: Any, metadata: MetaData, table: str) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(select(func.count()).select_from(metadata.tables[table])).scalar_one()
        )


def catalogue() -> list[tuple[str, str, str, float]]:
    """(name, system, description, minimum rate) of every quirk, in documentation order."""
    return [(q.name, q.system, q.description, q.minimum) for q in SIMPLE] + list(DERIVED)
