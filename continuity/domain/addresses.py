"""Postcodes, address keys and resolution of free-text addresses against a gazetteer (UPRN).

Legacy systems hold an address as free-text lines: upper or mixed case, street types abbreviated
(``RD``, ``AVE``), the postcode spaced or not, lower case or missing, lines shifted when a building
name or locality is absent, sometimes two parts merged on one line. :func:`address_key` reads such
lines into a key that does not depend on any of that; :class:`Gazetteer` resolves them to a UPRN.

A match is never a guess. A wrong UPRN would put a firearms warning on the wrong house, which is
worse than an address left ``UNMATCHED`` (it keeps every flag either way), so:

- with a postcode, the candidates are the gazetteer's addresses in that postcode with the same
  street and house number; a postcode the gazetteer does not hold, or that holds no such house,
  gives no match (the postcode contradicts any other candidate);
- without a postcode, the street, house number, town *and* the candidate's locality (if it has
  one) must all be written, and nothing else;
- a building or flat name written on the address must be the candidate's; one omitted is accepted
  only for a whole property (``Rose Cottage``), never for part of one (``Flat 2``);
- two different UPRNs equally good is no match, with the candidates kept for the report.

Every string step is memoised: the same town, locality and building lines recur across millions
of addresses.
"""

from __future__ import annotations

import re
import sys
from array import array
from collections.abc import Sequence
from functools import lru_cache
from typing import NamedTuple, TypeVar

from continuity.domain.errors import ExtractError
from continuity.domain.names import strip_diacritics

#: Address lines as a source holds them; empty and missing lines are skipped.
Lines = Sequence[str | None]

# Why an address has no match (``Resolution.reason``).
NO_POSTCODE = "no postcode"
CONFLICTING_POSTCODES = "conflicting postcodes"
POSTCODE_NOT_IN_GAZETTEER = "postcode not in gazetteer"
NO_STREET = "no street"
NO_HOUSE_MATCH = "no house number/name match"

#: How a match was made (``Match.method``).
BY_POSTCODE = "postcode"
BY_STREET_AND_TOWN = "street+town"

# UK postcode: outward code A9, A99, A9A, AA9, AA99 or AA9A with the letters each position may
# hold, then the inward code: a digit and two letters from which C I K M O V are excluded.
_POSTCODE = re.compile(
    r"([A-PR-UWYZ](?:[0-9][0-9]?|[0-9][A-HJKPSTUW]|[A-HK-Y][0-9][0-9]?|[A-HK-Y][0-9][ABEHMNPRVWXY]))"
    r"([0-9OI][ABD-HJLNP-UW-Z]{2})"
)
_INWARD_DIGIT = {"O": "0", "I": "1"}

# Street types, written any of their usual ways, and a few other abbreviations. ``ST`` stays
# ``ST`` and STREET and SAINT become it: in a key the two readings need never be told apart.
_CANONICAL = {
    "RD": "ROAD",
    "STREET": "ST",
    "STR": "ST",
    "SAINT": "ST",
    "AVE": "AVENUE",
    "AV": "AVENUE",
    "LN": "LANE",
    "CL": "CLOSE",
    "DR": "DRIVE",
    "DRV": "DRIVE",
    "GR": "GROVE",
    "GRO": "GROVE",
    "GRV": "GROVE",
    "TCE": "TERRACE",
    "TER": "TERRACE",
    "TERR": "TERRACE",
    "CRES": "CRESCENT",
    "CRESC": "CRESCENT",
    "PL": "PLACE",
    "SQ": "SQUARE",
    "GDNS": "GARDENS",
    "CT": "COURT",
    "PDE": "PARADE",
    "WLK": "WALK",
    "MWS": "MEWS",
    "HTS": "HEIGHTS",
    "BLVD": "BOULEVARD",
    "PK": "PARK",
    "FLT": "FLAT",
    "APT": "APARTMENT",
}
# PARK is left out: it is more often a street's name (Park Road, Park View) than its type.
_STREET_TYPES = frozenset(_CANONICAL.values()) - {"FLAT", "APARTMENT", "PARK"} | {"WAY"}
#: First words of a building name that names part of a property (a flat), not the whole of it.
_SUB_BUILDING = frozenset(
    {"FLAT", "APARTMENT", "UNIT", "ROOM", "STUDIO", "SUITE", "MAISONETTE", "BASEMENT", "FLOOR"}
)

_DROPPED = (".", "'", "’", "`", '"')
_SEPARATORS = re.compile(r"[;|]")
_PLAIN = re.compile(r"[A-Z0-9 ]*")
_OTHER_PUNCTUATION = re.compile(r"[^\w,\s-]|_|(?<![0-9])-|-(?![0-9])")
_HOUSE_NUMBER = re.compile(r"[0-9]+[A-Z]?(?:-[0-9]+[A-Z]?)?")
# A postcode-shaped last word or two of a part, validated by normalise_postcode.
_POSTCODE_AT_END = re.compile(r"(?:^| )([A-Z]{1,2}[0-9][A-Z0-9]? ?[0-9OI][A-Z]{2})$")

_Segment = tuple[str, ...]


@lru_cache(maxsize=65536)
def normalise_postcode(text: str | None) -> str | None:
    """A UK postcode in its canonical form (``M1 1AE``), or None if ``text`` is not one.

    Case and spaces do not matter (``m11ae``, ``M1  1AE``). An ``O`` or ``I`` where the inward
    code's digit must be is read as ``0`` or ``1``: that position holds only a digit and neither
    letter is ever used in an inward code, so the reading is unambiguous. Nothing else is
    corrected: in the outward code a letter and a digit can both be valid, and a guessed postcode
    would only send the match to another street.
    """
    if not text:
        return None
    compact = "".join(text.split()).upper()
    if not 5 <= len(compact) <= 7:
        return None
    found = _POSTCODE.fullmatch(compact)
    if found is not None:
        inward = found[2]
        return f"{found[1]} {_INWARD_DIGIT.get(inward[0], inward[0])}{inward[1:]}"
    return "GIR 0AA" if compact == "GIR0AA" else None


def _clean(text: str) -> str:
    """Upper case, no diacritics, no punctuation but commas (parts) and hyphens in ``12-14``."""
    if not text.isascii():
        text = strip_diacritics(text)
    text = text.upper()
    if _PLAIN.fullmatch(text):
        return text  # most lines: letters, digits and spaces only
    for dropped in _DROPPED:  # St. John's -> ST JOHNS
        if dropped in text:
            text = text.replace(dropped, "")
    if "&" in text:
        text = text.replace("&", " AND ")
    if ";" in text or "|" in text:
        text = _SEPARATORS.sub(",", text)
    return _OTHER_PUNCTUATION.sub(" ", text)


def _canonical(tokens: list[str]) -> tuple[str, ...]:
    if _CANONICAL.keys().isdisjoint(tokens):
        return tuple(tokens)
    return tuple([_CANONICAL.get(t, t) for t in tokens])


@lru_cache(maxsize=65536)
def text_key(text: str | None) -> str | None:
    """Any address text as compared: upper case, no punctuation, abbreviations expanded.

    ``Ashton-under-Lyne`` and ``ASHTON UNDER LYNE`` agree; ``St. John's Rd`` and
    ``SAINT JOHNS ROAD`` agree (both ``ST JOHNS ROAD``). None for no text.
    """
    if not text:
        return None
    return " ".join(_canonical(_clean(text).replace(",", " ").split())) or None


class _Street(NamedTuple):
    """The house number and street read from one part of a line."""

    before: str  # words before the number on the same part (a building name merged onto it)
    number: str | None
    run: str  # the street and anything written after it on the same part
    name: str  # the street alone, through its type word
    tail: str | None  # what followed the street on the part (a merged locality or town)
    score: int  # 3 number and type, 2 number, 1 type alone: the best part is the street


def _street_of(tokens: _Segment) -> _Street | None:
    """The house number and street in one part of a line, if it holds them.

    The number is the first number followed by a word (``FLAT 2 12 ACACIA RD`` is number 12);
    a number-less part ending in a street type is a street too (``ROSE COTTAGE, ACACIA RD``).
    """
    first: _Street | None = None
    for i, token in enumerate(tokens[:-1]):
        if not _HOUSE_NUMBER.fullmatch(token):
            continue
        start, number = i + 1, token
        if len(tokens[start]) == 1 and tokens[start].isalpha() and start + 1 < len(tokens):
            start, number = start + 1, token + tokens[start]  # 12 A ACACIA RD: number 12A
        run = tokens[start:]
        if not run[0].isalpha():
            continue
        typed = not _STREET_TYPES.isdisjoint(run[1:])
        found = _street(tokens[:i], number, run, 2 + typed)
        if typed:
            return found
        first = first or found
    if first is None and len(tokens) >= 2 and tokens[-1] in _STREET_TYPES:
        return _street((), None, tokens, 1)
    return first


def _street(before: _Segment, number: str | None, run: _Segment, score: int) -> _Street:
    """Split ``run`` after its last street type: the street, then what follows on the line.

    An ``ST`` followed by a word reads as SAINT, unless that word is another ``ST``
    (``HIGH ST ST HELENS``: HIGH STREET, ST HELENS).
    """
    text, building = " ".join(run), " ".join(before)
    end = len(run) - 1
    if run[end] in _STREET_TYPES:  # the usual line: nothing after the street's type
        return _Street(building, number, text, text, None, score)
    last = 0
    for i in range(1, end):
        if run[i] in _STREET_TYPES and (run[i] != "ST" or run[i + 1] == "ST"):
            last = i
    if last == 0:
        return _Street(building, number, text, text, None, score)
    name = " ".join(run[: last + 1])
    return _Street(building, number, text, name, " ".join(run[last + 1 :]), score)


#: One comma-separated part of a line: its words, the postcode written in it, its street, and
#: whether it is a house number alone (``223, CANAL TCE``).
_Part = tuple[str, str | None, _Street | None, bool]


@lru_cache(maxsize=65536)
def _line_parts(line: str) -> tuple[_Part, ...]:
    """One line read once: its comma-separated parts, each with the postcode and street it holds.

    A postcode is a whole part or its last one or two words (``MANCHESTER M1 1AE``).
    """
    parts = []
    for piece in _clean(line).split(","):
        tokens = piece.split()
        if not tokens:
            continue
        joined = " ".join(tokens)
        postcode = normalise_postcode(joined) if len(joined) <= 10 else None
        if postcode is not None:
            tokens = []
        elif (end := _POSTCODE_AT_END.search(joined)) and (
            postcode := normalise_postcode(end.group(1))
        ):
            tokens = joined[: end.start(1)].split()
        words = _canonical(tokens)
        bare = len(words) == 1 and bool(_HOUSE_NUMBER.fullmatch(words[0]))
        parts.append((" ".join(words), postcode, _street_of(words) if words else None, bare))
    return tuple(parts)


class AddressKey(NamedTuple):
    """What identifies an address, whatever its case, spacing, abbreviations or line layout.

    Attributes:
        postcode: canonical postcode, or None (none written, or two different ones).
        number: house number as written (``12``, ``12A``, ``12-14``), or None.
        street: street name with its type spelled out (``ACACIA ROAD``; ``ST`` for STREET).
        building: building or flat name written before the street (``FLAT 2``), or None.
        areas: locality, town and any other text after the street, one entry per part.
    """

    postcode: str | None
    number: str | None
    street: str | None
    building: str | None = None
    areas: tuple[str, ...] = ()


class _Parsed(NamedTuple):
    """An address as read, before it is a key: what resolution needs, built once."""

    postcode: str | None
    number: str | None
    street: str | None
    building: str | None
    tail: str | None  # what followed the street on its part
    run: str | None  # the street and its tail, as one text
    after: tuple[str, ...]  # the parts after the street's
    postcode_conflict: bool


def _parse(lines: Lines) -> _Parsed:
    """The parsed address, remembered for the last few thousand addresses: one address is
    usually both resolved and keyed, one after the other."""
    key = tuple(lines)
    found = _recent.get(key)
    if found is None:
        if len(_recent) >= _RECENT:
            _recent.clear()
        found = _recent[key] = _parse_lines(key)
    return found


_RECENT = 32768  # more than a batch: a batch is resolved, then keyed, field by field
_recent: dict[tuple[str | None, ...], _Parsed] = {}


def _parse_lines(lines: Lines) -> _Parsed:
    parts: list[_Part] = []
    postcode: str | None = None
    conflict = False
    for line in lines:
        if not line:
            continue
        for part in _line_parts(line):
            found = part[1]
            if found is not None:
                if postcode is None:
                    postcode = found
                elif found != postcode:
                    conflict = True
            if not part[0]:
                continue
            if parts and parts[-1][3] and (part[2] is None or part[2].score == 1):
                # 223, CANAL TCE: a house number written as a part of its own
                part = _line_parts(f"{parts[-1][0]} {part[0]}")[0]
                parts.pop()
            parts.append(part)
    if conflict:
        postcode = None
    # The street: the first part with a number and a street type (12 ACACIA RD), else the first
    # with a number (12 THE BROADWAY), else the first ending in a type (ROSE COTTAGE, ACACIA RD).
    at, street = -1, None
    for i, part in enumerate(parts):
        found_street = part[2]
        if found_street is not None and (street is None or found_street.score > street.score):
            at, street = i, found_street
            if street.score == 3:
                break
    if street is None:
        areas = tuple([part[0] for part in parts])
        return _Parsed(postcode, None, None, None, None, None, areas, conflict)
    building = None
    if at or street.before:
        before = [part[0] for part in parts[:at]]
        if street.before:
            before.append(street.before)
        building = " ".join(before)
    after = tuple([part[0] for part in parts[at + 1 :]])
    return _Parsed(
        postcode, street.number, street.name, building, street.tail, street.run, after, conflict
    )


def find_postcode(lines: Lines) -> str | None:
    """The postcode written in free-text lines, whichever line holds it.

    None when there is none, or when two different postcodes are written.
    """
    postcodes = {p for line in lines if line for p in _line_postcodes(line)}
    return postcodes.pop() if len(postcodes) == 1 else None


@lru_cache(maxsize=65536)
def _line_postcodes(line: str) -> tuple[str, ...]:
    """The postcodes a line's parts hold, read as :func:`_line_parts` reads them (without
    reading its streets: a lookup of a postcode reads hundreds of thousands of lines)."""
    found = []
    for piece in _clean(line).split(","):
        joined = " ".join(piece.split())
        if not joined:
            continue
        postcode = normalise_postcode(joined) if len(joined) <= 10 else None
        if postcode is None and (end := _POSTCODE_AT_END.search(joined)):
            postcode = normalise_postcode(end.group(1))
        if postcode is not None:
            found.append(postcode)
    return tuple(found)


def address_key(lines: Lines) -> AddressKey:
    """The :class:`AddressKey` of free-text lines (legacy ``LINE1..5``, or a record's fields).

    Examples:
        >>> address_key(["FLAT 2", "223 CANAL TCE", "DENTON", "MANCHESTER", "m259un"])
        AddressKey(postcode='M25 9UN', number='223', street='CANAL TERRACE', \
building='FLAT 2', areas=('DENTON', 'MANCHESTER'))
    """
    p = _parse(lines)
    return AddressKey(
        p.postcode, p.number, p.street, p.building, (p.tail, *p.after) if p.tail else p.after
    )


# Match and Resolution are named tuples, not dataclasses: one is built for every address
# resolved, and at 100,000 addresses a second a frozen dataclass's construction shows.
class Match(NamedTuple):
    """A gazetteer address an address resolved to, in the gazetteer's own spelling."""

    uprn: str
    building: str | None
    number: str | None
    street: str | None
    locality: str | None
    town: str | None
    postcode: str | None
    easting: int | None
    northing: int | None
    method: str  # BY_POSTCODE or BY_STREET_AND_TOWN

    def lines(self) -> tuple[str | None, str | None, str | None, str | None, None]:
        """Five address lines as the gazetteer writes them: building, number and street,
        locality, town, and an empty fifth line."""
        street = f"{self.number} {self.street}" if self.number and self.street else self.street
        return (self.building, street or self.number, self.locality, self.town, None)


class Resolution(NamedTuple):
    """The outcome of resolving one address: a match, or the reason there is none.

    ``candidates`` holds the UPRNs of an ambiguous address, for the report.
    """

    match: Match | None
    reason: str | None = None
    candidates: tuple[str, ...] = ()


def _ambiguous(count: int) -> str:
    return f"ambiguous: {count} candidates"


_NO_TEXT = 0
_NO_COORDINATE = -(2**62)
_LOCALITY = 1
_TOWN = 2
_K = TypeVar("_K")


def _uprn_code(uprn: str) -> tuple[int, int]:
    """A digits-only UPRN as (value, width), so zero-padded UPRNs keep their padding."""
    if uprn.isascii() and uprn.isdigit() and len(uprn) < 19:
        return int(uprn), len(uprn)
    return -1, 0


def _coordinate(value: int | str | None, row: int, column: str) -> int:
    if value is None or value == "":
        return _NO_COORDINATE
    try:
        return int(value)
    except ValueError:
        raise ExtractError(f"gazetteer row {row}: {column} {value!r} is not a number") from None


def _index_row(index: dict[_K, int | array[int]], key: _K, row: int) -> None:
    """File a row under a key: a lone row as an int, several in an array (a list would cost a
    Python int object per row)."""
    found = index.get(key)
    if found is None:
        index[key] = row
    elif isinstance(found, int):
        index[key] = array("I", (found, row))
    else:
        found.append(row)


def _area_part(text: str, locality: str | None, town: str | None) -> int:
    """What an area text is of a gazetteer row: its locality, its town, both, or neither (0)."""
    if text == town:
        return _TOWN
    if text == locality:
        return _LOCALITY
    if locality and town and text == f"{locality} {town}":
        return _LOCALITY | _TOWN
    return 0


def _is_part_of_property(building: str | None) -> bool:
    return building is not None and (
        building.split(" ", 1)[0] in _SUB_BUILDING or bool(_HOUSE_NUMBER.fullmatch(building))
    )


class Gazetteer:
    """An AddressBase-like gazetteer held compactly in memory, to resolve addresses against.

    Rows are added one at a time (stream them from the file or table). A row costs under a
    hundred bytes: its text fields are ids into one table of distinct strings (a street or town
    is held once however many rows name it), numbers sit in typed arrays, and the two indexes
    (by postcode; by street and town, for addresses written without a postcode) hold row
    numbers.
    """

    #: The layout of what a gazetteer holds: a cached gazetteer of another layout is not used
    #: (raise it whenever the attributes below, or what ``add`` puts in them, change).
    FORMAT = 1

    def __init__(self) -> None:
        self._text: list[str | None] = [None]  # id 0: no text
        self._key: list[str | None] = [None]  # text_key of each text
        self._text_id: dict[str, int] = {}
        self._fields = array("I")  # per row: building, number, street, locality, town, postcode
        self._uprn = array("q")
        self._uprn_width = array("B")
        self._uprn_other: dict[int, str] = {}  # UPRNs that are not plain digits
        self._coordinates = array("q")  # per row: easting, northing
        self._by_postcode: dict[str, int | array[int]] = {}
        self._by_street_town: dict[tuple[str, str], int | array[int]] = {}
        self._towns: set[str] = set()

    def __len__(self) -> int:
        return len(self._uprn)

    def _id(self, text: str | int | None, key: str | None = None) -> int:
        if text is None:
            return _NO_TEXT
        value = text.strip() if isinstance(text, str) else str(text)
        if not value:
            return _NO_TEXT
        found = self._text_id.get(value)
        if found is None:
            found = self._text_id[value] = len(self._text)
            value = sys.intern(value)
            self._text.append(value)
            key = key or text_key(value)
            # Many keys equal their text (numbers, postcodes): hold that string once.
            self._key.append(value if key == value else key)
        return found

    def add(
        self,
        uprn: str | int,
        building: str | None,
        number: str | int | None,
        street: str | None,
        locality: str | None,
        town: str | None,
        postcode: str | None,
        easting: int | str | None = None,
        northing: int | str | None = None,
    ) -> None:
        """Add one gazetteer row; the arguments follow ``gazetteer.csv``'s columns.

        Empty strings count as missing, so a CSV row can be passed as it is read
        (``gazetteer.add(*row)``). A postcode is held in its canonical form.

        Raises:
            ExtractError: the row has no UPRN, or a coordinate that is not a number.
        """
        row = len(self._uprn)
        text = str(uprn).strip() if uprn is not None else ""
        if not text:
            raise ExtractError(f"gazetteer row {row + 1}: no UPRN")
        coordinates = (
            _coordinate(easting, row + 1, "easting"),
            _coordinate(northing, row + 1, "northing"),
        )
        canonical = normalise_postcode(postcode)
        ids = (
            self._id(building),
            self._id(number),
            self._id(street),
            self._id(locality),
            self._id(town),
            self._id(canonical or postcode, canonical),
        )
        value, width = _uprn_code(text)
        if value < 0:
            self._uprn_other[row] = text
        self._uprn.append(max(value, 0))
        self._uprn_width.append(width)
        self._coordinates.extend(coordinates)
        self._fields.extend(ids)
        if canonical is not None:
            _index_row(self._by_postcode, self._text[ids[5]] or canonical, row)
        street_key, town_key = self._key[ids[2]], self._key[ids[4]]
        if street_key and town_key:
            self._towns.add(town_key)
            _index_row(self._by_street_town, (street_key, town_key), row)

    def resolve(self, lines: Lines) -> Resolution:
        """Resolve free-text address lines (or a record's address fields, in order) to a UPRN.

        Returns:
            A :class:`Resolution`: the :class:`Match`, or None with the reason (``no postcode``,
            ``postcode not in gazetteer``, ``no house number/name match``, ``ambiguous: N
            candidates`` ...).
        """
        parsed = _parse(lines)
        if parsed.postcode_conflict:
            return Resolution(None, CONFLICTING_POSTCODES)
        if parsed.postcode is None:
            if parsed.run is None:
                return Resolution(None, NO_POSTCODE)
            rows = [r for r in self._street_town_rows(parsed) if self._agrees(r, parsed, True)]
            return self._choose(rows, parsed, BY_STREET_AND_TOWN, NO_POSTCODE)
        bucket = self._by_postcode.get(parsed.postcode)
        if bucket is None:
            return Resolution(None, POSTCODE_NOT_IN_GAZETTEER)
        if parsed.run is None:
            return Resolution(None, NO_STREET)
        if isinstance(bucket, int):
            rows = [bucket] if self._agrees(bucket, parsed, False) else []
        else:
            rows = [r for r in bucket if self._agrees(r, parsed, False)]
        return self._choose(rows, parsed, BY_POSTCODE, NO_HOUSE_MATCH)

    def match(self, lines: Lines) -> Match | None:
        """The :class:`Match` of an address, or None (:meth:`resolve` says why)."""
        return self.resolve(lines).match

    def _agrees(self, row: int, parsed: _Parsed, areas_must_agree: bool) -> bool:
        """Whether gazetteer row ``row`` has the address's house number and street.

        Text after the street on its own line must be the row's locality and/or town (so
        ``12 CHURCH RD WEST`` is not ``12 Church Road``). Without a postcode, the area lines must
        be exactly the row's locality (if it has one) and town.
        """
        base = row * 6
        key, fields = self._key, self._fields
        number = parsed.number
        if number is not None and key[fields[base + 1]] != number:
            return False
        street, run = key[fields[base + 2]], parsed.run
        if street is None or run is None:
            return False
        rest = None
        if run != street:
            if not run.startswith(street + " "):
                return False
            rest = run[len(street) + 1 :]
        locality, town = key[fields[base + 3]], key[fields[base + 4]]
        if rest is not None and not _area_part(rest, locality, town):
            return False
        if not areas_must_agree:
            return True
        # Without a postcode nothing else tells two same-named streets apart: the town and the
        # row's locality must both be written, and nothing else.
        seen = 0
        for area in parsed.after if rest is None else (*parsed.after, rest):
            part = _area_part(area, locality, town)
            if not part:
                return False
            seen |= part
        return seen == (_LOCALITY | _TOWN if locality else _TOWN)

    def _choose(self, rows: list[int], parsed: _Parsed, method: str, none: str) -> Resolution:
        """One UPRN among the agreeing rows, or no match: ambiguity is never resolved by guessing.

        Rows with the address's building name (or, for an address with none, rows with none)
        come first; a row whose whole-property name the address omits (``Rose Cottage``) is taken
        only if no row is better; one whose flat or unit the address omits, never.
        """
        building = parsed.building
        if building is None and parsed.number is None:
            return Resolution(None, none)  # a street alone is not an address
        key, fields = self._key, self._fields
        strong = [r for r in rows if key[fields[r * 6]] == building]
        if not strong and building is None:
            strong = [r for r in rows if not _is_part_of_property(key[fields[r * 6]])]
        if len(strong) == 1:
            return Resolution(self._match(strong[0], method))
        uprns = {self._uprn_of(r): r for r in strong}
        if len(uprns) == 1:
            return Resolution(self._match(strong[0], method))  # the same UPRN listed twice
        if uprns:
            return Resolution(None, _ambiguous(len(uprns)), tuple(sorted(uprns)))
        return Resolution(None, none)

    def _street_town_rows(self, parsed: _Parsed) -> list[int]:
        """Rows filed under a street the address could name and a town it writes.

        A superset: :meth:`_agrees` then checks each row in full.
        """
        assert parsed.run is not None
        words = parsed.run.split(" ")
        towns: set[str] = set()
        for text in (*parsed.after, parsed.run):
            area = text.split(" ")
            towns.update(t for n in range(len(area)) if (t := " ".join(area[n:])) in self._towns)
        rows: list[int] = []
        for n in range(1, len(words) + 1):
            street = " ".join(words[:n])
            for town in towns:
                found = self._by_street_town.get((street, town))
                if found is not None:
                    rows.extend((found,) if isinstance(found, int) else found)
        return rows

    def _uprn_of(self, row: int) -> str:
        other = self._uprn_other.get(row)
        return other if other is not None else str(self._uprn[row]).zfill(self._uprn_width[row])

    def _match(self, row: int, method: str) -> Match:
        text, base = self._text, row * 6
        b, n, s, loc, town, pc = self._fields[base : base + 6]
        easting, northing = self._coordinates[row * 2], self._coordinates[row * 2 + 1]
        return Match(
            self._uprn_of(row),
            text[b],
            text[n],
            text[s],
            text[loc],
            text[town],
            text[pc],
            None if easting == _NO_COORDINATE else easting,
            None if northing == _NO_COORDINATE else northing,
            method,
        )
