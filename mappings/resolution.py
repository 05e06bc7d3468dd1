"""Person resolution: which source records are one human, within and across systems.

Records are blocked on the phonetic keys of their cleansed names with their date of birth (the
DOB's day and month taken in either order, so a swapped DOB meets the true one), and on both
names with the year of birth for an estimated DOB. Blocks larger than ``max_block`` (a common
name with a placeholder DOB) are not compared: they are counted and reported, never guessed at.
Within a block every pair is scored with Jaro-Winkler on forename and surname (an exact name,
a nickname, the same phonetic keys, one part of a double-barrelled surname and forename and
surname swapped all count, see :mod:`continuity.domain.names`), and records sharing a PNC ID
are paired whatever their names.

Pairs are then merged best first. A merge is refused, for the two whole clusters it would join,
when any two of their records are forbidden to be one human:

- ``pnc``: both have a PNC ID and the IDs differ;
- ``gender``: one is recorded male and the other female;
- ``middle_name``: both have a middle name and they differ;
- ``home``: both are in one ``curated`` table and give different homes;
- ``dob``: both have a full DOB and they differ other than by a day/month swap (the father and
  son with the same names), or an estimated year is more than a year from a full DOB's (two
  years from another estimate's);
- ``twins``: the same surname and DOB but different forenames: forenames that score below
  ``twins_below``, or two forenames the population uses as names in their own right (Dean and
  Declan, William and Liam: each held by one in 2,000 curated records), whatever their score;
  in a ``curated`` table (one record per human, names kept as first written: a legacy nominal
  index), forenames that are only nicknames or translations of each other are different too;
- ``split``: a reviewer said the two are different people.

A reviewer's ``confirm`` merges a pair whatever its score (but never across PNC IDs). Records
are taken in a fixed order (the mapping's sources in order, each in key order) and ties broken
by it, so the same input always gives the same clusters, the same anchor (the cluster's first
record) and the same rule and score for each merged record.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from array import array
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from typing import Any

from continuity.domain.names import (
    NICKNAME,
    compare_names,
    compare_part,
    name_parts,
    nicknames,
    phonetic_keys,
)

#: The parts of a record resolution reads, in the order a mapping's ``resolve.fields`` gives.
ROLES = ("forename", "surname", "dob", "dob_estimated", "pnc", "gender", "middle_names", "home")


#: Merges on weak evidence (an estimated DOB; no DOB but the same home): made after the others,
#: only on the very same name, and only where one cluster fits (for an estimate, of several that
#: fit, the only one at the record's home: see ``Resolver._torn_between``).
WEAK_RULES = frozenset({"name_dob_year", "name_home"})


@dataclass(frozen=True)
class ResolveSettings:
    """Thresholds, from the mapping's ``resolve:``."""

    match: float = 0.92  # name score at or above which two records are one human
    review_margin: float = 0.04  # pairs this close to ``match`` (either side) go to review
    max_block: int = 200  # blocks larger than this are not compared
    twins_below: float = 0.9  # forename score below which same surname + DOB are two people
    curated: tuple[str, ...] = ()  # "source.table"s holding one record per human, as written


@dataclass(frozen=True)
class Resolved:
    """Where one record went: its cluster's anchor record, the rule that joined it, its score."""

    anchor: str  # the anchor's identity: "source|table|key"
    rule: str  # "anchor", or the merge rule ("merge:same_pnc", "merge:name_dob" ...)
    role: str  # "anchor" or "merged"
    score: int | None = None  # the joining pair's name score, per mille


@dataclass(frozen=True)
class Pair:
    """A scored candidate pair, as review lists it."""

    a: str
    b: str
    score: float
    rule: str
    reasons: tuple[str, ...]
    merged: bool
    refused: str = ""  # the hard rule that refused it, when it was refused
    a_seen: str = ""  # each record as resolution saw it: cleansed names, DOB, PNC
    b_seen: str = ""


@dataclass
class ResolutionStats:
    records: int = 0
    compared: int = 0
    blocks_capped: int = 0
    records_in_capped_blocks: int = 0
    merged: dict[str, int] = field(default_factory=dict)
    refused: dict[str, int] = field(default_factory=dict)
    decisions_applied: int = 0
    #: a delta's resolution of part of the records: how many it resolved again, how many had
    #: changed, how many had gone (see continuity.resolution_state)
    incremental: dict[str, int] = field(default_factory=dict)


#: Kinds of a record's dependency keys (:meth:`Resolver.dependency_keys`): the four blocking
#: passes, then its PNC ID, its very name, and whatever the caller adds (a looked-up value's key).
PNC_KEY, NAME_KEY, LOOKUP_KEY = 4, 5, 6


def name_key(forename: str, surname: str | tuple[str, ...]) -> int:
    """The dependency key of a record with no DOB: its cleansed forename and surname parts
    (a tuple, or ``|``-joined)."""
    parts = tuple(surname.split("|")) if isinstance(surname, str) else surname
    return dependency_hash(NAME_KEY, (forename, parts))


def dependency_hash(kind: int, key: Any) -> int:
    """A dependency key as a signed 64-bit number (stored, and compared across runs)."""
    digest = hashlib.blake2b(repr((kind, key)).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@dataclass(frozen=True)
class Context:
    """What a resolution of part of the records needs of the whole (see
    :mod:`continuity.resolution_state`): the forenames in use as names in their own right, and
    each block's size over every record (a block larger than ``max_block`` is not compared,
    however few of its records the part holds)."""

    names_in_use: frozenset[str]
    #: the size over every record of each block the part holds only some records of
    block_sizes: Mapping[int, int]
    #: (forename, surname parts) -> how many persons of that very name the part does not
    #: hold (a record with no DOB weighs every person of its name)
    namesakes: Mapping[tuple[str, tuple[str, ...]], int] = field(default_factory=dict)


def names_in_use(counts: Mapping[str, int]) -> frozenset[str]:
    """The forenames held by at least one in 2,000 of the records counted (three at least)."""
    floor = max(3, sum(counts.values()) // 2000)
    return frozenset(f for f, n in counts.items() if n >= floor)


def _dob_of(value: Any) -> int | None:
    """A DOB as a day ordinal (dates, datetimes, ISO text), else None."""
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        return value.date().toordinal()
    if isinstance(value, dt.date):
        return value.toordinal()
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value[:10]).toordinal()
        except ValueError:
            return None
    return None


def _swap_canon(ordinal: int) -> tuple[int, int, int]:
    """The DOB with day and month in a fixed order: a DOB and its swap give the same key."""
    d = dt.date.fromordinal(ordinal)
    low, high = sorted((d.day, d.month))
    return d.year, low, high


def _swapped(a: int, b: int) -> bool:
    da, db = dt.date.fromordinal(a), dt.date.fromordinal(b)
    return da.year == db.year and da.day == db.month and da.month == db.day


class Resolver:
    """Collect records with :meth:`add`, then :meth:`finish`; :meth:`resolved` answers."""

    def __init__(
        self,
        settings: ResolveSettings | None = None,
        decisions: Mapping[tuple[str, str], str] | None = None,
        context: Context | None = None,
    ) -> None:
        """``context``: the records added are part of a population (the part resolution must
        look at again after a change); the whole's forenames in use and block sizes."""
        self.settings = settings or ResolveSettings()
        self.context = context
        self.decisions = dict(decisions or {})
        self._curated = {c.replace(".", "|", 1) for c in self.settings.curated}
        self._names_in_use: frozenset[str] = frozenset()
        self._ids: dict[str, int] = {}
        self._names: list[str] = []
        self._fore: list[str] = []
        self._sur: list[tuple[str, ...]] = []
        self._dob: list[int | None] = []
        self._est: list[bool] = []
        self._pnc: list[str | None] = []
        self._sex: list[str] = []  # "M", "F", or "" (unknown)
        self._middle: list[str] = []  # the first middle name, cleansed ("" for none)
        self._home: list[str] = []  # where the record says the person lives ("" unknown)
        self._intern: dict[Any, Any] = {}
        self._parent: list[int] = []
        self._rule: list[str] = []
        self._score: list[int | None] = []
        self._members: dict[int, list[int]] = {}
        self._splits: dict[int, set[int]] = defaultdict(set)
        self._pinned: set[str] = set()
        self._ghosts: dict[str, str] = {}
        self._ghost: dict[int, str] = {}  # cluster root -> the gone anchor it keeps
        self._writer: dict[int, int] = {}  # such a cluster's record that writes its row
        self._rep: dict[int, int] = {}  # cluster root -> its pinned anchor, where not the root
        self._component: list[int] = []  # record -> its component's first record (see finish)
        self._pass_keys: list[Callable[[int], Iterable[Any]]] = []
        self._first_keys: dict[str, str] = {}
        #: keep the blocking passes' keys while finishing, for dependency_index (a run that
        #: keeps the resolution state): (key hashes, the position of the record holding each)
        self.keep_dependencies = False
        self._kept: tuple[array[int], array[int]] = (array("q"), array("l"))
        #: the blocks block_keys(remember=True) worked out, for as many records as were added
        self._remembered: tuple[int, list[tuple[int, list[int]]]] | None = None
        #: every record's keys in every blocking pass, for partners (grown as records are
        #: added): how many records it holds, and (pass, key) -> the records holding it
        self._holding: tuple[int, dict[tuple[int, Any], list[int]]] = (0, defaultdict(list))
        #: clusters holding two records that were anchors of target records already (a merge
        #: after the fact): (the anchor kept, the other)
        self.merged_after: list[tuple[str, str]] = []
        self.review: list[Pair] = []
        self.stats = ResolutionStats()
        self.finished = False

    def __len__(self) -> int:
        return len(self._names)

    def _i(self, value: Any) -> Any:
        return self._intern.setdefault(value, value)

    def pin(self, identities: Iterable[str], ghosts: Mapping[str, str] | None = None) -> None:
        """Records that are anchors of target records already (an earlier wave made them).

        A cluster holding one keeps it as its anchor, whatever record now sorts first: a person
        keeps its target key as records join it. A cluster holding two is a merge after the
        fact: the first keeps its anchor (``merged_after`` lists the pair). ``ghosts`` maps
        records to the anchor of their target record where that anchor is no longer resolved
        (deleted at source): a cluster with no pinned anchor of its own keeps that one (the
        least, if several), so the person keeps its key, and none of its records is its anchor.
        """
        if self.finished:
            raise RuntimeError("the resolution is finished: pin anchors before")
        self._pinned.update(identities)
        self._ghosts.update(ghosts or {})

    def __contains__(self, identity: object) -> bool:
        return identity in self._ids

    def add(self, identity: str, values: Sequence[Any] | Mapping[str, Any]) -> None:
        """Add one record (``source|table|key``) with its ``ROLES`` values (a sequence or map)."""
        if self.finished:
            raise RuntimeError("the resolution is finished: no more records")
        if identity in self._ids:
            return
        if isinstance(values, Mapping):
            values = [values.get(r) for r in ROLES]
        forename, surname, dob, estimated, pnc, gender, middle, home = (list(values) + [None] * 8)[
            :8
        ]
        fparts = name_parts(forename) if isinstance(forename, str) else ()
        self._ids[identity] = len(self._names)
        self._names.append(identity)
        self._fore.append(self._i(fparts[0] if fparts else ""))
        self._sur.append(self._i(name_parts(surname) if isinstance(surname, str) else ()))
        self._dob.append(_dob_of(dob))
        self._est.append(bool(estimated) and estimated not in ("0", "false", "N"))
        text = str(pnc).strip().upper() if pnc not in (None, "") else ""
        self._pnc.append(self._i(text) if text else None)
        sex = str(gender).strip().upper()[:1] if gender is not None else ""
        self._sex.append(sex if sex in ("M", "F") else "")
        mparts = name_parts(middle) if isinstance(middle, str) else ()
        self._middle.append(self._i(mparts[0] if mparts else ""))
        place = " ".join(str(home).split()).upper() if home not in (None, "") else ""
        self._home.append(self._i(place))

    # -- comparing two records --------------------------------------------------------------

    def _dob_relation(self, i: int, j: int) -> str:
        """``dob``, ``dob_swap``, ``dob_year`` (an estimate within a year), ``unknown`` or
        ``different``."""
        a, b = self._dob[i], self._dob[j]
        if a is None or b is None:
            return "unknown"
        if self._est[i] or self._est[j]:
            ya, yb = dt.date.fromordinal(a).year, dt.date.fromordinal(b).year
            # An estimate is within a year of the truth: two estimates within two of each other.
            slack = 2 if self._est[i] and self._est[j] else 1
            return "dob_year" if abs(ya - yb) <= slack else "different"
        if a == b:
            return "dob"
        if _swapped(a, b):
            return "dob_swap"
        return "different"

    def _established(self) -> frozenset[str]:
        """Forenames the population uses as names in their own right: each held by at least
        one in 2,000 records of the curated tables (of all records, when none is curated)."""
        return names_in_use(Counter(f for i in range(len(self._fore)) if (f := self._counted(i))))

    def _counted(self, i: int) -> str | None:
        """The forename record ``i`` adds to the count of forenames in use, if any."""
        f = self._fore[i]
        if f and (not self._curated or self._table_of(i) in self._curated):
            return f
        return None

    def _table_of(self, i: int) -> str:
        """``source|table`` of a record (its key may itself hold ``|``: a composite key)."""
        return "|".join(self._names[i].split("|", 2)[:2])

    def _apart(self, i: int, j: int) -> bool:
        """Both records are in one curated table (one record per human, names as written)."""
        table = self._table_of(i)
        return table == self._table_of(j) and table in self._curated

    def _forbidden(self, i: int, j: int) -> str:
        """The hard rule forbidding records ``i`` and ``j`` to be one human, or ``""``."""
        pa, pb = self._pnc[i], self._pnc[j]
        if pa and pb and pa != pb:
            return "pnc"
        if j in self._splits.get(i, ()):
            return "split"
        if self._sex[i] and self._sex[j] and self._sex[i] != self._sex[j]:
            return "gender"
        if (
            self._home[i]
            and self._home[j]
            and self._home[i] != self._home[j]
            and not (pa and pa == pb)  # one PNC ID: one person, who moved
            and self._apart(i, j)
        ):
            # Two nominals of one curated index at different homes are two people: a duplicate
            # nominal is written from the same details as the first.
            return "home"
        ma, mb = self._middle[i], self._middle[j]
        if ma and mb and compare_part(ma, mb, True)[0] < self.settings.twins_below:
            return "middle_name"
        relation = self._dob_relation(i, j)
        if relation == "different":
            return "dob"
        if relation in ("dob", "dob_swap"):
            names = compare_names(self._fore[i], self._sur[i], self._fore[j], self._sur[j])
            if names.surname >= 0.9 and names.forename < self.settings.twins_below:
                return "twins"
            fa, fb = self._fore[i], self._fore[j]
            if (
                names.surname >= 0.9
                and fa != fb
                and fa in self._names_in_use
                and fb in self._names_in_use
            ):
                # Dean and Declan, William and Liam: two forenames this population uses as
                # names in their own right, on the same surname and DOB, are twins.
                return "twins"
            if names.surname >= 0.9 and NICKNAME in names.reasons and self._apart(i, j):
                # Margaret and Malgorzata Khan born the same day, each with her own nominal:
                # a nickname or a translation does not make twins one woman.
                return "twins"
        return ""

    # -- resolving ---------------------------------------------------------------------------

    def _passes(self) -> list[Callable[[int], Iterable[Any]]]:
        """The blocking passes: each gives a record's keys in that pass.

        Names and dates repeat across a population: each distinct surname, forename and date
        has its keys worked out once (a run asks for them in every pass, for every record)."""
        if self._pass_keys:
            return self._pass_keys
        nick = nicknames()
        dob, est = self._dob, self._est
        first = self._first_key

        @cache
        def surname_keys(parts: tuple[str, ...]) -> frozenset[str]:
            whole = first("".join(parts))
            return frozenset({whole, *(first(p) for p in parts if len(parts) > 1)} - {""})

        @cache
        def forename_keys(f: str) -> frozenset[str]:
            if not f:
                return frozenset()
            return frozenset({first(f), *("~" + c for c in nick.canonical(f))})

        swap = cache(_swap_canon)

        def dated(
            keys: Callable[[Any], frozenset[str]], names: Sequence[Any]
        ) -> Callable[[int], Iterable[Any]]:
            """A pass keying a record with an exact DOB by a name's keys and the DOB either
            way round."""

            def keys_of(i: int) -> Iterable[Any]:
                d = dob[i]
                if d is None or est[i]:
                    return ()
                canon = swap(d)
                return {(k, canon) for k in keys(names[i])}

            return keys_of

        self._pass_keys = [
            # surname sounds alike, DOB in either day/month order: catches forename variants
            dated(surname_keys, self._sur),
            # forename sounds alike (or is a nickname), DOB either way: surname variants
            dated(forename_keys, self._fore),
            # both names, year of birth (an estimate meets the years either side of it)
            self._year_keys,
            # both names and the home, for a record with no DOB at all
            self._home_keys,
        ]
        return self._pass_keys

    def _first_key(self, name: str) -> str:
        """A name's first phonetic key (NYSIIS), worked out once per name."""
        found = self._first_keys.get(name)
        if found is None:
            found = self._first_keys[name] = phonetic_keys(name)[0]
        return found

    def _pass_keys_index(self) -> Iterator[tuple[int, Any, list[int]]]:
        """Every key of every blocking pass, one pass at a time (memory: one pass's index):
        the pass's number, the key and the records holding it."""
        n = len(self._names)
        for number, keys_of in enumerate(self._passes()):
            index: dict[Any, list[int]] = defaultdict(list)
            for i in range(n):
                for k in keys_of(i):
                    index[k].append(i)
            for k, members in index.items():
                yield number, k, members
            del index

    def _blocks(self, keep: bool = False) -> Iterable[tuple[int, list[int]]]:
        """Each blocking pass's blocks: the block's key (:func:`dependency_hash`) and its
        records. ``keep``: every key, of one record too, goes to ``_kept`` for
        :meth:`dependency_index`."""
        for number, k, members in self._pass_keys_index():
            if len(members) > 1:
                h = dependency_hash(number, k)
                if keep:
                    self._kept[0].extend([h] * len(members))
                    self._kept[1].extend(members)
                yield h, members
            elif keep:
                self._kept[0].append(dependency_hash(number, k))
                self._kept[1].append(members[0])

    def dependency_index(self) -> Iterator[tuple[int, list[int]]]:
        """Every record's :meth:`dependency_keys`, the other way round: each key with the
        positions (in the order added) of the records holding it. Each distinct key is hashed
        once (a full run keeps millions)."""
        n = len(self._names)
        if self._kept[0] or not n:
            hashes, members = self._kept
            yield from zip(hashes, ([m] for m in members), strict=True)
        else:
            for number, k, found in self._pass_keys_index():
                yield dependency_hash(number, k), found
        others: dict[int, list[int]] = defaultdict(list)
        for i in range(n):
            if self._pnc[i]:
                others[dependency_hash(PNC_KEY, self._pnc[i])].append(i)
        yield from others.items()
        others = defaultdict(list)
        for i in range(n):
            if self._fore[i] and self._sur[i] and self._dob[i] is None:
                others[name_key(self._fore[i], self._sur[i])].append(i)
        yield from others.items()

    def block_keys(self, remember: bool = False) -> list[tuple[int, int]]:
        """Each block of two records or more among those added: its key and its size.
        ``remember``: the blocks are kept for :meth:`finish`, which then does not work them
        out again unless records are added meanwhile (a delta's part: a full run's blocks
        are worked out one pass at a time, and not kept)."""
        blocks = list(self._blocks())
        self._remembered = (len(self._names), blocks) if remember else None
        return [(key, len(members)) for key, members in blocks]

    def counted_forename(self, identity: str) -> str | None:
        """The forename this record adds to the count of forenames in use, if any (see
        ``_established``)."""
        return self._counted(self._ids[identity])

    def dependency_keys(self, identity: str) -> set[int]:
        """The keys (:func:`dependency_hash`) through which a change to another record can
        change how this one resolves: its blocks in every pass, its PNC ID, and for a record
        with no DOB its very name (it weighs every person of its name). Stored after a run, so
        that a delta finds the records a changed one may touch
        (:mod:`continuity.resolution_state`)."""
        i = self._ids[identity]
        found = {
            dependency_hash(number, k)
            for number, keys_of in enumerate(self._passes())
            for k in keys_of(i)
        }
        if self._pnc[i]:
            found.add(dependency_hash(PNC_KEY, self._pnc[i]))
        if self._fore[i] and self._sur[i] and self._dob[i] is None:
            found.add(name_key(self._fore[i], self._sur[i]))
        return found

    def pnc(self, identity: str) -> str | None:
        return self._pnc[self._ids[identity]]

    def seen(self, identity: str) -> tuple[str, str, bool]:
        """The record's first forename and surname parts (``|``-joined), cleansed, and whether
        it has a DOB."""
        i = self._ids[identity]
        return self._fore[i], "|".join(self._sur[i]), self._dob[i] is not None

    def _year_keys(self, i: int) -> set[Any]:
        d = self._dob[i]
        if d is None or not self._fore[i] or not self._sur[i]:
            return set()
        year = dt.date.fromordinal(d).year
        years = (year - 1, year, year + 1) if self._est[i] else (year,)
        f = self._first_key(self._fore[i])
        s = self._first_key("".join(self._sur[i]))
        return {(f, s, y) for y in years}

    def _home_keys(self, i: int) -> set[Any]:
        if not self._home[i] or not self._fore[i] or not self._sur[i]:
            return set()
        f = self._first_key(self._fore[i])
        s = self._first_key("".join(self._sur[i]))
        return {("home", f, s, self._home[i])}

    def _candidates(self) -> dict[tuple[int, int], tuple[float, str, tuple[str, ...]]]:
        s = self.settings
        floor = s.match - s.review_margin
        found: dict[tuple[int, int], tuple[float, str, tuple[str, ...]]] = {}
        by_pnc: dict[str, int] = {}
        for i, pnc in enumerate(self._pnc):
            if pnc:
                first = by_pnc.setdefault(pnc, i)
                if first != i:
                    found[(first, i)] = (1.0, "same_pnc", ("pnc",))
        sizes = self.context.block_sizes if self.context is not None else {}
        remembered, self._remembered = self._remembered, None
        blocks: Iterable[tuple[int, list[int]]]
        if (
            remembered is not None
            and remembered[0] == len(self._names)
            and not self.keep_dependencies
        ):
            blocks = remembered[1]
        else:
            blocks = self._blocks(keep=self.keep_dependencies)
        for key, members in blocks:
            if sizes.get(key, len(members)) > s.max_block:
                self.stats.blocks_capped += 1
                self.stats.records_in_capped_blocks += len(members)
                continue
            for x, i in enumerate(members):
                for j in members[x + 1 :]:
                    if (i, j) in found:
                        continue
                    pair = self._candidate(i, j, floor)
                    if pair is not None:
                        found[(i, j)] = pair
        for (a, b), decision in self.decisions.items():
            ia, ib = self._ids.get(a), self._ids.get(b)
            if ia is None or ib is None:
                continue
            i, j = min(ia, ib), max(ia, ib)
            if decision == "split":
                self._splits[i].add(j)
                self._splits[j].add(i)
            elif decision == "confirm":
                score = found.get((i, j), (1.0, "", ()))[0]
                found[(i, j)] = (score, "confirmed", ("reviewer",))
            self.stats.decisions_applied += 1
        return found

    def _candidate(self, i: int, j: int, floor: float) -> tuple[float, str, tuple[str, ...]] | None:
        """Two records of one block as a candidate pair (score, rule, reasons), or None."""
        relation = self._dob_relation(i, j)
        if relation == "unknown" and self._home[i] and self._home[i] == self._home[j]:
            relation = "home"  # no DOB to compare: the same name at the same home
        if relation in ("different", "unknown"):
            return None
        if relation == "dob_year" and not (self._est[i] or self._est[j]):
            return None
        self.stats.compared += 1
        names = compare_names(self._fore[i], self._sur[i], self._fore[j], self._sur[j])
        if names.score < floor:
            return None
        return names.score, "name_" + relation, (*names.reasons, relation)

    def partners(
        self,
        of: Iterable[str],
        sizes: Mapping[int, int],
        corroborated: set[str] | None = None,
    ) -> set[str]:
        """The records a candidate pair joins to any of ``of`` (records sharing a PNC ID
        included), in blocks no larger than ``max_block`` by ``sizes`` (each block's size over
        every record; the block's records here where not given). ``corroborated`` gets those
        of them that are vague and whose weak pair with one of ``of`` is strong enough to
        merge (either way round)."""
        s = self.settings
        floor = s.match - s.review_margin
        mine = {self._ids[i] for i in of if i in self._ids}
        found: set[int] = set()
        pncs = {self._pnc[i] for i in mine} - {None}
        found |= {i for i, pnc in enumerate(self._pnc) if pnc in pncs}
        holding = self._holders_by_key()
        passes = self._passes()
        for i in sorted(mine):
            for number, keys_of in enumerate(passes):
                for k in keys_of(i):
                    members = holding[(number, k)]
                    if len(members) < 2:
                        continue
                    key = dependency_hash(number, k)
                    if sizes.get(key, len(members)) > s.max_block:
                        continue
                    for j in members:
                        if j == i:
                            continue
                        # (either way round: the order a full run takes them in is not known
                        # here; a score of 1.0, all that is strong enough, is either)
                        pair = self._candidate(i, j, floor) or self._candidate(j, i, floor)
                        if pair is None:
                            continue
                        found.add(j)
                        if (
                            corroborated is not None
                            and pair[1] in WEAK_RULES
                            and self._vague(j)
                            and self._strong_enough(i, j, pair[0])
                        ):
                            corroborated.add(self._names[j])
        return {self._names[i] for i in found - mine}

    def _holders_by_key(self) -> dict[tuple[int, Any], list[int]]:
        """Each (pass, key) of the records added with the records holding it (in the order
        added), worked out for the records added since it was last asked for."""
        done, holding = self._holding
        passes = self._passes()
        for i in range(done, len(self._names)):
            for number, keys_of in enumerate(passes):
                for k in keys_of(i):
                    holding[(number, k)].append(i)
        self._holding = (len(self._names), holding)
        return holding

    def finish(self) -> None:
        """Resolve every record added."""
        if self.finished:
            return
        s = self.settings
        n = len(self._names)
        self.stats.records = n
        self._parent = list(range(n))
        self._rule = [""] * n
        self._score = [None] * n
        self._names_in_use = (
            self.context.names_in_use if self.context is not None else self._established()
        )
        found = self._candidates()
        rank = {"confirmed": 0, "same_pnc": 1}
        order = sorted(found.items(), key=lambda kv: (rank.get(kv[1][1], 2), -kv[1][0], kv[0]))
        # An estimated DOB is weak evidence: such pairs wait until the strong ones are merged,
        # then merge only where the estimate leaves no choice (one cluster fits it).
        weak = [p for p in order if p[1][1] in WEAK_RULES]
        strong = [p for p in order if p[1][1] not in WEAK_RULES]
        partners: dict[int, list[tuple[float, int]]] = defaultdict(list)
        for (i, j), (score, rule, _) in strong:
            if rule.startswith("name_") and score >= s.match:
                partners[i].append((score, j))
                partners[j].append((score, i))
        for (i, j), (score, rule, reasons) in strong:
            torn = rule.startswith("name_") and self._torn(i, j, score, partners)
            self._consider(i, j, score, rule, reasons, "ambiguous" if torn else "")
        choices: dict[int, set[int]] = defaultdict(set)
        fitted: dict[int, list[int]] = defaultdict(list)  # (the records: see _links)
        for (i, j), (score, _, _) in weak:
            if score >= s.match:
                for e, other in ((i, j), (j, i)):
                    if self._vague(e) and not self._forbidden(e, other) and not self._vague(other):
                        choices[e].add(self._find(other))  # a person with a full DOB
                        fitted[e].append(other)
        # A record with no DOB could be anyone of its name: every cluster holding the very same
        # name (a father and his son, one with no home on record) is a choice it has.
        unknown = {e for (i, j), _ in weak for e in (i, j) if self._dob[e] is None}
        if unknown:
            wanted = {(self._fore[e], self._sur[e]): e for e in unknown}
            namesakes: dict[tuple[str, tuple[str, ...]], set[int]] = defaultdict(set)
            for k in range(n):
                name = (self._fore[k], self._sur[k])
                if name in wanted:
                    namesakes[name].add(self._find(k))
            outside = self.context.namesakes if self.context is not None else {}
            for e in unknown:
                name = (self._fore[e], self._sur[e])
                choices[e] |= namesakes[name]
                # people of its name outside the part resolved: each a choice too (a number
                # below zero, no record's position)
                choices[e] |= set(range(-outside.get(name, 0), 0))
        enough = [self._strong_enough(i, j, score) for (i, j), (score, _, _) in weak]
        for ((i, j), (score, rule, reasons)), corroborated in zip(weak, enough, strict=True):
            if not corroborated:
                # Too little to merge on whoever else it fits: ``weak``, found from the pair
                # alone (its outcome reads no other cluster: see _links).
                why = "weak"
            elif any(
                self._torn_between(e, j if e == i else i, choices.get(e, ()))
                for e in (i, j)
                if self._vague(e)
            ):
                why = "ambiguous"
            else:
                why = ""
            self._consider(i, j, score, rule, reasons, why)
        # A pair refused on its own may have been joined through other records since: say so.
        ids = self._ids
        self.review = [
            replace(p, merged=True, refused="")
            if not p.merged and self._find(ids[p.a]) == self._find(ids[p.b])
            else p
            for p in self.review
        ]
        anchors: dict[int, list[int]] = defaultdict(list)
        for at in sorted(self._ids[name] for name in self._pinned if name in self._ids):
            anchors[self._find(at)].append(at)
        for root, held in anchors.items():
            if held[0] != root:
                self._rep[root] = held[0]
            for other in held[1:]:
                self.merged_after.append((self._names[held[0]], self._names[other]))
        # A gone anchor's records keep its key in one cluster: the one holding most of them
        # (the first, on a tie), unless it has a live anchor of its own; one of its records
        # (the first) writes the row, under the gone anchor's key.
        holders: dict[str, Counter[int]] = defaultdict(Counter)
        firsts: dict[tuple[str, int], int] = {}
        for record, gone in sorted(self._ghosts.items()):
            if record not in self._ids:
                continue
            at = self._ids[record]
            root = self._find(at)
            if root in anchors:
                continue
            holders[gone][root] += 1
            firsts[(gone, root)] = min(firsts.get((gone, root), at), at)
        for gone, roots in sorted(holders.items()):
            root = min(roots, key=lambda r: (-roots[r], r))
            if root not in self._ghost:
                self._ghost[root] = gone
                self._writer[root] = firsts[(gone, root)]
        self._components(self._links(strong, weak, enough, fitted))
        self._members.clear()
        self.finished = True

    def _links(
        self,
        strong: Sequence[tuple[tuple[int, int], Any]],
        weak: Sequence[tuple[tuple[int, int], Any]],
        enough: Sequence[bool],
        fitted: Mapping[int, list[int]],
    ) -> Iterator[tuple[int, int]]:
        """The pairs whose outcome can depend on each other's (see ``_components``): every
        strong candidate pair (merged or not, a reviewer's confirmation included); every weak
        pair strong enough to merge (``enough``); and a vague record with such a pair to each
        record with a full DOB it fits (``fitted``: whose clusters its merge reads, see
        ``_torn_between``). A weak pair too weak to merge links nothing: it is refused as
        ``weak`` unless its records are one person by other pairs, which link them."""
        yield from (pair for pair, _ in strong)
        mergeable = [pair for (pair, _), ok in zip(weak, enough, strict=True) if ok]
        yield from mergeable
        corroborated = {e for pair in mergeable for e in pair if self._vague(e)}
        for e in corroborated:
            for other in fitted.get(e, ()):
                yield e, other

    def _components(self, links: Iterable[tuple[int, int]]) -> None:
        """Group the records into components: those joined by ``links`` (``_links``). Nothing
        outside a record's component can change how it resolves, unless a record sharing a
        dependency key with it changes (see ``dependency_keys``), or, for a record with no
        DOB, a person of its name."""
        parent = list(range(len(self._names)))

        def find(i: int) -> int:
            root = i
            while parent[root] != root:
                root = parent[root]
            while parent[i] != root:
                parent[i], i = root, parent[i]
            return root

        def join(i: int, j: int) -> None:
            a, b = find(i), find(j)
            if a != b:
                parent[max(a, b)] = min(a, b)

        for i, j in links:
            join(i, j)
        self._component = [find(i) for i in range(len(parent))]

    def component(self, identity: str) -> str:
        """The first record (in the order added) of the record's component (see
        ``_components``)."""
        if not self.finished:
            self.finish()
        return self._names[self._component[self._ids[identity]]]

    def identities(self) -> list[str]:
        """Every record added, in order."""
        return list(self._names)

    def _torn(
        self, i: int, j: int, score: float, partners: Mapping[int, list[tuple[float, int]]]
    ) -> bool:
        """Whether ``i`` or ``j`` fits, about as well, someone the other may not be one with:
        Kasia Harris, born the day twins Catherine and Katarzyna were, is left for review."""
        if self._forbidden(i, j):
            return False  # refused by its own rule, which the review names
        for e, other in ((i, j), (j, i)):
            for got, k in partners.get(e, ()):
                if (
                    k != other
                    and got >= score - 0.02
                    and not self._forbidden(e, k)  # no choice for e: it may not be k anyway
                    and self._forbidden(k, other)
                ):
                    return True
        return False

    def _torn_between(self, e: int, other: int, choices: Iterable[int]) -> bool:
        """Whether the vague record ``e`` fits more than one person, so that joining it to
        ``other``'s is a guess. Of several people an estimated DOB fits (same name, born
        within a year), the one at ``e``'s home is no guess when no other is there. A record
        with no DOB at all stays torn: a son at his father's home, his own records giving
        none, would be taken for his father.
        """
        mine = self._find(e)
        fitting = {c if c < 0 else self._find(c) for c in choices}
        fits = fitting - {mine}
        if not fits:
            return False
        if mine in fitting and len(self._members.get(mine, [mine])) > 1:
            # ``e`` joined one of the people it fits already (the one at its home): joining
            # another as well would make those two one person on ``e``'s word.
            return True
        if len(fits) == 1:
            return False
        home = self._home[e]
        if not home or self._dob[e] is None:
            return True
        at_home = [
            root
            for root in fits
            if any(self._home[k] == home for k in self._members.get(root, [root]))
        ]
        return at_home != [self._find(other)]

    def _vague(self, i: int) -> bool:
        """The record's DOB is estimated or unknown: weak evidence of who it is."""
        return self._est[i] or self._dob[i] is None

    def _strong_enough(self, i: int, j: int, score: float) -> bool:
        """Weak evidence needs the very same cleansed name and something more: an estimated DOB
        (within a year) joins only with the same middle name or home; a record with no DOB
        only at the same home. Anything less is left for review."""
        if score < 1.0:
            return False
        same_home = bool(self._home[i]) and self._home[i] == self._home[j]
        if self._dob[i] is None or self._dob[j] is None:
            return same_home
        same_middle = bool(self._middle[i]) and self._middle[i] == self._middle[j]
        return same_middle or same_home

    def _consider(
        self,
        i: int,
        j: int,
        score: float,
        rule: str,
        reasons: tuple[str, ...],
        refuse: str = "",
    ) -> None:
        """Merge one candidate pair if its score and the hard rules allow; note it for review
        when it was near the threshold, or a reviewer decided it (so the decision shows)."""
        s = self.settings
        near = s.review_margin
        confirmed = rule == "confirmed"
        if not confirmed and self._find(i) == self._find(j):
            return  # already one person, by other records
        if not confirmed and rule != "same_pnc" and score < s.match:
            if score >= s.match - near:
                self.review.append(self._pair(i, j, score, rule, reasons, False))
            return
        refused = "" if confirmed else refuse
        refused = refused or self._union(i, j, rule, score, confirmed)
        if refused:
            self.stats.refused[refused] = self.stats.refused.get(refused, 0) + 1
            if score >= s.match - near or refused == "split":
                self.review.append(self._pair(i, j, score, rule, reasons, False, refused))
            return
        self.stats.merged[rule] = self.stats.merged.get(rule, 0) + 1
        if confirmed or (rule != "same_pnc" and score < s.match + near - 1e-9):
            self.review.append(self._pair(i, j, score, rule, reasons, True))

    def _pair(
        self,
        i: int,
        j: int,
        score: float,
        rule: str,
        reasons: tuple[str, ...],
        merged: bool,
        refused: str = "",
    ) -> Pair:
        return Pair(
            self._names[i],
            self._names[j],
            round(score, 4),
            rule,
            reasons,
            merged,
            refused,
            self.describe(i),
            self.describe(j),
        )

    def describe(self, i: int) -> str:
        """A record as resolution saw it: ``forename surname, DOB (estimated), sex, PNC``."""
        dob = self._dob[i]
        when = dt.date.fromordinal(dob).isoformat() if dob is not None else "no DOB"
        if dob is not None and self._est[i]:
            when += " (estimated)"
        name = " ".join(x for x in (self._fore[i], "-".join(self._sur[i])) if x) or "(no name)"
        sex = f", {self._sex[i]}" if self._sex[i] else ""
        pnc = f", PNC {self._pnc[i]}" if self._pnc[i] else ""
        return f"{name}, {when}{sex}{pnc}"

    def _find(self, i: int) -> int:
        parent = self._parent
        root = i
        while parent[root] != root:
            root = parent[root]
        while parent[i] != root:  # path compression
            parent[i], i = root, parent[i]
        return root

    def _union(self, i: int, j: int, rule: str, score: float, confirmed: bool) -> str:
        """Join the clusters of ``i`` and ``j``; return the hard rule refusing it, or ``""``."""
        a, b = self._find(i), self._find(j)
        if a == b:
            return ""
        ma = self._members.get(a, [a])
        mb = self._members.get(b, [b])
        for x in ma:
            for y in mb:
                why = self._forbidden(x, y)
                if why and (not confirmed or why in ("pnc", "split")):
                    return why
        root, child = (a, b) if a < b else (b, a)
        self._parent[child] = root
        self._members[root] = ma + mb
        self._members.pop(child, None)
        # The record joining an existing cluster carries the rule; anchors carry none.
        for k in (i, j):
            if k != root and not self._rule[k]:
                self._rule[k] = "merge:" + rule
                self._score[k] = round(score * 1000)
        if child != root and not self._rule[child]:
            self._rule[child] = "merge:" + rule
            self._score[child] = round(score * 1000)
        return ""

    def resolved(self, identity: str) -> Resolved | None:
        """The record's cluster anchor, rule and score, or None if it was never added."""
        if not self.finished:
            self.finish()
        i = self._ids.get(identity)
        if i is None:
            return None
        root = self._find(i)
        ghost = self._ghost.get(root)
        if ghost is not None:
            role = "anchor" if self._writer.get(root) == i else "merged"
            return Resolved(ghost, self._rule[i] or "merge:resolved", role, self._score[i])
        anchor = self._rep.get(root, root)
        if anchor == i:
            return Resolved(identity, "anchor", "anchor", None)
        return Resolved(
            self._names[anchor], self._rule[i] or "merge:resolved", "merged", self._score[i]
        )

    def clusters(self) -> dict[int, list[str]]:
        """Every cluster: its records' identities by the anchor's position."""
        if not self.finished:
            self.finish()
        out: dict[int, list[str]] = defaultdict(list)
        for i, name in enumerate(self._names):
            out[self._find(i)].append(name)
        return dict(out)

    def cluster_count(self) -> int:
        """How many persons the records resolve to."""
        if not self.finished:
            self.finish()
        return sum(1 for i in range(len(self._parent)) if self._find(i) == i)
