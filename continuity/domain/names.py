"""Names as police systems hold them: cleansing, phonetic keys, nicknames and similarity.

The one implementation shared by person resolution, search and reconciliation's diagnostics, so
that a name two stages compare is cleansed and keyed the same way in both.

Cleansing takes a name as typed (``Mr SEÁN O'Brien-Smith``) to plain lower-case letters: titles
dropped, diacritics folded, apostrophes and full stops removed, hyphens and spaces splitting the
name into *parts*. A particle (``O``, ``Mc``, ``Mac``, ``De``, ``Van`` …) is joined to the part
after it, so ``O Brien``, ``O'Brien`` and ``OBRIEN`` agree, and a double-barrelled surname keeps
both parts (``smith``, ``jones``) for matching either alone.

Phonetic keys are jellyfish's NYSIIS (built for New York State's criminal identification system),
Metaphone and Soundex of the cleansed name. Nicknames and cross-language equivalents (William and
Bill, Mohammed and Muhammad, Piotr and Peter) come from a small versioned table,
``data/nicknames.csv``: each line is a group of names one person may be recorded under.
"""

from __future__ import annotations

import csv
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources

import jellyfish

#: Words before a name that are not part of it.
TITLES = frozenset(
    [
        "mr",
        "mrs",
        "ms",
        "miss",
        "mx",
        "dr",
        "doctor",
        "rev",
        "revd",
        "reverend",
        "sir",
        "dame",
        "lady",
        "lord",
        "prof",
        "professor",
        "fr",
        "father",
        "sr",
        "sister",
        "hon",
        "det",
        "insp",
        "pc",
        "ds",
        "dc",
        "sgt",
    ]
)
#: Short words joined to the next part of a surname: ``O Brien`` is one name, ``obrien``.
PARTICLES = frozenset(
    [
        "o",
        "mc",
        "mac",
        "de",
        "di",
        "da",
        "du",
        "del",
        "della",
        "der",
        "den",
        "van",
        "von",
        "la",
        "le",
        "st",
        "ste",
        "ap",
        "ab",
        "al",
        "el",
        "bin",
        "ben",
    ]
)
#: Particles that are also forenames: joined only after the first word (``Ben Smith``).
_FORENAME_LIKE = frozenset(["al", "ben", "di", "el"])
#: Generational suffixes, dropped (a father and son are told apart by date of birth).
SUFFIXES = frozenset(["jr", "jnr", "junior", "sr", "snr", "senior", "ii", "iii", "iv"])

_FOLD = str.maketrans({"ł": "l", "Ł": "L", "ø": "o", "Ø": "O", "ß": "ss", "đ": "d", "Đ": "D"})
_NAME_DROP = str.maketrans("", "", "'’`-. ")
_SPLIT = str.maketrans({"-": " ", "‐": " ", "–": " ", ",": " ", "/": " ", "_": " "})
_QUIET = str.maketrans("", "", "'’`.\"()")


@lru_cache(maxsize=65536)
def strip_diacritics(text: str) -> str:
    """Drop combining marks and fold letters with no decomposition (``ł`` → ``l``)."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return plain.translate(_FOLD)


def name_key(text: str) -> str | None:
    """A name as reconciliation compares it for equality: no diacritics, case, apostrophes,
    hyphens, full stops or spaces, and nothing else dropped.

    ``O'Brien``, ``OBRIEN`` and ``o brien`` agree; ``Siobhán`` and ``SIOBHAN`` agree; a name
    mangled by a wrong encoding (``SiobhÃ¡n``) does not: damage stays visible. Matching (which
    forgives more: titles, stray symbols) uses :func:`clean_name`.
    """
    return strip_diacritics(text).casefold().translate(_NAME_DROP) or None


@lru_cache(maxsize=262144)
def name_parts(text: str | None) -> tuple[str, ...]:
    """The cleansed parts of a name: titles and suffixes dropped, particles joined.

    >>> name_parts("Mr Seán O'Brien-Smith")
    ('sean', 'obrien', 'smith')
    """
    if not text:
        return ()
    words = strip_diacritics(text).casefold().translate(_QUIET).translate(_SPLIT).split()
    words = ["".join(c for c in w if c.isalpha()) for w in words]
    words = [w for w in words if w]
    while len(words) > 1 and words[0] in TITLES:
        words.pop(0)
    while len(words) > 1 and words[-1] in SUFFIXES:
        words.pop()
    parts: list[str] = []
    pending = ""
    for i, w in enumerate(words):
        if w in PARTICLES and i < len(words) - 1 and (i > 0 or w not in _FORENAME_LIKE):
            pending += w
            continue
        parts.append(pending + w)
        pending = ""
    if pending:
        parts.append(pending)
    return tuple(parts)


def clean_name(text: str | None) -> str:
    """A name's cleansed parts joined: the form names are compared in (``""`` for no name)."""
    return "".join(name_parts(text))


@lru_cache(maxsize=262144)
def phonetic_keys(name: str | None) -> tuple[str, str, str]:
    """NYSIIS, Metaphone and Soundex keys of a cleansed name (empty strings for no name)."""
    key = clean_name(name)
    if not key:
        return "", "", ""
    return jellyfish.nysiis(key), jellyfish.metaphone(key), jellyfish.soundex(key)


def jaro_winkler(a: str, b: str) -> float:
    """Jaro-Winkler similarity of two already cleansed names (0.0 when either is empty)."""
    if not a or not b:
        return 0.0
    if a == b:
        return 1.0
    return float(jellyfish.jaro_winkler_similarity(a, b))


def name_similarity(a: str | None, b: str | None) -> float:
    """Jaro-Winkler similarity of two names as typed, after cleansing."""
    return jaro_winkler(clean_name(a), clean_name(b))


# --- nicknames -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Nicknames:
    """Groups of names one person may be recorded under, from a versioned table."""

    version: str
    groups: dict[str, frozenset[str]]  # cleansed name -> the canonical names of its groups

    def canonical(self, name: str) -> frozenset[str]:
        """The groups (by canonical name, the group's first) a cleansed name belongs to."""
        return self.groups.get(name, frozenset())

    def equivalent(self, a: str, b: str) -> bool:
        """Whether two cleansed names share a group (``bill`` and ``william``)."""
        if a == b:
            return True
        ga, gb = self.groups.get(a), self.groups.get(b)
        return ga is not None and gb is not None and not ga.isdisjoint(gb)


def read_nicknames(lines: Iterable[str], origin: str = "nicknames") -> Nicknames:
    """Parse a nickname table: ``# version: V`` first, then one comma-separated group a line."""
    version = ""
    groups: dict[str, set[str]] = {}
    for number, row in enumerate(csv.reader(lines), start=1):
        if not row or not "".join(row).strip():
            continue
        first = row[0].strip()
        if first.startswith("#"):
            head, _, value = first.lstrip("# ").partition(":")
            if head.strip() == "version":
                version = value.strip()
            continue
        names = [clean_name(x) for x in row if x.strip()]
        if len(names) < 2 or not all(names):
            raise ValueError(f"{origin}:{number}: a group needs two or more names")
        for name in names:
            groups.setdefault(name, set()).add(names[0])
    if not version:
        raise ValueError(f"{origin}:1: the table names no version (# version: ...)")
    return Nicknames(version, {k: frozenset(v) for k, v in groups.items()})


@cache
def nicknames() -> Nicknames:
    """The bundled nickname table (``continuity/domain/data/nicknames.csv``)."""
    path = resources.files("continuity.domain").joinpath("data/nicknames.csv")
    with path.open(encoding="utf-8") as fh:
        return read_nicknames(fh, "continuity/domain/data/nicknames.csv")


# --- comparing two people's names -------------------------------------------------------------

#: Why two names matched, strongest first; search and resolution report these words.
EXACT, NICKNAME, PHONETIC, JARO_WINKLER, PART, SWAPPED = (
    "exact",
    "nickname",
    "phonetic",
    "jaro_winkler",
    "double_barrelled",
    "names_swapped",
)


@lru_cache(maxsize=262144)
def compare_part(a: str, b: str, forename: bool) -> tuple[float, str]:
    """Score two cleansed names of one kind (forenames, or surnames) and say why they match.

    Exact 1.0; nickname or equivalent 0.97 (forenames); the same NYSIIS and Metaphone keys at
    least 0.9; otherwise Jaro-Winkler. Either may be empty (no name): 0.0.
    """
    if not a or not b:
        return 0.0, ""
    if a == b:
        return 1.0, EXACT
    jw = jaro_winkler(a, b)
    if forename and nicknames().equivalent(a, b):
        return max(0.97, jw), NICKNAME
    na, ma, _ = phonetic_keys(a)
    nb, mb, _ = phonetic_keys(b)
    if na == nb and ma == mb:  # one key alone is too coarse: NYSIIS has JAMES as JOHN
        return max(0.9, jw), PHONETIC
    return jw, JARO_WINKLER


def compare_surnames(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[float, str]:
    """Surnames by their parts: the whole, or one part of a double-barrelled name (0.95)."""
    whole, why = compare_part("".join(a), "".join(b), False)
    if whole >= 0.95 or len(a) + len(b) <= 2:
        return whole, why
    best = max((compare_part(x, y, False)[0] for x in a for y in b), default=0.0)
    if best >= 0.97:
        return max(whole, 0.95), PART
    return whole, why


@dataclass(frozen=True)
class NameScore:
    """How alike two people's names are: forename, surname, overall, and why."""

    forename: float
    surname: float
    reasons: tuple[str, ...]

    @property
    def score(self) -> float:
        return (self.forename + self.surname) / 2


def compare_names(
    forename_a: str, surname_a: tuple[str, ...], forename_b: str, surname_b: tuple[str, ...]
) -> NameScore:
    """Compare (first forename, surname parts) of two people, also with one side's swapped.

    A forename and surname recorded the wrong way round (``KHAN Mohammed``) score as the swap
    and say ``names_swapped``.
    """
    fs, fwhy = compare_part(forename_a, forename_b, True)
    ss, swhy = compare_surnames(surname_a, surname_b)
    straight = NameScore(fs, ss, tuple(dict.fromkeys(w for w in (fwhy, swhy) if w)))
    if straight.score >= 0.97 or not forename_a or not forename_b:
        return straight
    fs2, _ = compare_part(forename_a, "".join(surname_b), True)
    ss2, _ = compare_surnames(surname_a, (forename_b,))
    if (fs2 + ss2) / 2 > straight.score + 0.02:
        return NameScore(fs2, ss2, (SWAPPED,))
    return straight
