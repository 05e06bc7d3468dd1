"""The truth: humans, places, crimes and what hangs off them, generated chunk by chunk.

Each chunk of ``CHUNK_HUMANS`` humans is generated from its own random stream seeded by
``(seed, chunk index)``, and links only within itself. So the estate is identical whatever order
or process chunks are generated in, and memory stays flat in the number of persons.
Renderers (``legacy``, ``policeworks``, ``ideal``) turn a chunk into rows of each system.
"""

from __future__ import annotations

import bisect
import datetime as dt
import hashlib
import itertools
import random
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from continuity.domain.keys import uuid5_text
from continuity.estate import vocab

_T = TypeVar("_T")

#: Humans per chunk. Part of the estate's definition: changing it changes every estate.
CHUNK_HUMANS = 1000

#: The date the estate describes ("today" for the estate), fixed so estates are reproducible.
AS_OF = dt.date(2026, 6, 30)
#: PoliceWorks went live; legacy crimes recorded from LOAD_FROM were loaded into it then.
GO_LIVE = dt.datetime(2019, 7, 1, 0, 0)
LOAD_FROM = dt.datetime(2013, 1, 1, 0, 0)
FIRST_YEAR = 1975

ROLES = ("VICTIM", "SUSPECT", "OFFENDER", "WITNESS", "REPORTER")


@dataclass(slots=True)
class Warning:
    """A warning marker on a human or a place."""

    code: str
    start: dt.date
    review: dt.date | None
    end: dt.date | None
    restricted: bool

    @property
    def active(self) -> bool:
        return self.end is None or self.end > AS_OF


@dataclass(slots=True)
class Human:
    hid: int
    forename: str
    middle: str | None
    surname: str
    gender: str
    dob: dt.date = dt.date(1970, 1, 1)
    dob_year_only: bool = False
    pnc: str | None = None
    cro: str | None = None
    handling: str | None = None
    aliases: list[tuple[str, str]] = field(default_factory=list)
    home: int | None = None  # place id; None = no fixed abode
    warnings: list[Warning] = field(default_factory=list)
    relation: str | None = None  # "twin" or "son" of related
    related: int | None = None
    links: list[tuple[int, str]] = field(default_factory=list)  # (crime index in chunk, role)
    has_legacy_duplicate: bool = False


@dataclass(slots=True)
class Place:
    pid: int
    number: int
    building: str | None
    street: str
    locality: str
    town: str
    postcode: str
    uprn: str | None
    easting: int
    northing: int
    firearms: Warning | None = None


@dataclass(slots=True)
class LegacyView:
    """How a crime loaded into PoliceWorks in 2019 still reads in the legacy system."""

    status: str
    oic: str | None
    outcome: str | None
    outcome_date: dt.date | None
    mo_text: str
    offence: vocab.Offence


@dataclass(slots=True)
class Crime:
    cid: int
    division: int
    offence: vocab.Offence
    legacy_code: str
    recorded: dt.datetime  # local (Europe/London) wall time
    committed_from: dt.datetime
    committed_to: dt.datetime | None
    reported: dt.datetime
    place: int
    mo_text: str
    status: str
    oic: str | None
    outcome: str | None
    outcome_date: dt.date | None
    domestic_abuse: bool
    hate_strand: str | None
    child_protection: bool
    mopi_group: int
    review_date: dt.date
    legal_hold: bool
    era: str  # "legacy" (legacy only), "both" (legacy, loaded into PoliceWorks), "pw"
    links: list[tuple[int, str]] = field(default_factory=list)  # (human index, role)
    bail: list[tuple[int, str, dt.date]] = field(default_factory=list)
    referrals: list[tuple[int, str, str, dt.datetime]] = field(default_factory=list)
    legacy_view: LegacyView | None = None
    garbage: str | None = None  # why the legacy copy cannot be migrated, if it cannot
    _crime_no: str | None = None

    @property
    def in_legacy(self) -> bool:
        return self.era != "pw"

    @property
    def in_policeworks(self) -> bool:
        return self.era != "legacy"

    @property
    def mopi_excluded(self) -> bool:
        """MoPI disposal: group 3, closed, review date passed, no legal hold."""
        return (
            self.mopi_group == 3
            and self.status == "CLOSED"
            and self.review_date < AS_OF
            and not self.legal_hold
        )

    @property
    def reference(self) -> str:
        """The crime reference the target keeps: the legacy number, else PoliceWorks' own."""
        return (
            self.crime_no
            if self.in_legacy
            else f"CRI/{self.recorded.year % 100:02d}/{self.cid:08d}"
        )

    @property
    def crime_no(self) -> str:
        """The legacy crime number (division/sequence/year), computed once: it keys many rows."""
        if self._crime_no is None:
            self._crime_no = f"{self.division:02d}/{self.cid:08d}/{self.recorded.year % 100:02d}"
        return self._crime_no


@dataclass(slots=True)
class Intel:
    iid: int
    human: int  # index in chunk
    grading: str
    created: dt.datetime  # UTC
    review_state: str
    summary: str


@dataclass(slots=True)
class Chunk:
    index: int
    humans: list[Human]
    places: list[Place]
    crimes: list[Crime]
    intel: list[Intel]
    gazetteer_extra: list[Place]
    pairs: list[tuple[str, int, int]]  # (kind, human a index, human b index)
    rng_seed: str
    #: Crimes the chunk was generated with; later ones came with ``estate evolve`` and draw
    #: from random streams of their own, so that the records before them render unchanged.
    born_crimes: int = 0
    #: Evolution: source records whose date of birth was corrected (the truth's since), and
    #: legacy duplicate nominals deleted at source (their links moved to the original).
    corrected: set[str] = field(default_factory=set)
    deleted: set[str] = field(default_factory=set)

    def guid(self, kind: str, *parts: object) -> str:
        """A deterministic GUID for a PoliceWorks record of this chunk."""
        return uuid5_text(_GUID_NAMESPACE, f"{self.rng_seed}|{kind}|{parts}")


_GUID_NAMESPACE = uuid.UUID("6f1c6b1e-9a57-4d1e-8d2e-0c0ffee0b0b0").bytes


def legacy_crime_no(crime: Crime) -> str:
    return crime.crime_no


class Rng(random.Random):
    """``random.Random`` with cheaper ``randrange`` and ``choice``.

    The standard ones draw whole bits to stay exactly uniform; a float draw is uniform enough for
    synthetic data and several times faster, which matters at tens of millions of calls.
    """

    def randrange(self, start: int, stop: int | None = None, step: int = 1) -> int:
        if stop is None:
            return int(self.random() * start)
        return start + int(self.random() * (stop - start))

    def choice(self, seq: Sequence[_T]) -> _T:  # type: ignore[override]
        return seq[int(self.random() * len(seq))]


def stable_fraction(*parts: object) -> float:
    """A number in [0, 1) fixed by ``parts``: a random draw that no other draw can shift."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest) / 2**64


def _weighted_table(
    items: Sequence[Any], weights: Sequence[float], size: int = 4096
) -> tuple[Any, ...]:
    """A lookup table in which each item fills its weight's share: ``table[int(random() * n)]``
    draws by weight with one float draw, where ``random.choices`` bisects every time."""
    cum = list(itertools.accumulate(weights))
    return tuple(items[bisect.bisect_right(cum, (i + 0.5) / size * cum[-1])] for i in range(size))


_YEARS = tuple(range(FIRST_YEAR, AS_OF.year + 1))
_YEAR_TABLE = _weighted_table(_YEARS, [1.0 + (y - FIRST_YEAR) * 0.12 for y in _YEARS])
_OFFENCE_TABLE = _weighted_table(vocab.OFFENCES, vocab.OFFENCE_WEIGHTS)
_STREETS = tuple(f"{n} {t}" for n in vocab.STREET_NAMES for t in vocab.STREET_TYPES)


def unique_address(pid: int) -> tuple[int, str, str, str, str]:
    """House number, street, locality, town and postcode area of place ``pid``: unique.

    Real postal addresses are unique without their postcode, and legacy systems often omit it;
    an estate in which two places shared number, street, locality and town would plant
    addresses no matcher could place. Place ids are unique, and a multiplication by a number
    prime to the size of the address space permutes it, so distinct ids give distinct addresses.
    """
    streets, localities, towns = len(_STREETS), len(_LOCALITIES), len(vocab.TOWNS)
    size = _HOUSE_NUMBERS * streets * localities * towns
    i = (pid * _ADDRESS_STRIDE) % size
    i, number = divmod(i, _HOUSE_NUMBERS)
    i, street = divmod(i, streets)
    town, locality = divmod(i, localities)
    name, area = vocab.TOWNS[town]
    return number + 1, _STREETS[street], _LOCALITIES[locality], name, area


_HOUSE_NUMBERS = 249
_LOCALITIES = tuple(dict.fromkeys(vocab.LOCALITIES))  # each once: two would be one address
_ADDRESS_STRIDE = 7_368_787  # prime, and no factor of the address space's size


def _mo_texts() -> tuple[str, ...]:
    """Modus operandi texts: one to three distinct phrases, built once from a fixed seed."""
    rng = random.Random("continuity-mo-texts")
    texts = []
    for _ in range(2048):
        phrases = rng.sample(vocab.MO_PHRASES, rng.randrange(1, 4))
        texts.append(" ".join(phrases).capitalize() + ".")
    return tuple(texts)


_MO_TEXTS = _mo_texts()


def _random_datetime_in_year(rng: Rng, year: int) -> dt.datetime:
    start = dt.datetime(year, 1, 1)
    end = (
        dt.datetime(year + 1, 1, 1) if year < AS_OF.year else dt.datetime.combine(AS_OF, dt.time())
    )
    seconds = int((end - start).total_seconds())
    value = start + dt.timedelta(seconds=rng.randrange(seconds))
    return value.replace(second=0)


def _add_years(day: dt.date, years: int) -> dt.date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February
        return day.replace(year=day.year + years, day=28)


def _pnc(rng: Rng, year: int) -> str:
    return f"{year}/{rng.randrange(10**7):07d}{rng.choice('ABCDEFGHJKLMNPQRSTUVWXYZ')}"


def generate_chunk(seed: int, index: int, n_humans: int) -> Chunk:
    """Generate chunk ``index`` holding ``n_humans`` humans (the last chunk may be short)."""
    rng_seed = f"continuity-estate:{seed}:{index}"
    rng = Rng(rng_seed)
    base = index * CHUNK_HUMANS
    humans: list[Human] = []
    pairs: list[tuple[str, int, int]] = []
    i = 0
    while i < n_humans:
        gender = "M" if rng.random() < 0.5 else "F"
        if rng.random() < 0.02:
            gender = "U"
        pool = vocab.MALE_FORENAMES if gender == "M" else vocab.FEMALE_FORENAMES
        forename = rng.choice(pool)
        surname = rng.choice(vocab.SURNAMES)
        middle = rng.choice(vocab.MIDDLE_NAMES) if rng.random() < 0.3 else None
        humans.append(Human(base + i, forename, middle, surname, gender))
        i += 1
        roll = rng.random()
        if i < n_humans and roll < 0.012:  # a twin: same surname and DOB, other forename
            other = rng.choice([f for f in pool if f != forename])
            humans.append(Human(base + i, other, None, surname, gender, relation="twin"))
            humans[-1].related = i - 1
            pairs.append(("twin", i - 1, i))
            i += 1
        elif i < n_humans and roll < 0.024 and gender == "M":  # father and son, same names
            humans.append(Human(base + i, forename, middle, surname, "M", relation="son"))
            humans[-1].related = i - 1
            pairs.append(("father_son", i - 1, i))
            i += 1

    # Places: homes (shared within households), then crime scenes.
    places: list[Place] = []

    def new_place() -> Place:
        rng.choice(vocab.TOWNS)  # draws kept so that the rest of the estate stays as it was
        rng.choice(_STREETS)
        pid = base * 3 + len(places)
        number, street, locality, town, area = unique_address(pid)
        postcode = (
            f"{area}{rng.randrange(1, 40)} {rng.randrange(10)}"
            f"{rng.choice('ABDEFGHJLNPQRSTUWXYZ')}{rng.choice('ABDEFGHJLNPQRSTUWXYZ')}"
        )
        in_gazetteer = rng.random() < 0.92
        rng.randrange(1, 250)
        building = rng.choice(vocab.BUILDING_NAMES) if rng.random() < 0.08 else None
        rng.choice(vocab.LOCALITIES)
        place = Place(
            pid=pid,
            number=number,
            building=building,
            street=street,
            locality=locality,
            town=town,
            postcode=postcode,
            uprn=f"{10_000_000_000 + pid:012d}" if in_gazetteer else None,
            easting=rng.randrange(370_000, 400_000),
            northing=rng.randrange(390_000, 415_000),
        )
        places.append(place)
        return place

    for h in humans:
        if rng.random() < 0.015:
            h.home = None  # no fixed abode
        elif h.relation is not None and rng.random() < 0.8:
            h.home = humans[h.related].home  # type: ignore[index]
        elif places and rng.random() < 0.2:
            h.home = places[-1].pid
        else:
            h.home = new_place().pid
    homes = [p for p in places]
    for p in homes:
        if rng.random() < 0.012:
            start = dt.date(rng.randrange(1985, 2026), rng.randrange(1, 13), rng.randrange(1, 29))
            p.firearms = Warning("FI", start, _add_years(start, 5), None, rng.random() < 0.3)
            # A certificate is granted to a verified address: licensing premises are always in
            # the gazetteer (an unmatched one is a planted defect, not a quirk).
            p.uprn = p.uprn or f"{10_000_000_000 + p.pid:012d}"

    # Crimes, with dates first; participants are assigned afterwards.
    n_crimes = max(1, int(n_humans * 0.85))
    crimes: list[Crime] = []
    for k in range(n_crimes):
        year = rng.choice(_YEAR_TABLE)
        recorded = _random_datetime_in_year(rng, year)
        crimes.append(_new_crime(rng, base * 2 + k, recorded, places, new_place))

    slots: list[int] = []
    for hi in range(len(humans)):
        n = 1
        while n < 5 and rng.random() < 0.45:
            n += 1
        slots.extend([hi] * n)
    rng.shuffle(slots)
    for crime in crimes:
        seen: set[int] = set()
        for role in crime_roles(crime, rng):
            if not slots:
                break
            hi = slots.pop()
            if hi in seen:
                slots.insert(0, hi)
                continue
            seen.add(hi)
            crime.links.append((hi, role))
    for hi in slots:  # left-over involvement: witnesses to another crime
        crime = crimes[rng.randrange(len(crimes))]
        if all(h != hi for h, _ in crime.links):
            crime.links.append((hi, "WITNESS"))
    for ci, crime in enumerate(crimes):
        for hi, role in crime.links:
            humans[hi].links.append((ci, role))
    for hi, h in enumerate(humans):
        if not h.links:
            ci = rng.randrange(len(crimes))
            crimes[ci].links.append((hi, "WITNESS"))
            h.links.append((ci, "WITNESS"))

    # Dates of birth from the earliest involvement; twins and sons follow their pair.
    for h in humans:
        earliest = min(crimes[ci].recorded for ci, _ in h.links).date()
        if h.relation == "twin":
            h.dob = humans[h.related].dob  # type: ignore[index]
            h.dob_year_only = humans[h.related].dob_year_only  # type: ignore[index]
            continue
        age = rng.randrange(14, 66)
        dob = earliest - dt.timedelta(days=age * 365 + rng.randrange(365))
        if dob.year < 1905:
            dob = dob.replace(year=1905 + rng.randrange(20))
        if h.relation == "son":
            father = humans[h.related].dob  # type: ignore[index]
            dob = max(dob, _add_years(father, 20))
        h.dob = dob
        if rng.random() < 0.02:
            h.dob_year_only = True
            h.dob = dt.date(dob.year, 1, 1)
    for kind, a, b in pairs:
        if kind == "father_son" and (humans[b].dob - humans[a].dob).days < 15 * 365:
            humans[b].dob = _add_years(humans[a].dob, 22)

    for h in humans:
        if rng.random() < 0.6:
            h.pnc = _pnc(rng, max(h.dob.year + 16, 1980) if h.dob.year < 2010 else 2026)
            if rng.random() < 0.3:
                h.cro = f"{rng.randrange(10**6):06d}/{h.dob.year % 100:02d}{rng.choice('ABCDEFGH')}"
        if rng.random() < 0.02:
            h.handling = "RESTRICTED"
        if rng.random() < 0.1:
            for _ in range(rng.randrange(1, 3)):
                if rng.random() < 0.5:
                    h.aliases.append(
                        (rng.choice(vocab.MALE_FORENAMES + vocab.FEMALE_FORENAMES), h.surname)
                    )
                else:
                    h.aliases.append((h.forename, rng.choice(vocab.SURNAMES)))
        earliest = min(crimes[ci].recorded for ci, _ in h.links).date()
        for code, rate in (("FI", 0.015), ("VI", 0.06), ("WE", 0.03), ("SU", 0.02)):
            if rng.random() < rate:
                span = max(1, (AS_OF - earliest).days)
                start = earliest + dt.timedelta(days=rng.randrange(span))
                end = None
                if rng.random() < 0.2:
                    end = start + dt.timedelta(
                        days=rng.randrange(1, max(2, (AS_OF - start).days + 1))
                    )
                review = None if end else _add_years(start, 1 + rng.randrange(3))
                h.warnings.append(
                    Warning(code, start, review, end, code == "FI" and rng.random() < 0.2)
                )
    legacy_humans = [h for h in humans if any(crimes[ci].in_legacy for ci, _ in h.links)]
    for h in legacy_humans:
        if sum(1 for ci, _ in h.links if crimes[ci].in_legacy) >= 2 and rng.random() < 0.04:
            h.has_legacy_duplicate = True

    # Work in progress: bail on open crimes' suspects, safeguarding for PoliceWorks crimes.
    for crime in crimes:
        if crime.status == "OPEN":
            for hi, role in crime.links:
                if role == "SUSPECT" and rng.random() < 0.4:
                    crime.bail.append(
                        (
                            hi,
                            rng.choice(vocab.BAIL_CONDITIONS),
                            AS_OF + dt.timedelta(days=rng.randrange(1, 91)),
                        )
                    )
        if crime.era == "pw" and (crime.child_protection or crime.domestic_abuse):
            for hi, role in crime.links:
                if role == "VICTIM" and rng.random() < 0.6:
                    referred = crime.recorded + dt.timedelta(hours=rng.randrange(1, 72))
                    crime.referrals.append(
                        (
                            hi,
                            rng.choice(vocab.SAFEGUARDING_AGENCIES),
                            rng.choice(vocab.SAFEGUARDING_STATUSES),
                            referred,
                        )
                    )

    intel: list[Intel] = []
    for hi, h in enumerate(humans):
        if any(crimes[ci].in_policeworks for ci, _ in h.links) and rng.random() < 0.12:
            created = GO_LIVE + dt.timedelta(
                minutes=rng.randrange(
                    int((dt.datetime.combine(AS_OF, dt.time()) - GO_LIVE).total_seconds() // 60)
                )
            )
            intel.append(
                Intel(
                    iid=base + len(intel),
                    human=hi,
                    grading=f"{rng.choice('123')}{rng.choice('ABCDE')}{rng.choice('PC')}",
                    created=created,
                    review_state="AWAITING_REVIEW" if rng.random() < 0.2 else "REVIEWED",
                    summary=rng.choice(vocab.MO_PHRASES).capitalize(),
                )
            )

    extra: list[Place] = []
    for _ in range(int(len(places) * 0.3)):
        rng.choice(vocab.TOWNS)
        pid = base * 3 + 2 * CHUNK_HUMANS + len(extra)
        number, street, locality, town, area = unique_address(pid)
        rng.randrange(1, 250)
        rng.choice(vocab.STREET_NAMES)
        rng.choice(vocab.STREET_TYPES)
        rng.choice(vocab.LOCALITIES)
        extra.append(
            Place(
                pid,
                number,
                None,
                street,
                locality,
                town,
                f"{area}{rng.randrange(1, 40)} {rng.randrange(10)}AB",
                f"{10_000_000_000 + pid:012d}",
                rng.randrange(370_000, 400_000),
                rng.randrange(390_000, 415_000),
            )
        )
    return Chunk(index, humans, places, crimes, intel, extra, pairs, rng_seed, len(crimes))


def crime_roles(crime: Crime, rng: Rng) -> list[str]:
    """The roles a crime's people take: a victim where the offence needs one, and others."""
    roles = []
    if crime.offence.needs_victim or rng.random() < 0.3:
        roles.append("VICTIM")
    if rng.random() < 0.65:
        roles.append("SUSPECT")
    if rng.random() < 0.15:
        roles.append("OFFENDER")
    if rng.random() < 0.25:
        roles.append("WITNESS")
    if rng.random() < 0.15:
        roles.append("REPORTER")
    return roles or ["REPORTER"]


def _new_crime(
    rng: Rng, cid: int, recorded: dt.datetime, places: list[Place], new_place: Callable[[], Place]
) -> Crime:
    offence = rng.choice(_OFFENCE_TABLE)
    committed_from = recorded - dt.timedelta(minutes=rng.randrange(0, 4 * 24 * 60))
    committed_to = (
        committed_from + dt.timedelta(minutes=rng.randrange(5, 600)) if rng.random() < 0.5 else None
    )
    if committed_to and committed_to > recorded:
        committed_to = recorded
    reported = committed_from + (recorded - committed_from) * rng.random()
    reported = reported.replace(second=0, microsecond=0)
    if recorded >= GO_LIVE:
        era = "pw"
    elif recorded >= LOAD_FROM:
        era = "both"
    else:
        era = "legacy"
    recent = recorded.date() >= dt.date(2025, 6, 1)
    status = "OPEN" if rng.random() < (0.6 if recent else 0.03) else "CLOSED"
    oic: str | None = f"PC {rng.randrange(1000, 30000)}"
    outcome = None if status == "OPEN" else rng.choice(vocab.OUTCOME_CODES)
    outcome_date = (
        None
        if outcome is None
        else min(AS_OF, (recorded + dt.timedelta(days=rng.randrange(1, 400))).date())
    )
    if status == "CLOSED" and rng.random() < 0.03:
        oic = None  # closed long ago, officer never recorded
    mopi_group = offence.mopi_group
    legal_hold = False
    if mopi_group == 1:
        review = _add_years(recorded.date(), 100)
    elif mopi_group == 2:
        review = AS_OF + dt.timedelta(days=rng.randrange(1, 3650))
    elif status == "CLOSED" and rng.random() < 0.06:
        review = AS_OF - dt.timedelta(days=rng.randrange(1, 2000))
        legal_hold = rng.random() < 0.1
    else:
        review = AS_OF + dt.timedelta(days=rng.randrange(1, 2190))
    mo = rng.choice(_MO_TEXTS)
    domestic = rng.random() < 0.15
    place = (
        places[rng.randrange(len(places))].pid
        if (domestic or rng.random() < 0.3) and places
        else new_place().pid
    )
    crime = Crime(
        cid=cid,
        division=rng.randrange(1, 13),
        offence=offence,
        legacy_code=rng.choice(offence.legacy_codes),
        recorded=recorded,
        committed_from=committed_from.replace(second=0),
        committed_to=committed_to,
        reported=reported,
        place=place,
        mo_text=mo,
        status=status,
        oic=oic,
        outcome=outcome,
        outcome_date=outcome_date,
        domestic_abuse=domestic,
        hate_strand=rng.choice(vocab.HATE_STRANDS) if rng.random() < 0.03 else None,
        child_protection=rng.random() < 0.05,
        mopi_group=mopi_group,
        review_date=review,
        legal_hold=legal_hold,
        era=era,
    )
    if era == "legacy":
        roll = rng.random()
        if roll < 0.004:
            crime.garbage = "unmapped offence code"
            crime.legacy_code = rng.choice(vocab.UNMAPPED_LEGACY_CODES)
        elif roll < 0.009:
            crime.garbage = "unparseable recorded date"
    if era == "both":
        # The 2019 snapshot the legacy system still shows; PoliceWorks moved on since.
        status_2019, outcome_2019, outcome_date_2019, oic_2019 = status, outcome, outcome_date, oic
        if status == "CLOSED" and outcome_date and outcome_date >= GO_LIVE.date():
            status_2019, outcome_2019, outcome_date_2019 = "OPEN", None, None
        offence_2019 = offence
        if rng.random() < 0.03:  # reclassified in PoliceWorks after the load
            offence_2019 = rng.choice(_OFFENCE_TABLE)
        mo_2019 = mo
        if rng.random() < 0.05:
            crime.mo_text = mo + " Update: further enquiries completed in PoliceWorks."
        crime.legacy_view = LegacyView(
            status_2019, oic_2019, outcome_2019, outcome_date_2019, mo_2019, offence_2019
        )
        if offence_2019 is not offence:
            crime.legacy_code = rng.choice(offence_2019.legacy_codes)
    return crime
