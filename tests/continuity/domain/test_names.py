"""Name cleansing, phonetic keys, nicknames and name comparison (continuity.domain.names)."""

from __future__ import annotations

import jellyfish
import pytest

from continuity.domain.names import (
    EXACT,
    JARO_WINKLER,
    NICKNAME,
    PART,
    PHONETIC,
    SWAPPED,
    clean_name,
    compare_names,
    compare_part,
    compare_surnames,
    name_key,
    name_parts,
    name_similarity,
    nicknames,
    phonetic_keys,
    read_nicknames,
)


@pytest.mark.parametrize(
    ("typed", "parts"),
    [
        ("O'Brien", ("obrien",)),  # apostrophe
        ("OBRIEN", ("obrien",)),
        ("O Brien", ("obrien",)),  # a particle joins the next part
        ("O’Brien", ("obrien",)),  # a typographic apostrophe
        ("Mc Donald", ("mcdonald",)),
        ("Smith-Jones", ("smith", "jones")),  # double-barrelled: both parts kept
        ("Lloyd Davies", ("lloyd", "davies")),
        ("Siobhán", ("siobhan",)),  # diacritics
        ("Małgorzata", ("malgorzata",)),  # a letter with no decomposition
        ("Ó Dónaill", ("odonaill",)),
        ("Mr John Smith", ("john", "smith")),  # titles
        ("DR. Jane  Doe", ("jane", "doe")),
        ("John Smith Jnr", ("john", "smith")),  # generational suffix
        ("Ben Smith", ("ben", "smith")),  # a forename that is also a particle
        ("Mohammed Al Hassan", ("mohammed", "alhassan")),
        ("  ", ()),
        ("", ()),
    ],
)
def test_cleansing(typed: str, parts: tuple[str, ...]) -> None:
    assert name_parts(typed) == parts
    assert clean_name(typed) == "".join(parts)


def test_a_title_alone_is_kept_as_the_name() -> None:
    assert name_parts("Mr") == ("mr",)


def test_name_key_keeps_encoding_damage_visible_for_reconciliation() -> None:
    assert name_key("O'Brien") == name_key("O BRIEN") == "obrien"
    assert name_key("Siobhán") == name_key("SIOBHAN")
    mangled = "Siobhán".encode().decode("latin-1")
    assert name_key(mangled) != name_key("Siobhán")


def test_phonetic_keys_are_jellyfishs_on_the_cleansed_name() -> None:
    assert phonetic_keys("O'Brien") == (
        jellyfish.nysiis("obrien"),
        jellyfish.metaphone("obrien"),
        jellyfish.soundex("obrien"),
    )
    assert phonetic_keys("Ó Brien") == phonetic_keys("OBRIEN")
    assert phonetic_keys("") == ("", "", "")
    assert phonetic_keys(None) == ("", "", "")


def test_the_bundled_nickname_table_is_versioned_and_symmetric() -> None:
    table = nicknames()
    assert table.version
    pairs = (("bill", "william"), ("mo", "mohammed"), ("piotr", "peter"), ("kasia", "katarzyna"))
    for a, b in pairs:
        assert table.equivalent(a, b) and table.equivalent(b, a), (a, b)
    assert not table.equivalent("james", "john")
    # A name in two groups does not join the groups: Jo is Joanna's and Joseph's.
    assert table.equivalent("jo", "joanna") and table.equivalent("jo", "joseph")
    assert not table.equivalent("joanna", "joseph")


def test_a_nickname_table_must_name_its_version_and_pair_its_names() -> None:
    with pytest.raises(ValueError, match=r"nick.csv:1: the table names no version"):
        read_nicknames(["william,bill\n"], "nick.csv")
    with pytest.raises(ValueError, match=r"nick.csv:3: a group needs two or more names"):
        read_nicknames(["# version: 1\n", "william,bill\n", "solo\n"], "nick.csv")
    table = read_nicknames(["# version: 7\n", "Seán, Shaun\n"])
    assert table.version == "7" and table.equivalent("sean", "shaun")


@pytest.mark.parametrize(
    ("a", "b", "why", "at_least"),
    [
        ("john", "john", EXACT, 1.0),
        ("william", "bill", NICKNAME, 0.97),
        ("mohammed", "muhammad", NICKNAME, 0.97),
        ("oneill", "oneil", PHONETIC, 0.9),  # NYSIIS and Metaphone agree
        ("james", "john", JARO_WINKLER, 0.0),  # NYSIIS alone agrees (JAN): not enough
    ],
)
def test_forename_reasons(a: str, b: str, why: str, at_least: float) -> None:
    score, reason = compare_part(a, b, True)
    assert reason == why and score >= at_least
    if why == JARO_WINKLER:
        assert score < 0.7


def test_nicknames_apply_to_forenames_only() -> None:
    assert compare_part("bill", "william", False)[1] != NICKNAME


def test_one_part_of_a_double_barrelled_surname_matches() -> None:
    score, why = compare_surnames(("smith", "jones"), ("jones",))
    assert (score, why) == (0.95, PART)
    assert compare_surnames(("smith", "jones"), ("brown",))[0] < 0.9


def test_forename_and_surname_swapped() -> None:
    got = compare_names("khan", ("mohammed",), "mohammed", ("khan",))
    assert got.reasons == (SWAPPED,) and got.score == 1.0
    straight = compare_names("mohammed", ("khan",), "mohammed", ("khan",))
    assert straight.reasons == (EXACT,)


def test_name_similarity_reads_names_as_typed() -> None:
    assert name_similarity("O'BRIEN", "OBrien") == 1.0
    assert name_similarity("", "Smith") == 0.0
    assert 0.8 < name_similarity("Greenhalgh", "Greenhalg") < 1.0
