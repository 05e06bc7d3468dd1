"""Per-chunk facts every renderer must agree on: source keys, target keys, record spellings.

Renderers run in different processes; anything two of them must agree on (a PoliceWorks record's
spelling, which legacy nominal a link uses, a target key) is decided here, from its own random
stream, so each renderer can recompute it independently.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache

from continuity.domain.keys import target_key
from continuity.domain.names import strip_diacritics
from continuity.estate import vocab
from continuity.estate.truth import Chunk, Human, Place, Rng, Warning, legacy_crime_no

LEGACY = "legacy"
POLICEWORKS = "policeworks"
NFA_ADDR_REF = "A000000000"


@dataclass(slots=True)
class PersonRecord:
    """One source record of a human, as that system spells it."""

    system: str
    table: str
    key: str
    forename: str
    middle: str | None
    surname: str
    dob: dt.date | None  # None: unknown in that record
    dob_estimated: bool
    variant: str  # "" when spelled as the truth, else what differs ("name", "dob_swap", ...)
    crime: int | None = None  # PoliceWorks: the occurrence (crime index) it was created for
    deleted: bool = False  # deleted at source since the estate was generated (estate evolve)

    def correct_dob(self, h: Human) -> None:
        """The record's date of birth corrected at source to the truth's."""
        self.dob, self.dob_estimated = h.dob, h.dob_year_only
        self.variant = "+".join(v for v in self.variant.split("+") if "dob" not in v)


def _swap(day: dt.date) -> dt.date | None:
    if day.day > 12 or day.day == day.month:
        return None
    return dt.date(day.year, day.day, day.month)


def _legacy_name(name: str, rng: Rng) -> str:
    upper = strip_diacritics(name).upper()
    if "'" in upper and rng.random() < 0.25:
        upper = upper.replace("'", "")
    return upper


class ChunkIndex:
    """Keys and record spellings of one chunk."""

    def __init__(self, chunk: Chunk) -> None:
        self.chunk = chunk
        rng = Rng(chunk.rng_seed + ":index")
        crimes = chunk.crimes
        self.place = {p.pid: p for p in chunk.places}
        self.legacy_records: list[list[PersonRecord]] = []  # the records at source now
        self.legacy_all: list[list[PersonRecord]] = []  # with those deleted since (evolve)
        self.pw_records: list[list[PersonRecord]] = []
        self.link_nominal: dict[tuple[int, int], str] = {}  # (crime, human) -> nominal ref
        self.pw_person_of: dict[tuple[int, int], str] = {}  # (crime, human) -> pw person id
        for hi, h in enumerate(chunk.humans):
            legacy_links = sorted(
                {ci for ci, _ in h.links if crimes[ci].in_legacy}, key=lambda c: crimes[c].recorded
            )
            pw_links = sorted(
                {ci for ci, _ in h.links if crimes[ci].in_policeworks},
                key=lambda c: crimes[c].recorded,
            )
            lrecs: list[PersonRecord] = []
            if legacy_links:
                ref = f"N{h.hid * 2 + 1:09d}"
                lrecs.append(
                    PersonRecord(
                        LEGACY,
                        "NOMINAL",
                        ref,
                        _legacy_name(h.forename, rng),
                        _legacy_name(h.middle, rng) if h.middle else None,
                        _legacy_name(h.surname, rng),
                        h.dob,
                        h.dob_year_only,
                        "",
                    )
                )
                if h.has_legacy_duplicate:
                    dup = f"N{h.hid * 2 + 2:09d}"
                    swapped = _swap(h.dob) if not h.dob_year_only and rng.random() < 0.3 else None
                    lrecs.append(
                        PersonRecord(
                            LEGACY,
                            "NOMINAL",
                            dup,
                            _legacy_name(h.forename, rng),
                            None,
                            _legacy_name(h.surname, rng),
                            swapped or h.dob,
                            h.dob_year_only,
                            "duplicate" + ("+dob_swap" if swapped else ""),
                        )
                    )
                for rec in lrecs:
                    rec.deleted = rec.key in chunk.deleted
                    if rec.key in chunk.corrected:
                        rec.correct_dob(h)
                for k, ci in enumerate(legacy_links):
                    rec = lrecs[k % len(lrecs)]
                    # A deleted duplicate's links were moved to the original nominal.
                    self.link_nominal[(ci, hi)] = (lrecs[0] if rec.deleted else rec).key
            self.legacy_all.append(lrecs)
            self.legacy_records.append([r for r in lrecs if not r.deleted])
            precs: list[PersonRecord] = []
            for ci in pw_links:
                pid = chunk.guid("person", hi, ci)
                # A crime that came with evolution draws from a stream of its own.
                own = rng if ci < chunk.born_crimes else Rng(f"{chunk.rng_seed}:person:{hi}:{ci}")
                rec = self._pw_record(own, h, pid, ci)
                if pid in chunk.corrected:
                    rec.correct_dob(h)
                precs.append(rec)
                self.pw_person_of[(ci, hi)] = pid
            self.pw_records.append(precs)

        # Legacy links to nominals that no longer exist (about 1% of legacy crimes).
        self.dangling: list[tuple[int, str, str]] = []
        for ci, c in enumerate(crimes):
            if c.in_legacy and rng.random() < 0.01:
                self.dangling.append(
                    (ci, f"N{900_000_000 + c.cid % 99_999_999:09d}", rng.choice("VSW"))
                )

        # Which places each system holds.
        self.legacy_places: set[int] = set()
        self.pw_places: set[int] = set()
        for hi, h in enumerate(chunk.humans):
            if h.home is not None:
                if self.legacy_records[hi]:
                    self.legacy_places.add(h.home)
                if self.pw_records[hi]:
                    self.pw_places.add(h.home)
        for c in crimes:
            (self.legacy_places if c.in_legacy else self.pw_places).add(c.place)
            if c.era == "both":
                self.pw_places.add(c.place)

        self.location_guid = {pid: pw_location_id(chunk, pid) for pid in self.pw_places}
        self.occurrence_guid = [
            occurrence_id(chunk, ci) if c.in_policeworks else "" for ci, c in enumerate(crimes)
        ]

        # Target keys: UUIDv5 of the anchor source record (legacy first, it is the original).
        self.person_key = [
            target_key("person", LEGACY, lr[0].key)
            if lr
            else target_key("person", POLICEWORKS, pr[0].key)
            for lr, pr in zip(self.legacy_records, self.pw_records, strict=True)
        ]
        self.location_key = {
            pid: target_key("location", LEGACY, addr_ref(pid))
            if pid in self.legacy_places
            else target_key("location", POLICEWORKS, self.location_guid[pid])
            for pid in self.legacy_places | self.pw_places
        }
        self.event_key = [
            target_key("event", LEGACY, legacy_crime_no(c))
            if c.in_legacy
            else target_key("event", POLICEWORKS, self.occurrence_guid[ci])
            for ci, c in enumerate(crimes)
        ]

    def _pw_record(self, rng: Rng, h: Human, pid: str, ci: int) -> PersonRecord:
        forename, surname, middle = h.forename, h.surname, h.middle
        dob: dt.date | None = h.dob
        estimated = h.dob_year_only
        variant = []
        if rng.random() < 0.3:
            fv = vocab.FORENAME_VARIANTS.get(forename)
            sv = vocab.SURNAME_VARIANTS.get(surname)
            if fv and (not sv or rng.random() < 0.5):
                forename = rng.choice(fv)
                variant.append("forename")
            elif sv:
                surname = rng.choice(sv)
                variant.append("surname")
        if middle and rng.random() < 0.3:
            middle = None
        roll = rng.random()
        if not h.dob_year_only and roll < 0.05 and _swap(h.dob):
            dob = _swap(h.dob)
            variant.append("dob_swap")
        elif roll < 0.09:
            dob = dt.date(h.dob.year + rng.choice((-1, 0, 0, 1)), 1, 1)
            estimated = True
            if dob != h.dob:
                variant.append("dob_estimated")
        elif roll < 0.11:
            dob = None
            variant.append("dob_unknown")
        return PersonRecord(
            POLICEWORKS,
            "pw_person",
            pid,
            forename,
            middle,
            surname,
            dob,
            estimated,
            "+".join(variant),
            ci,
        )

    def person_warning(self, hi: int, w: Warning) -> tuple[str, str | None, str | None] | None:
        """Target, legacy and PoliceWorks keys of a human's warning; None if no system holds it.

        The legacy system shows only active warnings (in WARN1..4); PoliceWorks keeps ended ones.
        """
        lrecs = self.legacy_records[hi]
        legacy_key = f"{lrecs[0].key}|{w.code}" if lrecs and w.active else None
        pw_key = self.chunk.guid("warning", hi, w.code) if self.pw_records[hi] else None
        if legacy_key is not None:
            return target_key("warning", LEGACY, legacy_key), legacy_key, pw_key
        if pw_key is not None:
            return target_key("warning", POLICEWORKS, pw_key), None, pw_key
        return None

    def location_warning(self, pid: int) -> tuple[str, str | None, str | None]:
        """Target key, legacy key and PoliceWorks key of a place's firearms warning."""
        legacy_key = f"{addr_ref(pid)}|FCH" if pid in self.legacy_places else None
        pw_key = self.chunk.guid("warning-location", pid) if pid in self.pw_places else None
        if legacy_key is not None:
            return target_key("warning", LEGACY, legacy_key), legacy_key, pw_key
        return target_key("warning", POLICEWORKS, pw_key), None, pw_key  # type: ignore[arg-type]

    def pw_first(self, hi: int) -> str | None:
        recs = self.pw_records[hi]
        return recs[0].key if recs else None


@lru_cache(maxsize=16384)
def addr_ref(pid: int) -> str:
    return f"A{pid + 1:09d}"


def pw_location_id(chunk: Chunk, pid: int) -> str:
    return chunk.guid("location", pid)


def occurrence_id(chunk: Chunk, ci: int) -> str:
    return chunk.guid("occurrence", ci)


def canonical_lines(p: Place) -> tuple[str | None, str, str | None, str, None]:
    """The address as the gazetteer (and so the target) writes it."""
    return (p.building, f"{p.number} {p.street}", p.locality or None, p.town, None)
