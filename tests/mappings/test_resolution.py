"""Person resolution (mappings/resolution.py): who is one human, and the rules that forbid it."""

from __future__ import annotations

import datetime as dt
from typing import Any

from mappings.resolution import Resolver, ResolveSettings

D = dt.date


def resolve(
    records: list[tuple[Any, ...]],
    settings: ResolveSettings | None = None,
    decisions: dict[tuple[str, str], str] | None = None,
) -> Resolver:
    """Records are (key, forename, surname, dob, estimated, pnc, gender[, middle names])."""
    r = Resolver(settings, decisions)
    for key, *values in records:
        r.add(f"s|t|{key}", values)
    r.finish()
    return r


def together(r: Resolver, *keys: str) -> bool:
    anchors = {r.resolved(f"s|t|{k}").anchor for k in keys}  # type: ignore[union-attr]
    return len(anchors) == 1


def rule(r: Resolver, key: str) -> str:
    return r.resolved(f"s|t|{key}").rule  # type: ignore[union-attr]


def test_spelling_variants_with_the_same_dob_are_one_human() -> None:
    r = resolve(
        [
            ("1", "MOHAMMED", "KHAN", D(1984, 2, 1), False, None, "M"),
            ("2", "Muhammad", "Khan", D(1984, 2, 1), False, None, "M"),
            ("3", "Mohammed", "Khan", "1984-02-01", False, None, None),  # ISO text reads too
            ("4", "Siobhan", "O'Brien", D(1990, 5, 6), False, None, "F"),
            ("5", "Siobhán", "OBrien", D(1990, 5, 6), False, None, "F"),
            ("6", "Shivaun", "O Brien", D(1990, 5, 6), False, None, "F"),
            ("7", "Sarah", "Smith-Jones", D(1970, 1, 30), False, None, "F"),
            ("8", "Sarah", "Jones", D(1970, 1, 30), False, None, "F"),
        ]
    )
    assert together(r, "1", "2", "3")
    assert together(r, "4", "5", "6")
    assert together(r, "7", "8")
    assert r.cluster_count() == 3
    # The anchor is the first record added; the others say how and how well they joined.
    assert r.resolved("s|t|1") is not None and r.resolved("s|t|1").role == "anchor"  # type: ignore[union-attr]
    merged = r.resolved("s|t|2")
    assert merged is not None and merged.anchor == "s|t|1" and merged.rule == "merge:name_dob"
    assert merged.score is not None and 900 <= merged.score <= 1000


def test_a_swapped_dob_and_an_estimated_year_meet_the_true_one() -> None:
    r = resolve(
        [
            ("1", "Gary", "Walker", D(1975, 3, 8), False, None, "M", None, "M1 1AE"),
            ("2", "Gary", "Walker", D(1975, 8, 3), False, None, "M"),  # day and month swapped
            ("3", "Gary", "Walker", D(1975, 1, 1), True, None, "M", None, "M1 1AE"),  # estimate
            ("4", "Dean", "Ross", D(1980, 5, 5), False, None, "M", None, "M2 2BB"),
            ("5", "Dean", "Ross", D(1980, 1, 1), True, None, "M", None, None),  # nothing more
            ("6", "Kirsty", "Hall", D(1990, 6, 7), False, None, "F", None, "M3 3CC"),
            ("7", "Kirstie", "Hall", D(1990, 1, 1), True, None, "F", None, "M3 3CC"),  # not same
        ]
    )
    assert together(r, "1", "2", "3")
    assert rule(r, "2") == "merge:name_dob_swap"
    assert rule(r, "3") == "merge:name_dob_year"
    # An estimate is weak evidence: without the same home or middle name, or with a name not
    # quite the same, it waits for review.
    assert not together(r, "4", "5") and not together(r, "6", "7")
    assert r.stats.refused.get("weak", 0) == 2
    assert {p.b for p in r.review if p.refused == "weak"} == {"s|t|5", "s|t|7"}


def test_in_a_curated_index_two_nominals_at_different_homes_are_two_people() -> None:
    records = [
        ("1", "John", "Smith", D(1980, 4, 4), False, None, "M", None, "M1 1AE"),
        ("2", "John", "Smith", D(1980, 4, 4), False, None, "M", None, "OL1 2XY"),
        ("3", "John", "Smith", D(1980, 4, 4), False, None, "M", None, "M1 1AE"),
    ]
    curated = resolve(records, ResolveSettings(curated=("s.t",)))
    assert not together(curated, "1", "2") and together(curated, "1", "3")
    assert curated.stats.refused.get("home", 0) >= 1
    assert resolve(records).cluster_count() == 1  # people move: elsewhere a home says nothing


def test_several_estimates_of_one_person_all_join_them() -> None:
    # PoliceWorks made a record per occurrence, each with its own estimate: they are choices of
    # one another, not rival people; only a person with a full DOB is a rival.
    r = resolve(
        [
            ("1", "Gary", "Walker", D(1975, 3, 8), False, None, "M", None, "M1 1AE"),
            ("2", "Gary", "Walker", D(1975, 1, 1), True, None, "M", None, "M1 1AE"),
            ("3", "Gary", "Walker", D(1976, 1, 1), True, None, "M", None, "M1 1AE"),
        ]
    )
    assert together(r, "1", "2", "3")


def test_an_estimate_two_humans_fit_is_left_alone_for_review() -> None:
    # The same middle name corroborates each estimate: enough to merge, were one man to fit.
    r = resolve(
        [
            ("1", "John", "Smith", D(1980, 4, 4), False, "PNC/1", "M", "Lee"),
            ("2", "John", "Smith", D(1981, 9, 9), False, "PNC/2", "M", "Lee"),
            ("3", "John", "Smith", D(1980, 1, 1), True, None, "M", "Lee"),  # could be either
            ("4", "John", "Smith", D(1981, 1, 1), True, None, "M", "Lee"),  # and so could this
        ]
    )
    assert r.cluster_count() == 4
    assert r.stats.refused.get("ambiguous", 0) >= 1
    assert any(p.refused == "ambiguous" for p in r.review)
    # With nothing to corroborate them the estimates are too weak to merge whoever else they
    # fit: refused as weak, which the pair alone shows.
    r = resolve(
        [
            ("1", "John", "Smith", D(1980, 4, 4), False, "PNC/1", "M"),
            ("2", "John", "Smith", D(1981, 9, 9), False, "PNC/2", "M"),
            ("3", "John", "Smith", D(1980, 1, 1), True, None, "M"),
            ("4", "John", "Smith", D(1981, 1, 1), True, None, "M"),
        ]
    )
    assert r.cluster_count() == 4
    assert {p.refused for p in r.review} == {"weak"}


def test_of_two_humans_an_estimate_fits_the_one_at_its_home_is_no_guess() -> None:
    rivals = [
        ("1", "John", "Smith", D(1980, 4, 4), False, "PNC/1", "M", None, "M1 1AE"),
        ("2", "John", "Smith", D(1981, 9, 9), False, "PNC/2", "M", None, "OL1 2BB"),
    ]
    r = resolve([*rivals, ("3", "John", "Smith", D(1980, 1, 1), True, None, "M", None, "M1 1AE")])
    assert together(r, "1", "3") and not together(r, "2", "3")
    assert rule(r, "3") == "merge:name_dob_year"
    # Both at that home (a father and son would be decades apart: these are two men born a year
    # apart, living together): still a guess, left for review.
    both = [rivals[0], (*rivals[1][:8], "M1 1AE")]
    r = resolve([*both, ("3", "John", "Smith", D(1980, 1, 1), True, None, "M", None, "M1 1AE")])
    assert r.cluster_count() == 3 and any(p.refused == "ambiguous" for p in r.review)
    # At neither home, or with no home on record: still a guess.
    for home in ("WA9 9ZZ", None):
        r = resolve([*rivals, ("3", "John", "Smith", D(1980, 1, 1), True, None, "M", None, home)])
        assert r.cluster_count() == 3, home


def test_records_sharing_a_pnc_id_are_one_human_whatever_their_names() -> None:
    r = resolve(
        [
            ("1", "Krzysztof", "Nowak", D(1988, 6, 1), False, "2005/1234567A", "M"),
            ("2", "Chris", "Novak", None, False, "2005/1234567a", None),
        ]
    )
    assert together(r, "1", "2") and rule(r, "2") == "merge:same_pnc"


def test_differing_pnc_ids_forbid_a_merge_even_through_a_third_record() -> None:
    r = resolve(
        [
            ("1", "John", "Smith", D(1990, 1, 2), False, "PNC/A", "M"),
            ("2", "Jon", "Smith", D(1990, 1, 2), False, "PNC/B", "M"),
            ("3", "John", "Smith", D(1990, 1, 2), False, None, "M"),  # fits both
        ]
    )
    assert not together(r, "1", "2")
    assert together(r, "1", "3")  # the better (exact) match first; then 2 cannot join them
    assert r.stats.refused.get("pnc", 0) >= 1


def test_twins_same_surname_and_dob_different_forenames_are_two_people() -> None:
    r = resolve(
        [
            ("1", "James", "Taylor", D(2001, 7, 7), False, None, "M"),
            ("2", "John", "Taylor", D(2001, 7, 7), False, None, "M"),
            ("3", "Jamie", "Taylor", D(2001, 7, 7), False, None, "M"),  # James's nickname
        ],
        ResolveSettings(match=0.5),  # even a low threshold cannot merge the twins
    )
    assert not together(r, "1", "2")
    assert not together(r, "2", "3")
    assert together(r, "1", "3")
    assert r.stats.refused.get("twins", 0) >= 1


def test_in_a_curated_table_a_translation_does_not_make_twins_one_person() -> None:
    records = [
        ("1", "Margaret", "Khan", D(1951, 1, 13), False, None, "F"),
        ("2", "Malgorzata", "Khan", D(1951, 1, 13), False, None, "F"),
    ]
    assert together(resolve(records), "1", "2")  # nicknames: one woman, as far as names go
    curated = resolve(records, ResolveSettings(curated=("s.t",)))
    assert not together(curated, "1", "2")
    assert curated.stats.refused.get("twins") == 1
    # Across tables the translation still joins: a PoliceWorks Margaret is the nominal's.
    r = Resolver(ResolveSettings(curated=("s.t",)))
    r.add("s|t|1", ["Malgorzata", "Khan", D(1951, 1, 13), False, None, "F"])
    r.add("p|u|9", ["Margaret", "Khan", D(1951, 1, 13), False, None, "F"])
    r.finish()
    assert r.cluster_count() == 1


def test_two_names_in_their_own_right_are_twins_a_rare_spelling_is_not() -> None:
    # Dean, Declan and Mohammed are each the forename of several people here; Mohamad is not.
    others = [
        (f"x{n}", forename, f"Other{n}", D(1950, 1, 1 + n), False, None, "M")
        for n, forename in enumerate(["Dean", "Declan", "Mohammed"] * 3)
    ]
    r = resolve(
        [
            *others,
            ("1", "Dean", "Begum", D(1994, 11, 29), False, None, "M"),
            ("2", "Declan", "Begum", D(1994, 11, 29), False, None, "M"),  # JW 0.91, twins
            ("3", "Mohammed", "Khan", D(1984, 2, 1), False, None, "M"),
            ("4", "Mohamad", "Khan", D(1984, 2, 1), False, None, "M"),  # a spelling of 3
        ]
    )
    assert not together(r, "1", "2")
    assert r.stats.refused.get("twins") == 1
    assert together(r, "3", "4")


def test_father_and_son_same_names_different_dob_are_two_people() -> None:
    r = resolve(
        [
            ("1", "Paul", "Evans", D(1960, 2, 3), False, None, "M"),
            ("2", "Paul", "Evans", D(1985, 2, 3), False, None, "M"),
            ("3", "Paul", "Evans", D(1960, 2, 3), False, None, "M"),
        ]
    )
    assert not together(r, "1", "2")
    assert together(r, "1", "3")


def test_a_man_and_a_woman_are_never_one_human() -> None:
    man = ("1", "Sam", "Green", D(1999, 9, 9), False, None, "M")
    r = resolve([man, ("2", "Sam", "Green", D(1999, 9, 9), False, None, "F")])
    assert not together(r, "1", "2") and r.stats.refused == {"gender": 1}
    r = resolve([man, ("3", "Sam", "Green", D(1999, 9, 9), False, None, "U")])
    assert together(r, "1", "3")  # unknown: no objection


def test_curated_rules_hold_for_composite_keys_and_yield_to_a_shared_pnc() -> None:
    r = Resolver(ResolveSettings(curated=("s.t",)))
    r.add("s|t|GMP|1", ["John", "Smith", D(1980, 4, 4), False, None, "M", None, "M1 1AE"])
    r.add("s|t|GMP|2", ["John", "Smith", D(1980, 4, 4), False, None, "M", None, "OL1 2XY"])
    r.add("s|t|GMP|3", ["Tom", "Jones", D(1970, 1, 2), False, "P/1", "M", None, "M1 1AE"])
    r.add("s|t|GMP|4", ["Tom", "Jones", D(1970, 1, 2), False, "P/1", "M", None, "OL1 2XY"])
    r.finish()
    anchor = {k: r.resolved(f"s|t|GMP|{k}").anchor for k in "1234"}  # type: ignore[union-attr]
    assert anchor["1"] != anchor["2"]  # a composite key is still the curated table's
    assert anchor["3"] == anchor["4"]  # one PNC ID: one man, who moved


def test_middle_names_forbid_or_corroborate() -> None:
    james = ("1", "Lee", "Wright", D(1970, 4, 4), False, None, "M", "James")
    r = resolve([james, ("2", "Lee", "Wright", D(1970, 4, 4), False, None, "M", "Paul")])
    assert not together(r, "1", "2") and r.stats.refused == {"middle_name": 1}
    r = resolve([james, ("3", "Lee", "Wright", D(1970, 4, 4), False, None, "M", None)])
    assert together(r, "1", "3")  # no middle name: no objection
    r = resolve([james, ("4", "Lee", "Wright", D(1971, 1, 1), True, None, "M", "James")])
    assert together(r, "1", "4")  # an estimate a year off, corroborated by the middle name
    r = resolve([james, ("5", "Lee", "Wright", D(1969, 1, 1), True, None, "M", None)])
    assert not together(r, "1", "5") and r.stats.refused == {"weak": 1}


def test_a_record_fitting_two_people_who_cannot_be_one_is_left_for_review() -> None:
    r = Resolver(ResolveSettings(curated=("s.t",)))
    r.add("s|t|1", ["Catherine", "Harris", D(1937, 8, 11), False, None, "F"])
    r.add("s|t|2", ["Katarzyna", "Harris", D(1937, 8, 11), False, None, "F"])
    r.add("p|u|3", ["Kasia", "Harris", D(1937, 8, 11), False, None, "F"])
    r.add("p|u|4", ["Cathy", "Harris", D(1937, 8, 11), False, None, "F"])
    r.finish()
    # 1 and 2 are twins (a translation, in a curated table); Kasia is Katarzyna's diminutive
    # only, Cathy Catherine's only: each joins her own sister's record.
    anchor = {k: r.resolved(k).anchor for k in ("s|t|1", "s|t|2", "p|u|3", "p|u|4")}  # type: ignore[union-attr]
    assert anchor["s|t|1"] != anchor["s|t|2"]
    assert anchor["p|u|3"] == anchor["s|t|2"] and anchor["p|u|4"] == anchor["s|t|1"]
    torn = resolve(
        [
            ("1", "Margaret", "Khan", D(1951, 1, 13), False, None, "F", "Ann"),
            ("2", "Margaret", "Khan", D(1951, 1, 13), False, None, "F", "Rose"),
            ("3", "Margaret", "Khan", D(1951, 1, 13), False, None, "F", None),  # either
        ]
    )
    assert torn.cluster_count() == 3
    assert torn.stats.refused.get("ambiguous", 0) == 2
    assert {p.refused for p in torn.review} >= {"ambiguous", "middle_name"}


def test_the_same_home_corroborates_an_estimate_or_stands_in_for_a_missing_dob() -> None:
    home = ("1", "Gary", "Walker", D(1975, 3, 8), False, None, "M", None, "M1 1AE")
    r = resolve([home, ("2", "Gary", "Walker", D(1976, 1, 1), True, None, "M", None, "m1  1ae")])
    assert together(r, "1", "2")  # a year off, but at the same home
    r = resolve([home, ("3", "Gary", "Walker", None, False, None, "M", None, "M1 1AE")])
    assert together(r, "1", "3") and rule(r, "3") == "merge:name_home"
    r = resolve([home, ("4", "Gary", "Walker", None, False, None, "M", None, "M2 2BB")])
    assert not together(r, "1", "4")  # no DOB, another home: nothing to go on
    # A father and son of one name: a record with no DOB could be either, even when only one
    # of them has a home on record.
    r = resolve(
        [
            home,
            ("5", "Gary", "Walker", D(1999, 5, 5), False, None, "M", None, None),
            ("6", "Gary", "Walker", None, False, None, "M", None, "M1 1AE"),
        ]
    )
    assert r.cluster_count() == 3 and r.stats.refused.get("ambiguous", 0) >= 1


def test_reviewers_decisions_split_and_confirm() -> None:
    records = [
        ("1", "Aoife", "Byrne", D(1995, 3, 3), False, None, "F"),
        ("2", "Aoife", "Byrne", D(1995, 3, 3), False, None, "F"),
        ("3", "Eva", "Burns", D(1995, 3, 4), False, None, "F"),
        ("4", "Eve", "Byrne", None, False, "PNC/X", "F"),
        ("5", "Eve", "Byrne", None, False, "PNC/Y", "F"),
    ]
    plain = resolve(records)
    assert together(plain, "1", "2") and not together(plain, "1", "3")
    decided = resolve(
        records,
        decisions={
            ("s|t|1", "s|t|2"): "split",
            ("s|t|3", "s|t|1"): "confirm",
            ("s|t|4", "s|t|5"): "confirm",  # never across PNC IDs
            ("s|t|9", "s|t|1"): "split",  # a record this run does not hold: ignored
        },
    )
    assert not together(decided, "1", "2")
    assert together(decided, "1", "3") and rule(decided, "3") == "merge:confirmed"
    assert not together(decided, "4", "5")
    assert decided.stats.decisions_applied == 3


def test_a_block_over_the_cap_is_counted_not_compared() -> None:
    records = [(str(i), "Unknown", "Person", D(1900, 1, 1), False, None, None) for i in range(12)]
    capped = resolve(records, ResolveSettings(max_block=10))
    assert capped.cluster_count() == 12
    assert capped.stats.blocks_capped >= 1 and capped.stats.records_in_capped_blocks >= 12
    uncapped = resolve(records, ResolveSettings(max_block=20))
    assert uncapped.cluster_count() == 1


def test_pairs_near_the_threshold_go_to_review_with_what_was_seen() -> None:
    r = resolve(
        [
            ("1", "Greenhalgh", "Ashworth", D(1966, 6, 6), False, None, "M"),
            ("2", "Greenhalg", "Ashwerth", D(1966, 6, 6), False, None, "M"),
        ],
        ResolveSettings(match=0.95, review_margin=0.05),
    )
    assert len(r.review) == 1
    pair = r.review[0]
    assert {pair.a, pair.b} == {"s|t|1", "s|t|2"}
    assert 0.9 <= pair.score < 1.0
    assert pair.merged == together(r, "1", "2")
    assert "1966-06-06" in pair.a_seen and "ashworth" in pair.a_seen


def test_the_same_input_gives_the_same_clusters() -> None:
    records = [
        (str(i), f, s, D(1980 + i % 3, 1 + i % 5, 10), False, None, "M")
        for i, (f, s) in enumerate(
            [("John", "Smith"), ("Jon", "Smith"), ("John", "Smyth"), ("Ian", "Smith")] * 5
        )
    ]
    first = resolve(records)
    second = resolve(records)
    assert first.clusters() == second.clusters()
    assert [first.resolved(f"s|t|{k}") for k, *_ in records] == [
        second.resolved(f"s|t|{k}") for k, *_ in records
    ]


def _pinned(
    records: list[tuple[Any, ...]], pins: list[str], ghosts: dict[str, str] | None = None
) -> Resolver:
    r = Resolver()
    for key, *values in records:
        r.add(f"s|t|{key}", values)
    r.pin([f"s|t|{p}" for p in pins], {f"s|t|{k}": v for k, v in (ghosts or {}).items()})
    r.finish()
    return r


KHAN = ("MOHAMMED", "KHAN", D(1984, 2, 1), False, None, "M")


def test_an_anchor_already_in_the_target_stays_the_anchor() -> None:
    """A record that sorts first joins a person made earlier: the person keeps its anchor."""
    plain = _pinned([("1", *KHAN), ("2", *KHAN)], [])
    assert plain.resolved("s|t|2").anchor == "s|t|1"  # type: ignore[union-attr]
    r = _pinned([("1", *KHAN), ("2", *KHAN)], ["2"])
    assert r.resolved("s|t|2").role == "anchor"  # type: ignore[union-attr]
    assert r.resolved("s|t|1").anchor == "s|t|2"  # type: ignore[union-attr]
    assert r.resolved("s|t|1").role == "merged"  # type: ignore[union-attr]
    assert r.merged_after == []


def test_two_anchors_in_one_cluster_are_a_merge_after_the_fact() -> None:
    r = _pinned([("1", *KHAN), ("2", *KHAN), ("3", *KHAN)], ["3", "2"])
    assert r.merged_after == [("s|t|2", "s|t|3")]
    assert {r.resolved(f"s|t|{k}").anchor for k in "123"} == {"s|t|2"}  # type: ignore[union-attr]


def test_a_cluster_whose_anchor_is_gone_keeps_it() -> None:
    """The anchor was deleted at source: its person's other records keep its key."""
    r = _pinned([("2", *KHAN), ("3", *KHAN)], [], {"2": "s|t|1", "3": "s|t|1"})
    for k, role in (("2", "anchor"), ("3", "merged")):  # the first writes the row, keyed "1"
        found = r.resolved(f"s|t|{k}")
        assert found is not None and found.anchor == "s|t|1" and found.role == role
    # The gone anchor was all that tied two people: one keeps its key, the other has its own.
    smith = ("JOHN", "SMITH", D(1950, 3, 3), False, None, "M")
    r = _pinned([("2", *KHAN), ("3", *smith)], [], {"2": "s|t|1", "3": "s|t|1"})
    assert r.cluster_count() == 2
    assert r.resolved("s|t|2").anchor == "s|t|1"  # type: ignore[union-attr]
    assert r.resolved("s|t|3").anchor == "s|t|3"  # type: ignore[union-attr]
    # A live pinned anchor wins over a gone one.
    r = _pinned([("2", *KHAN), ("3", *KHAN)], ["3"], {"2": "s|t|1"})
    assert r.resolved("s|t|2").anchor == "s|t|3"  # type: ignore[union-attr]
